//! Events and listening on the owner core of each name (PROTOCOL.md §3.3).
//!
//! `TopicRegistry` holds, for the names this core owns, their subscribers and listen state, plus
//! this core's copy of the listen patterns. The session core has already validated each message
//! (field counts, pattern syntax) and routed it here with `hash(name) % cores`; this module
//! answers with `Effect`s and never touches a socket. Records reuse the same registry for
//! their subscriptions and listening (`has_provider_updates` turns on `R|SH`).
//!
//! In a cluster one node leads listening (`ListenRole`, chosen by `cluster::listen`): its
//! registries also hold the other nodes' listeners and the other nodes' interest in each name,
//! as stand-ins, so discovery, `SP`/`SR`/`SH` and the one-provider rule work over the whole
//! cluster exactly as on one node. The other nodes run no discovery; they report to the leader.

use super::listen::{Candidate, ListenPatterns, ListenResponse, ListenState};
use super::subscriptions::Subscribers;
use super::{Effect, Effects};
use crate::base::address::SessionRef;
use crate::protocol::actions::Topic;
use crate::protocol::message::build_message;
use ahash::AHashMap;
use bytes::Bytes;
use std::sync::Arc;

/// How a registry takes part in listening.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenRole {
    /// A single node: discovery runs here, over this node's listeners and subscribers.
    Alone,
    /// The cluster's listen leader: discovery runs here over every node's listeners and
    /// subscribers; the other nodes' appear as stand-ins (`Address::NodeListener`,
    /// `Address::NodeInterest`), and what is sent to them travels to their node.
    Leader,
    /// Another node leads: no discovery here. The first and last local subscriber of a name
    /// and the local listeners' answers go to the leader (`Effect::ListenInterest`,
    /// `Effect::ListenResponseToLeader`); the leader's `SH` is kept for new subscribers.
    Follower,
}

struct NameState {
    subscribers: Subscribers,
    listen: ListenState,
    /// Leader: the other nodes with subscribers of this name (one stand-in per node).
    remote_interest: Vec<SessionRef>,
    /// Follower: the leader says the name has a provider (records' `SH`).
    provided_elsewhere: bool,
}

impl NameState {
    fn new(cores: usize) -> Self {
        NameState {
            subscribers: Subscribers::new(cores),
            listen: ListenState::default(),
            remote_interest: Vec::new(),
            provided_elsewhere: false,
        }
    }

    /// Who wants the name: local subscribers, and each other node with subscribers as one.
    fn interest(&self) -> usize {
        self.subscribers.count() + self.remote_interest.len()
    }
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
    role: ListenRole,
    /// Follower: the local listeners that accepted a name, as told to the leader. They are
    /// revoked (`SR`) when the leader changes, since the new one knows nothing of them.
    accepted_here: AHashMap<Bytes, Vec<Candidate>>,
}

fn message(fields: &[&[u8]]) -> Bytes {
    Bytes::from(build_message(fields))
}

/// Tells the name's subscribers, here and on the other nodes, whether it has a provider (`SH`).
fn announce_provider(
    code: &[u8],
    name: &[u8],
    state: &NameState,
    provided: bool,
    effects: &mut Effects,
) {
    let flag: &[u8] = if provided { b"T" } else { b"F" };
    let bytes = message(&[code, b"SH", name, flag]);
    state.subscribers.fanout(None, &bytes, effects);
    for node in &state.remote_interest {
        effects.send(*node, bytes.clone());
    }
}

impl TopicRegistry {
    pub fn new(topic: Topic, cores: usize) -> Self {
        TopicRegistry {
            topic,
            cores,
            has_provider_updates: topic == Topic::Record,
            names: AHashMap::new(),
            patterns: ListenPatterns::default(),
            role: ListenRole::Alone,
            accepted_here: AHashMap::new(),
        }
    }

    fn code(&self) -> &'static [u8] {
        self.topic.code()
    }

    pub fn role(&self) -> ListenRole {
        self.role
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
            self.names
                .insert(Bytes::copy_from_slice(&name), NameState::new(cores));
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
        let first_here = state.subscribers.count() == 1;
        let first_anywhere = state.interest() == 1;
        let provided = state.listen.provider.is_some() || state.provided_elsewhere;
        if self.has_provider_updates && provided {
            effects.send(session, message(&[code, b"SH", &name, b"T"]));
        } else if first_anywhere {
            self.start_discovery(&name, effects);
        }
        if first_here && self.role == ListenRole::Follower {
            effects.push(Effect::ListenInterest {
                topic: self.topic,
                name: name.clone(),
                interested: true,
            });
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
        if self.role == ListenRole::Follower && self.subscriber_count(name) == 0 {
            effects.push(Effect::ListenInterest {
                topic: self.topic,
                name: name.clone(),
                interested: false,
            });
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

    /// After a local subscriber or another node's interest went.
    fn after_subscriber_removed(&mut self, name: &Bytes, effects: &mut Effects) {
        let code = self.code();
        let has_provider_updates = self.has_provider_updates;
        let Some(state) = self.names.get_mut(name) else {
            return;
        };
        let interest = state.interest();
        // The provider gets SR when nobody is left, or when the only one left is itself.
        let provider_alone = state.remote_interest.is_empty()
            && match (&state.listen.provider, state.subscribers.only()) {
                (Some(provider), Some(only)) => provider.session == only,
                _ => false,
            };
        if interest == 0 || provider_alone {
            if let Some(provider) = state.listen.provider.take() {
                effects.send(
                    provider.session,
                    message(&[code, b"SR", provider.pattern.as_bytes(), name]),
                );
                if has_provider_updates && interest > 0 {
                    announce_provider(code, name, state, false, effects);
                }
            }
        }
        if interest == 0 {
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

    /// Asks the matching listeners in turn, unless a provider exists or nobody listens (or
    /// another node leads listening).
    fn start_discovery(&mut self, name: &Bytes, effects: &mut Effects) {
        if self.role == ListenRole::Follower {
            return;
        }
        let Some(state) = self.names.get(name) else {
            return;
        };
        if state.listen.provider.is_some() || state.interest() == 0 {
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

    /// A listener's response as it travels (`ListenResponse`), from `listener` (the
    /// session itself, or on a cluster's leader the stand-in for another node's listener).
    pub fn answer_listen(
        &mut self,
        response: &ListenResponse,
        listener: SessionRef,
        effects: &mut Effects,
    ) {
        let ListenResponse {
            accept,
            pattern,
            name,
            raw,
            ..
        } = response;
        self.listen_response(*accept, pattern, name, listener, raw, effects);
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
        if !is_listener {
            effects.send(session, message(&[code, b"E", b"INVALID_MESSAGE", raw]));
            return;
        }
        let sender = Candidate {
            pattern: Arc::from(pattern),
            session,
        };
        if self.role == ListenRole::Follower {
            let accepted = self
                .accepted_here
                .entry(Bytes::copy_from_slice(name))
                .or_default();
            accepted.retain(|candidate| *candidate != sender);
            if accept {
                accepted.push(sender.clone());
            }
            if accepted.is_empty() {
                self.accepted_here.remove(name);
            }
            effects.push(Effect::ListenResponseToLeader(ListenResponse {
                topic,
                accept,
                pattern: sender.pattern,
                name: name.clone(),
                session,
                raw: raw.clone(),
            }));
            return;
        }
        let Some(state) = self.names.get_mut(name) else {
            // Nobody subscribes any more: an accept is answered with SR straight away.
            if accept {
                effects.send(session, message(&[code, b"SR", pattern.as_bytes(), name]));
            }
            return;
        };
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
                announce_provider(code, name, state, true, effects);
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
        if self.role == ListenRole::Follower {
            return;
        }
        let mut to_start = Vec::new();
        for (name, state) in self.names.iter_mut() {
            if state.listen.provider.is_some() || state.interest() == 0 {
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
        if self.role == ListenRole::Follower {
            self.accepted_here.retain(|_, candidates| {
                candidates.retain(|candidate| {
                    candidate.session != session || &*candidate.pattern != pattern
                });
                !candidates.is_empty()
            });
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
                    announce_provider(code, name, state, false, effects);
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

    // ----- listening across a cluster (see `cluster::listen`) ------------------------------

    /// Leader: another node's subscribers of `name` came (`interested`) or went; `node` is
    /// their stand-in. Counted like one subscriber.
    pub fn remote_interest(
        &mut self,
        name: &Bytes,
        node: SessionRef,
        interested: bool,
        effects: &mut Effects,
    ) {
        if self.role != ListenRole::Leader {
            return;
        }
        if !interested {
            let removed = self.names.get_mut(name).is_some_and(|state| {
                let before = state.remote_interest.len();
                state.remote_interest.retain(|known| *known != node);
                state.remote_interest.len() != before
            });
            if removed {
                self.after_subscriber_removed(name, effects);
            }
            return;
        }
        let code = self.code();
        let cores = self.cores;
        let state = self
            .names
            .entry(Bytes::copy_from_slice(name))
            .or_insert_with(|| NameState::new(cores));
        if state.remote_interest.contains(&node) {
            return;
        }
        state.remote_interest.push(node);
        if state.listen.provider.is_some() {
            if self.has_provider_updates {
                effects.send(node, message(&[code, b"SH", name, b"T"]));
            }
        } else if state.interest() == 1 {
            self.start_discovery(name, effects);
        }
    }

    /// Leader: forgets the other nodes' interest for which `gone` holds (a node died, or
    /// reports its interest again).
    pub fn forget_remote_interest(
        &mut self,
        gone: impl Fn(SessionRef) -> bool,
        effects: &mut Effects,
    ) {
        let mut changed = Vec::new();
        for (name, state) in self.names.iter_mut() {
            let before = state.remote_interest.len();
            state.remote_interest.retain(|node| !gone(*node));
            if state.remote_interest.len() != before {
                changed.push(name.clone());
            }
        }
        for name in changed {
            self.after_subscriber_removed(&name, effects);
        }
    }

    /// Follower: the leader says whether `name` has a provider (its `SH`); local subscribers
    /// hear of a change.
    pub fn provided_elsewhere(&mut self, name: &[u8], provided: bool, effects: &mut Effects) {
        if self.role != ListenRole::Follower {
            return;
        }
        let code = self.code();
        let Some(state) = self.names.get_mut(name) else {
            return;
        };
        if state.provided_elsewhere == provided {
            return;
        }
        state.provided_elsewhere = provided;
        if self.has_provider_updates {
            // (a follower has no other nodes' interest: this reaches the local subscribers)
            announce_provider(code, name, state, provided, effects);
        }
    }

    /// Follower: the leader sent `SR` to a local listener; it no longer provides `name`.
    pub fn provider_revoked(&mut self, pattern: &str, name: &[u8], session: SessionRef) {
        if let Some(candidates) = self.accepted_here.get_mut(name) {
            candidates
                .retain(|candidate| candidate.session != session || &*candidate.pattern != pattern);
            if candidates.is_empty() {
                self.accepted_here.remove(name);
            }
        }
    }

    /// The names with local subscribers (a follower reports them to a new leader).
    pub fn locally_subscribed_names(&self) -> Vec<Bytes> {
        self.names
            .iter()
            .filter(|(_, state)| state.subscribers.count() > 0)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The patterns `session` listens on.
    pub fn patterns_of(&self, session: SessionRef) -> Vec<Arc<str>> {
        self.patterns
            .listeners()
            .into_iter()
            .filter(|(_, listener)| *listener == session)
            .map(|(pattern, _)| pattern)
            .collect()
    }

    /// The listeners of this node: (pattern, session), stand-ins left out.
    pub fn local_listeners(&self) -> Vec<(Arc<str>, SessionRef)> {
        let mut listeners = self.patterns.listeners();
        listeners.retain(|(_, session)| !session.is_stand_in());
        listeners
    }

    /// Takes `role`, from a clean start (the listen leader changed, or this node's view of it
    /// was reset by a reconnect). Every provider this registry knows of is revoked (`SR`, and
    /// `SH F` to the local subscribers) and the other nodes' stand-ins are forgotten: the
    /// leader hears every node's listeners and interest again and runs discovery afresh. A
    /// leader that stays leader keeps its own providers and forgets only the stand-ins.
    pub fn set_role(&mut self, role: ListenRole, effects: &mut Effects) {
        if self.role == ListenRole::Leader && role == ListenRole::Leader {
            self.forget_stand_ins(effects);
            return;
        }
        let code = self.code();
        for (name, state) in self.names.iter_mut() {
            // (the other nodes reset themselves: only local subscribers hear SH F)
            state.remote_interest.clear();
            let mut provided = std::mem::take(&mut state.provided_elsewhere);
            if let Some(provider) = state.listen.provider.take() {
                provided = true;
                if !provider.session.is_stand_in() {
                    effects.send(
                        provider.session,
                        message(&[code, b"SR", provider.pattern.as_bytes(), name]),
                    );
                }
            }
            if provided && self.has_provider_updates {
                announce_provider(code, name, state, false, effects);
            }
            if state.listen.in_progress() || state.listen.current.is_some() {
                effects.push(Effect::CancelListenTimer {
                    topic: self.topic,
                    name: name.clone(),
                });
            }
            state.listen = ListenState::default();
        }
        self.names.retain(|_, state| state.subscribers.count() > 0);
        for (name, candidates) in self.accepted_here.drain() {
            for candidate in candidates {
                effects.send(
                    candidate.session,
                    message(&[code, b"SR", candidate.pattern.as_bytes(), &name]),
                );
            }
        }
        for (pattern, session) in self.patterns.listeners() {
            if session.is_stand_in() {
                self.patterns.remove(&pattern, session);
            }
        }
        self.role = role;
        if role != ListenRole::Follower {
            let names: Vec<Bytes> = self.names.keys().cloned().collect();
            for name in names {
                self.start_discovery(&name, effects);
            }
        }
    }

    /// Leader: forgets every other node's listeners and interest (they report them again).
    /// Nothing is sent to those nodes: each resets its own listening as it reports again.
    fn forget_stand_ins(&mut self, effects: &mut Effects) {
        let mut own = Effects::default();
        self.forget_remote_interest(|_| true, &mut own);
        for (pattern, session) in self.patterns.listeners() {
            if session.is_stand_in() {
                self.listen_removed(&pattern, session, &mut own);
            }
        }
        effects.list.extend(
            own.list
                .into_iter()
                .filter(|effect| !matches!(effect, Effect::Send { to, .. } if to.is_stand_in())),
        );
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

    #[test]
    fn leader_counts_other_nodes_interest_and_tells_them_sh() {
        let mut registry = TopicRegistry::new(Topic::Record, 1);
        let mut effects = Effects::default();
        registry.set_role(ListenRole::Leader, &mut effects);
        let pattern: Arc<str> = Arc::from("q/.*");
        let name = Bytes::from_static(b"q/x");
        let remote_listener = SessionRef::node_listener(0);
        let node_b = SessionRef::node_interest(1, 0);
        let node_c = SessionRef::node_interest(2, 0);
        registry.listen_added(&pattern, remote_listener, &mut effects);
        let mut effects = Effects::default();
        registry.remote_interest(&name, node_b, true, &mut effects);
        let offered: Vec<SessionRef> = effects
            .list
            .iter()
            .filter_map(|effect| match effect {
                Effect::Send { to, .. } => Some(*to),
                _ => None,
            })
            .collect();
        assert_eq!(
            offered,
            vec![remote_listener],
            "SP to the other node's listener"
        );
        let mut effects = Effects::default();
        registry.listen_response(
            true,
            "q/.*",
            &name,
            remote_listener,
            &Bytes::new(),
            &mut effects,
        );
        registry.remote_interest(&name, node_c, true, &mut effects);
        let sent_to: Vec<(SessionRef, String)> = effects
            .list
            .iter()
            .filter_map(|effect| match effect {
                Effect::Send { to, bytes } => {
                    Some((*to, crate::protocol::message::to_capture_notation(bytes)))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            sent_to,
            vec![
                (node_b, "R|SH|q/x|T+".into()),
                (node_c, "R|SH|q/x|T+".into()),
            ]
        );
        let mut effects = Effects::default();
        registry.remote_interest(&name, node_b, false, &mut effects);
        assert!(effects.list.is_empty(), "node C still wants the name");
        registry.remote_interest(&name, node_c, false, &mut effects);
        assert_eq!(sent(&effects), vec![(0, "R|SR|q/.*|q/x+".into())]);
        assert_eq!(registry.size().names, 0);
    }

    #[test]
    fn follower_runs_no_discovery_reports_and_revokes_on_a_new_leader() {
        let mut registry = TopicRegistry::new(Topic::Event, 1);
        let mut effects = Effects::default();
        registry.set_role(ListenRole::Follower, &mut effects);
        let pattern: Arc<str> = Arc::from("f/.*");
        let name = Bytes::from_static(b"f/x");
        registry.listen_added(&pattern, session(1), &mut effects);
        let mut effects = Effects::default();
        registry.subscribe(name.clone(), session(2), &mut effects);
        assert_eq!(sent(&effects), vec![(2, "E|A|S|f/x+".into())], "no SP here");
        assert!(matches!(
            effects.list[0],
            Effect::ListenInterest {
                interested: true,
                ..
            }
        ));
        // the leader asked the local listener, which accepts: reported, not decided here
        let mut effects = Effects::default();
        registry.listen_response(true, "f/.*", &name, session(1), &Bytes::new(), &mut effects);
        assert!(matches!(
            effects.list.as_slice(),
            [Effect::ListenResponseToLeader(ListenResponse {
                accept: true,
                ..
            })]
        ));
        // a new leader knows nothing of that accept: the listener is told SR
        let mut effects = Effects::default();
        registry.set_role(ListenRole::Follower, &mut effects);
        assert_eq!(sent(&effects), vec![(1, "E|SR|f/.*|f/x+".into())]);
        let mut effects = Effects::default();
        registry.unsubscribe(&name, session(2), true, &mut effects);
        assert!(matches!(
            effects.list.as_slice(),
            [Effect::ListenInterest {
                interested: false,
                ..
            }]
        ));
    }
}
