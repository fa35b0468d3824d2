//! Remote procedure calls on the owner core of each RPC name (PROTOCOL.md §3.5).
//!
//! Owns the providers of each name and the calls in flight, keyed by (name, correlation id).
//! A request goes to a provider picked at random; an ack, response or provider error comes back
//! to the requester as the bytes that arrived; a reject reroutes the *same* request bytes to a
//! provider not yet tried. Each (re)routing arms the ack and response deadlines with a new
//! generation, so a deadline that fires for an older routing does nothing.
//!
//! Dialects: a 1.x session acks with `P|A|<name>|<cid>`, a 2.x session with
//! `P|A|REQ|<name>|<cid>`. The ack a requester receives is written in the requester's dialect.
//!
//! Where deepstream 1.1.1 lets a requester hang until its response timeout, we answer at once:
//! when a provider disconnects with calls in flight, each is rerouted to another provider or
//! fails with `NO_RPC_PROVIDER`.

use super::{Effect, Effects};
use crate::base::address::SessionRef;
use crate::protocol::actions::{Action, Dialect};
use crate::protocol::message::build_message;
use ahash::AHashMap;
use bytes::Bytes;

const CODE: &[u8] = b"P";

fn message(fields: &[&[u8]]) -> Bytes {
    Bytes::from(build_message(fields))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadlineKind {
    Ack,
    Response,
}

struct Call {
    requester: SessionRef,
    requester_dialect: Dialect,
    /// The request as it arrived, forwarded unchanged to each provider tried.
    request: Bytes,
    provider: SessionRef,
    tried: Vec<SessionRef>,
    acked: bool,
    generation: u64,
}

/// What a provider sent about a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderAction {
    Ack,
    Response,
    Error,
    Reject,
}

impl ProviderAction {
    fn code(self) -> &'static [u8] {
        match self {
            ProviderAction::Ack => b"A",
            ProviderAction::Response => b"RES",
            ProviderAction::Error => b"E",
            ProviderAction::Reject => b"REJ",
        }
    }
}

pub struct RpcFeature {
    providers: AHashMap<Bytes, Vec<SessionRef>>,
    calls: AHashMap<(Bytes, Bytes), Call>,
    /// Calls in flight per requester of this node (`maxRpcCallsInFlightPerConnection`).
    in_flight: AHashMap<SessionRef, usize>,
    max_in_flight: usize,
    generation: u64,
}

impl Default for RpcFeature {
    fn default() -> Self {
        RpcFeature::new(usize::MAX)
    }
}

/// What a provider's message says: the action and where the RPC name is among its data
/// fields (the correlation id follows it). `first` is the first data field.
pub fn provider_action(
    action: Action,
    first: Option<&[u8]>,
    dialect: Dialect,
) -> Option<(ProviderAction, usize)> {
    Some(match action {
        Action::Ack if dialect == Dialect::V2 && first == Some(b"REQ") => (ProviderAction::Ack, 1),
        Action::Ack => (ProviderAction::Ack, 0),
        Action::Response => (ProviderAction::Response, 0),
        Action::Error => (ProviderAction::Error, 1),
        Action::Reject => (ProviderAction::Reject, 0),
        _ => return None,
    })
}

impl RpcFeature {
    /// At most `max_in_flight` unanswered calls per requester session on this core.
    pub fn new(max_in_flight: usize) -> Self {
        RpcFeature {
            providers: AHashMap::new(),
            calls: AHashMap::new(),
            in_flight: AHashMap::new(),
            max_in_flight,
            generation: 0,
        }
    }

    /// Remembers a call in flight.
    fn add_call(&mut self, key: (Bytes, Bytes), call: Call) {
        if !call.requester.is_remote() {
            *self.in_flight.entry(call.requester).or_insert(0) += 1;
        }
        self.calls.insert(key, call);
    }

    /// Forgets a call (answered, failed or timed out).
    fn take_call(&mut self, key: &(Bytes, Bytes)) -> Option<Call> {
        let call = self.calls.remove(key)?;
        if let Some(count) = self.in_flight.get_mut(&call.requester) {
            *count -= 1;
            if *count == 0 {
                self.in_flight.remove(&call.requester);
            }
        }
        Some(call)
    }

    /// Does a session of this node provide `name`? (Other nodes' providers are stand-ins
    /// `Address::Node`.)
    pub fn has_local_provider(&self, name: &[u8]) -> bool {
        self.providers
            .get(name)
            .is_some_and(|providers| providers.iter().any(|provider| !provider.is_remote()))
    }

    /// Every name with providers or calls.
    pub fn names(&self) -> Vec<Bytes> {
        let mut names: Vec<Bytes> = self.providers.keys().cloned().collect();
        names.extend(self.calls.keys().map(|(name, _)| name.clone()));
        names.sort();
        names.dedup();
        names
    }

    /// Replaces the other nodes' stand-in providers of `name`.
    pub fn set_remote_providers(&mut self, name: &Bytes, remote: Vec<SessionRef>) {
        let providers = self
            .providers
            .entry(Bytes::copy_from_slice(name))
            .or_default();
        providers.retain(|provider| !provider.is_remote());
        providers.extend(remote);
        if providers.is_empty() {
            self.providers.remove(name);
        }
    }

    /// (names with providers, providers, calls in flight)
    pub fn size(&self) -> (usize, usize, usize) {
        (
            self.providers.len(),
            self.providers.values().map(Vec::len).sum(),
            self.calls.len(),
        )
    }

    /// `P|S`: provide.
    pub fn provide(&mut self, name: Bytes, session: SessionRef, effects: &mut Effects) {
        let providers = match self.providers.get_mut(&name) {
            Some(providers) => providers,
            None => self
                .providers
                .entry(Bytes::copy_from_slice(&name))
                .or_default(),
        };
        if providers.contains(&session) {
            effects.send(
                session,
                message(&[CODE, b"E", b"MULTIPLE_SUBSCRIPTIONS", &name]),
            );
            return;
        }
        providers.push(session);
        effects.send(session, message(&[CODE, b"A", b"S", &name]));
    }

    /// `P|US`: unprovide (`silent` for a closed session).
    pub fn unprovide(
        &mut self,
        name: &Bytes,
        session: SessionRef,
        silent: bool,
        effects: &mut Effects,
    ) {
        let removed = match self.providers.get_mut(name) {
            Some(providers) => {
                let before = providers.len();
                providers.retain(|provider| *provider != session);
                let removed = providers.len() != before;
                if providers.is_empty() {
                    self.providers.remove(name);
                }
                removed
            }
            None => false,
        };
        if silent {
            return;
        }
        if removed {
            effects.send(session, message(&[CODE, b"A", b"US", name]));
        } else {
            effects.send(session, message(&[CODE, b"E", b"NOT_SUBSCRIBED", name]));
        }
    }

    /// `P|REQ|name|cid|data`: route to a random provider.
    pub fn request(
        &mut self,
        name: Bytes,
        correlation: Bytes,
        requester: SessionRef,
        requester_dialect: Dialect,
        request: Bytes,
        effects: &mut Effects,
    ) {
        let key = (name.clone(), correlation.clone());
        if self.calls.contains_key(&key) {
            let text = format!(
                "correlation id {} is already in use for rpc {}",
                String::from_utf8_lossy(&correlation),
                String::from_utf8_lossy(&name)
            );
            effects.send(
                requester,
                message(&[CODE, b"E", b"INVALID_MESSAGE_DATA", text.as_bytes()]),
            );
            return;
        }
        let in_flight = self.in_flight.get(&requester).copied().unwrap_or(0);
        if in_flight >= self.max_in_flight {
            // maxRpcCallsInFlightPerConnection: the call fails at once (the requester's
            // callback gets the error) instead of growing this core's table of calls.
            effects.send(
                requester,
                message(&[CODE, b"E", b"TOO_MANY_RPC_CALLS", &name, &correlation]),
            );
            return;
        }
        let Some(provider) = self.pick(&name, &[], requester) else {
            effects.send(requester, no_provider(requester, &name, &correlation));
            return;
        };
        self.generation += 1;
        let call = Call {
            requester,
            requester_dialect,
            request,
            provider,
            tried: Vec::new(),
            acked: false,
            generation: self.generation,
        };
        self.dispatch(&key, &call, effects);
        self.add_call(
            (
                Bytes::copy_from_slice(&name),
                Bytes::copy_from_slice(&correlation),
            ),
            call,
        );
    }

    /// A random provider not tried yet: one of this node's while there are any, then one of
    /// the other nodes' stand-ins (as deepstream prefers local providers, then remote ones).
    /// A request from another node is served by this node's providers only.
    fn pick(&self, name: &[u8], tried: &[SessionRef], requester: SessionRef) -> Option<SessionRef> {
        let providers = self.providers.get(name)?;
        let untried = |provider: &&SessionRef| !tried.contains(provider);
        let local = providers
            .iter()
            .filter(untried)
            .filter(|provider| !provider.is_remote())
            .count();
        // (no local one left: every untried provider is another node's stand-in)
        let (count, remote_too) = match local {
            0 if requester.is_remote() => return None,
            0 => (providers.iter().filter(untried).count(), true),
            local => (local, false),
        };
        if count == 0 {
            return None;
        }
        providers
            .iter()
            .filter(untried)
            .filter(|provider| remote_too || !provider.is_remote())
            .nth(fastrand::usize(..count))
            .copied()
    }

    fn dispatch(&self, key: &(Bytes, Bytes), call: &Call, effects: &mut Effects) {
        effects.send(call.provider, call.request.clone());
        effects.push(Effect::ArmRpcDeadlines {
            name: key.0.clone(),
            correlation: key.1.clone(),
            generation: call.generation,
        });
    }

    /// An ack, response, error or reject from a provider. `raw` is the whole message with its
    /// terminator; `data1` is deepstream's `message.data[1]`, quoted by the unknown-call error.
    #[allow(clippy::too_many_arguments)]
    pub fn from_provider(
        &mut self,
        action: ProviderAction,
        name: Bytes,
        correlation: Bytes,
        sender: SessionRef,
        sender_dialect: Dialect,
        raw: Bytes,
        data1: Bytes,
        effects: &mut Effects,
    ) {
        let key = (name, correlation);
        let known = self
            .calls
            .get(&key)
            .is_some_and(|call| call.provider == sender);
        if !known {
            let (event, subject): (&[u8], &[u8]) = match sender_dialect {
                Dialect::V1 => (b"INVALID_MESSAGE_DATA", &data1),
                Dialect::V2 => (b"INVALID_RPC_CORRELATION_ID", &key.0),
            };
            let mut text = b"unexpected state for rpc ".to_vec();
            text.extend_from_slice(subject);
            text.extend_from_slice(b" with action ");
            text.extend_from_slice(action.code());
            effects.send(sender, message(&[CODE, b"E", event, &text]));
            return;
        }
        match action {
            ProviderAction::Ack => {
                let Some(call) = self.calls.get_mut(&key) else {
                    return;
                };
                if call.acked {
                    effects.send(
                        sender,
                        message(&[CODE, b"E", b"MULTIPLE_ACK", &key.0, &key.1]),
                    );
                    return;
                }
                call.acked = true;
                let ack = if sender_dialect == call.requester_dialect {
                    raw
                } else {
                    ack_message(call.requester_dialect, &key.0, &key.1)
                };
                effects.send(call.requester, ack);
            }
            ProviderAction::Response | ProviderAction::Error => {
                if let Some(call) = self.take_call(&key) {
                    effects.send(call.requester, raw);
                }
            }
            ProviderAction::Reject => self.reroute(&key, effects),
        }
    }

    /// Sends the request to a provider not tried yet, or fails the call with NO_RPC_PROVIDER.
    fn reroute(&mut self, key: &(Bytes, Bytes), effects: &mut Effects) {
        let Some(mut call) = self.take_call(key) else {
            return;
        };
        call.tried.push(call.provider);
        match self.pick(&key.0, &call.tried, call.requester) {
            Some(provider) => {
                self.generation += 1;
                call.provider = provider;
                call.acked = false;
                call.generation = self.generation;
                self.dispatch(key, &call, effects);
                self.add_call(key.clone(), call);
            }
            None => effects.send(call.requester, no_provider(call.requester, &key.0, &key.1)),
        }
    }

    /// A deadline armed for `generation` fired.
    pub fn deadline(
        &mut self,
        name: Bytes,
        correlation: Bytes,
        generation: u64,
        kind: DeadlineKind,
        effects: &mut Effects,
    ) {
        let key = (name, correlation);
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        if call.generation != generation || (kind == DeadlineKind::Ack && call.acked) {
            return;
        }
        let event: &[u8] = match kind {
            DeadlineKind::Ack => b"ACK_TIMEOUT",
            DeadlineKind::Response => b"RESPONSE_TIMEOUT",
        };
        effects.send(
            call.requester,
            message(&[CODE, b"E", event, &key.0, &key.1]),
        );
        self.take_call(&key);
    }

    /// A session closed: it no longer provides `names`; its calls in flight as a provider are
    /// rerouted at once, its calls as a requester are forgotten.
    pub fn session_closed(&mut self, session: SessionRef, names: &[Bytes], effects: &mut Effects) {
        for name in names {
            self.unprovide(name, session, true, effects);
        }
        self.calls.retain(|_, call| call.requester != session);
        self.in_flight.remove(&session);
        let stranded: Vec<(Bytes, Bytes)> = self
            .calls
            .iter()
            .filter(|(_, call)| call.provider == session)
            .map(|(key, _)| key.clone())
            .collect();
        for key in stranded {
            self.reroute(&key, effects);
        }
    }
}

/// No provider (left): `NO_RPC_PROVIDER` for a requester of this node; for another node's
/// request, a reject, so that node may still try a provider elsewhere.
fn no_provider(requester: SessionRef, name: &[u8], correlation: &[u8]) -> Bytes {
    if requester.is_remote() {
        message(&[CODE, b"REJ", name, correlation])
    } else {
        message(&[CODE, b"E", b"NO_RPC_PROVIDER", name, correlation])
    }
}

fn ack_message(dialect: Dialect, name: &[u8], correlation: &[u8]) -> Bytes {
    match dialect {
        Dialect::V1 => message(&[CODE, b"A", name, correlation]),
        Dialect::V2 => message(&[CODE, b"A", b"REQ", name, correlation]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::test_support::{sent, session};

    fn bytes(text: &str) -> Bytes {
        Bytes::from(crate::protocol::message::from_capture_notation(text))
    }

    #[test]
    fn reject_reroutes_then_no_provider() {
        let mut rpc = RpcFeature::default();
        let mut effects = Effects::default();
        rpc.provide(bytes("add"), session(1), &mut effects);
        rpc.provide(bytes("add"), session(2), &mut effects);
        let mut effects = Effects::default();
        rpc.request(
            bytes("add"),
            bytes("c1"),
            session(9),
            Dialect::V1,
            bytes("P|REQ|add|c1|U+"),
            &mut effects,
        );
        let first = sent(&effects)[0].0;
        let mut effects = Effects::default();
        rpc.from_provider(
            ProviderAction::Reject,
            bytes("add"),
            bytes("c1"),
            session(first),
            Dialect::V1,
            bytes("P|REJ|add|c1+"),
            bytes("c1"),
            &mut effects,
        );
        let second = sent(&effects)[0].0;
        assert_ne!(first, second);
        assert_eq!(sent(&effects)[0].1, "P|REQ|add|c1|U+");
        let mut effects = Effects::default();
        rpc.from_provider(
            ProviderAction::Reject,
            bytes("add"),
            bytes("c1"),
            session(second),
            Dialect::V1,
            bytes("P|REJ|add|c1+"),
            bytes("c1"),
            &mut effects,
        );
        assert_eq!(
            sent(&effects),
            vec![(9, "P|E|NO_RPC_PROVIDER|add|c1+".to_string())]
        );
        assert_eq!(rpc.size().2, 0);
    }

    /// Session 1 provides `x`; session 9 (in `dialect`) requests `x` with correlation id `c`.
    fn one_request(dialect: Dialect) -> RpcFeature {
        let mut rpc = RpcFeature::default();
        let mut effects = Effects::default();
        rpc.provide(bytes("x"), session(1), &mut effects);
        rpc.request(
            bytes("x"),
            bytes("c"),
            session(9),
            dialect,
            bytes("P|REQ|x|c|U+"),
            &mut effects,
        );
        rpc
    }

    #[test]
    fn acks_translate_between_dialects_and_stale_deadlines_do_nothing() {
        let mut rpc = one_request(Dialect::V2);
        let mut effects = Effects::default();
        rpc.from_provider(
            ProviderAction::Ack,
            bytes("x"),
            bytes("c"),
            session(1),
            Dialect::V1,
            bytes("P|A|x|c+"),
            bytes("c"),
            &mut effects,
        );
        assert_eq!(sent(&effects), vec![(9, "P|A|REQ|x|c+".to_string())]);
        let mut effects = Effects::default();
        rpc.deadline(bytes("x"), bytes("c"), 1, DeadlineKind::Ack, &mut effects);
        assert!(sent(&effects).is_empty(), "acked already");
        rpc.deadline(
            bytes("x"),
            bytes("c"),
            1,
            DeadlineKind::Response,
            &mut effects,
        );
        assert_eq!(
            sent(&effects),
            vec![(9, "P|E|RESPONSE_TIMEOUT|x|c+".to_string())]
        );
    }

    #[test]
    fn provider_closing_reroutes_at_once() {
        let mut rpc = one_request(Dialect::V1);
        let mut effects = Effects::default();
        rpc.session_closed(session(1), &[bytes("x")], &mut effects);
        assert_eq!(
            sent(&effects),
            vec![(9, "P|E|NO_RPC_PROVIDER|x|c+".to_string())]
        );
        assert_eq!(rpc.size(), (0, 0, 0));
    }
}
