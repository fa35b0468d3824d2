//! Events and listening on the owner core of each name (PROTOCOL.md §3.3).
//!
//! `TopicRegistry` holds, for the names this core owns, their subscribers and listen state, plus
//! this core's copy of the listen patterns. The session core has already validated each message
//! (field counts, pattern syntax) and routed it here with `hash(name) % cores`; this module
//! answers with `Effect`s and never touches a socket. Records will reuse the same registry for
//! their subscriptions and listening (`has_provider_updates` turns on `R|SH`).

use super::listen::{Candidate, ListenPatterns, ListenState};
use super::subscriptions::Subscribers;
use super::{Effect, Effects};
use crate::protocol::actions::Topic;
use crate::protocol::message::build_message;
use crate::shard::SessionRef;
use ahash::AHashMap;
use bytes::Bytes;
use std::sync::Arc;

struct NameState {
    subscribers: Subscribers,
    listen: ListenState,
}

/// Counts of what a registry holds, for tests and metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RegistrySize {
    pub names: usize,
    pub subscriptions: usize,
    pub listeners: usize,
    pub providers: usize,
    pub discoveries: usize,
}

pub struct TopicRegistry {
    topic: Topic,
    cores: usize,
    /// Records send `R|SH` has-provider updates; events do not.
    has_provider_updates: bool,
    names: AHashMap<Bytes, NameState>,
    patterns: ListenPatterns,
}

fn message(fields: &[&[u8]]) -> Bytes {
    Bytes::from(build_message(fields))
}

impl TopicRegistry {
    pub fn new(topic: Topic, cores: usize) -> Self {
        TopicRegistry {
            topic,
            cores,
            has_provider_updates: topic == Topic::Record,
            names: AHashMap::new(),
            patterns: ListenPatterns::default(),
        }
    }

    fn code(&self) -> &'static [u8] {
        self.topic.code()
    }

    pub fn size(&self) -> RegistrySize {
        let mut size = RegistrySize {
            names: self.names.len(),
            listeners: self.patterns.listener_count(),
            ..RegistrySize::default()
        };
        for state in self.names.values() {
            size.subscriptions += state.subscribers.count();
            size.providers += usize::from(state.listen.provider.is_some());
            size.discoveries += usize::from(state.listen.in_progress());
        }
        size
    }

    /// `S`: subscribe, then ack (`MULTIPLE_SUBSCRIPTIONS` when already subscribed).
    pub fn subscribe(&mut self, name: Bytes, session: SessionRef, effects: &mut Effects) {
        let code = self.code();
        let cores = self.cores;
        if !self.names.contains_key(&name) {
            // A stored name gets its own allocation: a slice would pin the whole read buffer.
            self.names.insert(
                Bytes::copy_from_slice(&name),
                NameState {
                    subscribers: Subscribers::new(cores),
                    listen: ListenState::default(),
                },
            );
        }
        let Some(state) = self.names.get_mut(&name) else {
            return;
        };
        if !state.subscribers.add(session) {
            effects.send(
                session,
                message(&[code, b"E", b"MULTIPLE_SUBSCRIPTIONS", &name]),
            );
            return;
        }
        if self.has_provider_updates && state.listen.provider.is_some() {
            effects.send(session, message(&[code, b"SH", &name, b"T"]));
        } else if state.subscribers.count() == 1 {
            self.start_discovery(&name, effects);
        }
        effects.send(session, message(&[code, b"A", b"S", &name]));
    }

    /// `US`: unsubscribe, then ack (`NOT_SUBSCRIBED` when not subscribed). `silent` is the
    /// clean-up of a closed session: no reply.
    pub fn unsubscribe(
        &mut self,
        name: &Bytes,
        session: SessionRef,
        silent: bool,
        effects: &mut Effects,
    ) {
        let code = self.code();
        let removed = self
            .names
            .get_mut(name)
            .is_some_and(|state| state.subscribers.remove(session));
        if !removed {
            if !silent {
                effects.send(session, message(&[code, b"E", b"NOT_SUBSCRIBED", name]));
            }
            return;
        }
        self.after_subscriber_removed(name, effects);
        if !silent {
            effects.send(session, message(&[code, b"A", b"US", name]));
        }
    }

    /// How many sessions (of every core) subscribe to `name`.
    pub fn subscriber_count(&self, name: &[u8]) -> usize {
        self.names
            .get(name)
            .map_or(0, |state| state.subscribers.count())
    }

    /// `EVT`: forward the message as it arrived to every subscriber but the sender.
    pub fn emit(&self, name: &[u8], bytes: &Bytes, sender: SessionRef, effects: &mut Effects) {
        if let Some(state) = self.names.get(name) {
            state.subscribers.fanout(Some(sender), bytes, effects);
        }
    }

    /// Sends `bytes` to every subscriber of `name` but `exclude`.
    pub fn fanout_to_subscribers(
        &self,
        name: &[u8],
        exclude: Option<SessionRef>,
        bytes: &Bytes,
        effects: &mut Effects,
    ) {
        if let Some(state) = self.names.get(name) {
            state.subscribers.fanout(exclude, bytes, effects);
        }
    }

    /// Unsubscribes everyone from `name` without replies (a deleted record).
    pub fn remove_all_subscribers(&mut self, name: &Bytes, effects: &mut Effects) {
        let subscribers = match self.names.get(name) {
            Some(state) => state.subscribers.all(),
            None => return,
        };
        for session in subscribers {
            self.unsubscribe(name, session, true, effects);
        }
    }

    fn after_subscriber_removed(&mut self, name: &Bytes, effects: &mut Effects) {
        let code = self.code();
        let has_provider_updates = self.has_provider_updates;
        let Some(state) = self.names.get_mut(name) else {
            return;
        };
        let remaining = state.subscribers.count();
        // The provider gets SR when nobody is left, or when the only one left is itself.
        let provider_alone = match (&state.listen.provider, state.subscribers.only()) {
            (Some(provider), Some(only)) => provider.session == only,
            _ => false,
        };
        if remaining == 0 || provider_alone {
            if let Some(provider) = state.listen.provider.take() {
                effects.send(
                    provider.session,
                    message(&[code, b"SR", provider.pattern.as_bytes(), name]),
                );
                if has_provider_updates && remaining > 0 {
                    state
                        .subscribers
                        .fanout(None, &message(&[code, b"SH", name, b"F"]), effects);
                }
            }
        }
        if remaining == 0 {
            if state.listen.in_progress() || state.listen.current.is_some() {
                effects.push(Effect::CancelListenTimer {
                    topic: self.topic,
                    name: name.clone(),
                });
            }
            state.listen = ListenState::default();
            self.names.remove(name);
        }
    }

    /// Asks the matching listeners in turn, unless a provider exists or nobody listens.
    fn start_discovery(&mut self, name: &Bytes, effects: &mut Effects) {
        let Some(state) = self.names.get(name) else {
            return;
        };
        if state.listen.provider.is_some() || state.subscribers.count() == 0 {
            return;
        }
        let candidates = self.patterns.matching(&String::from_utf8_lossy(name));
        if candidates.is_empty() {
            return;
        }
        if let Some(state) = self.names.get_mut(name) {
            state.listen.queue = Some(candidates);
            state.listen.current = None;
        }
        self.ask_next(name, effects);
    }

    /// Sends `SP` to the next candidate not subscribed to the name itself, or ends discovery.
    fn ask_next(&mut self, name: &Bytes, effects: &mut Effects) {
        let code = self.code();
        let Some(state) = self.names.get_mut(name) else {
            return;
        };
        state.listen.current = None;
        loop {
            let next = state
                .listen
                .queue
                .as_mut()
                .and_then(|queue| queue.pop_front());
            let Some(candidate) = next else {
                state.listen.queue = None;
                effects.push(Effect::CancelListenTimer {
                    topic: self.topic,
                    name: name.clone(),
                });
                return;
            };
            if state.subscribers.contains(candidate.session) {
                continue;
            }
            effects.send(
                candidate.session,
                message(&[code, b"SP", candidate.pattern.as_bytes(), name]),
            );
            state.listen.current = Some(candidate);
            effects.push(Effect::StartListenTimer {
                topic: self.topic,
                name: name.clone(),
            });
            return;
        }
    }

    /// The listen-response timer of `name` fired: the asked candidate timed out.
    pub fn listen_timeout(&mut self, name: &Bytes, effects: &mut Effects) {
        let Some(state) = self.names.get_mut(name) else {
            return;
        };
        let Some(current) = state.listen.current.take() else {
            return;
        };
        state.listen.timed_out.push(current);
        self.ask_next(name, effects);
    }

    /// `LA` / `LR` from a listener. `raw` is the message, for `INVALID_MESSAGE` replies.
    pub fn listen_response(
        &mut self,
        accept: bool,
        pattern: &str,
        name: &Bytes,
        session: SessionRef,
        raw: &Bytes,
        effects: &mut Effects,
    ) {
        let code = self.code();
        let topic = self.topic;
        let has_provider_updates = self.has_provider_updates;
        let is_listener =
            self.patterns
                .is_listener_for(pattern, session, &String::from_utf8_lossy(name));
        let sender = Candidate {
            pattern: Arc::from(pattern),
            session,
        };
        let Some(state) = self.names.get_mut(name) else {
            // Nobody subscribes any more: an accept is answered with SR straight away.
            if accept && is_listener {
                effects.send(session, message(&[code, b"SR", pattern.as_bytes(), name]));
            } else if !is_listener {
                effects.send(session, message(&[code, b"E", b"INVALID_MESSAGE", raw]));
            }
            return;
        };
        if !is_listener {
            effects.send(session, message(&[code, b"E", b"INVALID_MESSAGE", raw]));
            return;
        }
        if let Some(provider) = &state.listen.provider {
            // Someone already provides: a (late) accept from anyone else gets SR straight back.
            if accept && *provider != sender {
                effects.send(session, message(&[code, b"SR", pattern.as_bytes(), name]));
            }
            return;
        }
        if accept {
            state.listen.provider = Some(sender);
            state.listen.queue = None;
            state.listen.current = None;
            state.listen.timed_out.clear();
            effects.push(Effect::CancelListenTimer {
                topic,
                name: name.clone(),
            });
            if has_provider_updates {
                state
                    .subscribers
                    .fanout(None, &message(&[code, b"SH", name, b"T"]), effects);
            }
            return;
        }
        // A reject: from the candidate asked now, move on; from anyone else, forget them.
        let is_current = state.listen.current.as_ref() == Some(&sender);
        state.listen.forget(pattern, session);
        if is_current {
            self.ask_next(name, effects);
        }
    }

    /// A listener registered (broadcast to every core). Names this core owns that match, have
    /// subscribers and no provider are offered to it: queued behind a running discovery, or a
    /// new discovery is started.
    pub fn listen_added(&mut self, pattern: &Arc<str>, session: SessionRef, effects: &mut Effects) {
        let Some(regex) = self.patterns.add(pattern, session) else {
            return;
        };
        let mut to_start = Vec::new();
        for (name, state) in self.names.iter_mut() {
            if state.listen.provider.is_some() || state.subscribers.count() == 0 {
                continue;
            }
            if !regex.is_match(&String::from_utf8_lossy(name)) {
                continue;
            }
            match state.listen.queue.as_mut() {
                Some(queue) => queue.push_back(Candidate {
                    pattern: Arc::clone(pattern),
                    session,
                }),
                None => to_start.push(name.clone()),
            }
        }
        for name in to_start {
            self.start_discovery(&name, effects);
        }
    }

    /// A listener unregistered or disconnected (broadcast to every core). Names it provided lose
    /// their provider (records: `SH F`) and start discovery again if subscribers remain.
    pub fn listen_removed(&mut self, pattern: &str, session: SessionRef, effects: &mut Effects) {
        if !self.patterns.remove(pattern, session) {
            return;
        }
        let code = self.code();
        let mut ask_next = Vec::new();
        let mut rediscover = Vec::new();
        for (name, state) in self.names.iter_mut() {
            let (was_current, was_provider) = state.listen.forget(pattern, session);
            if was_current {
                ask_next.push(name.clone());
            }
            if was_provider {
                if self.has_provider_updates {
                    state
                        .subscribers
                        .fanout(None, &message(&[code, b"SH", name, b"F"]), effects);
                }
                rediscover.push(name.clone());
            }
        }
        for name in ask_next {
            self.ask_next(&name, effects);
        }
        for name in rediscover {
            self.start_discovery(&name, effects);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::test_support::{sent, session};

    #[test]
    fn listen_accept_and_last_subscriber_leaving() {
        let mut registry = TopicRegistry::new(Topic::Event, 1);
        let pattern: Arc<str> = Arc::from("lw/.*");
        let mut effects = Effects::default();
        registry.listen_added(&pattern, session(1), &mut effects);
        registry.subscribe(Bytes::from_static(b"lw/a"), session(2), &mut effects);
        assert_eq!(
            sent(&effects),
            vec![(1, "E|SP|lw/.*|lw/a+".into()), (2, "E|A|S|lw/a+".into())]
        );
        let mut effects = Effects::default();
        let raw = Bytes::from_static(b"E\x1fLA\x1flw/.*\x1flw/a");
        registry.listen_response(
            true,
            "lw/.*",
            &Bytes::from_static(b"lw/a"),
            session(1),
            &raw,
            &mut effects,
        );
        assert!(sent(&effects).is_empty());
        let mut effects = Effects::default();
        registry.unsubscribe(
            &Bytes::from_static(b"lw/a"),
            session(2),
            false,
            &mut effects,
        );
        assert_eq!(
            sent(&effects),
            vec![(1, "E|SR|lw/.*|lw/a+".into()), (2, "E|A|US|lw/a+".into())]
        );
        assert_eq!(registry.size().names, 0);
    }

    #[test]
    fn reject_moves_on_and_new_listener_is_offered_existing_names() {
        let mut registry = TopicRegistry::new(Topic::Event, 1);
        let pattern: Arc<str> = Arc::from("rej/.*");
        let name = Bytes::from_static(b"rej/x");
        let raw = Bytes::new();
        let mut effects = Effects::default();
        registry.listen_added(&pattern, session(1), &mut effects);
        registry.subscribe(name.clone(), session(2), &mut effects);
        let mut effects = Effects::default();
        registry.listen_response(false, "rej/.*", &name, session(1), &raw, &mut effects);
        assert!(sent(&effects).is_empty());
        assert_eq!(registry.size().discoveries, 0);
        let mut effects = Effects::default();
        registry.listen_added(&pattern, session(3), &mut effects);
        assert_eq!(sent(&effects), vec![(1, "E|SP|rej/.*|rej/x+".into())]);
        let mut effects = Effects::default();
        registry.listen_response(false, "rej/.*", &name, session(1), &raw, &mut effects);
        assert_eq!(sent(&effects), vec![(3, "E|SP|rej/.*|rej/x+".into())]);
        let mut effects = Effects::default();
        registry.listen_response(true, "rej/.*", &name, session(3), &raw, &mut effects);
        registry.unsubscribe(&name, session(2), false, &mut effects);
        assert_eq!(
            sent(&effects),
            vec![
                (3, "E|SR|rej/.*|rej/x+".into()),
                (2, "E|A|US|rej/x+".into())
            ]
        );
    }

    #[test]
    fn timeout_then_late_accept_when_another_won_gets_sr() {
        let mut registry = TopicRegistry::new(Topic::Event, 1);
        let pattern: Arc<str> = Arc::from("t/.*");
        let name = Bytes::from_static(b"t/x");
        let raw = Bytes::new();
        let mut effects = Effects::default();
        registry.listen_added(&pattern, session(1), &mut effects);
        registry.listen_added(&pattern, session(2), &mut effects);
        registry.subscribe(name.clone(), session(3), &mut effects);
        let mut effects = Effects::default();
        registry.listen_timeout(&name, &mut effects);
        assert_eq!(sent(&effects), vec![(2, "E|SP|t/.*|t/x+".into())]);
        let mut effects = Effects::default();
        registry.listen_response(true, "t/.*", &name, session(2), &raw, &mut effects);
        registry.listen_response(true, "t/.*", &name, session(1), &raw, &mut effects);
        assert_eq!(sent(&effects), vec![(1, "E|SR|t/.*|t/x+".into())]);
    }

    #[test]
    fn provider_leaving_restarts_discovery() {
        let mut registry = TopicRegistry::new(Topic::Record, 1);
        let pattern: Arc<str> = Arc::from("r/.*");
        let name = Bytes::from_static(b"r/x");
        let raw = Bytes::new();
        let mut effects = Effects::default();
        registry.listen_added(&pattern, session(1), &mut effects);
        registry.listen_added(&pattern, session(2), &mut effects);
        registry.subscribe(name.clone(), session(3), &mut effects);
        registry.listen_response(true, "r/.*", &name, session(1), &raw, &mut effects);
        let mut effects = Effects::default();
        registry.listen_removed("r/.*", session(1), &mut effects);
        let fanouts = effects
            .list
            .iter()
            .filter(|effect| matches!(effect, Effect::Fanout { .. }))
            .count();
        assert_eq!(fanouts, 1, "SH F to the subscribers");
        assert_eq!(sent(&effects), vec![(2, "R|SP|r/.*|r/x+".into())]);
    }
}
