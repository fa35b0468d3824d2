//! One connection's deepstream session: challenge → challenge response → auth → open → closed
//! (PROTOCOL.md §3.1, §3.2), and the dispatch of an open session's messages to the owner cores.
//!
//! The session lives on the core that accepted its connection and is driven by that
//! connection's task (`server`), which hands it whole units. It never touches the socket: its
//! output goes to its `SessionPort`; its requests about names go to the names' owner cores
//! through `Core::route`. It remembers what it subscribed to and listens on, so that closing it
//! leaves nothing behind on any core.

mod permissions;

use crate::auth::AuthOutcome;
use crate::dispatch::{
    Core, CoreMessage, PresenceAction, PresenceMessage, RecordMessage, RpcMessage, RpcRequest,
    Subscription,
};
use crate::features::listen::compile_pattern;
use crate::features::presence::counts_for_presence;
use crate::features::rpc::provider_action;
use crate::protocol::actions::{Action, Dialect, Topic};
use crate::protocol::message::{messages, write_message, Message, Parsed, MESSAGE_SEPARATOR};
use crate::protocol::value::{typed_from_json, typed_string};
use crate::shard::{PortState, SessionPort};
use ahash::{AHashMap, AHashSet};
use bytes::Bytes;
use serde_json::Value;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// `C|CH` sent; waiting for `C|CHR`.
    AwaitingChallengeResponse,
    /// `C|A` sent; waiting for `A|REQ`.
    AwaitingAuth,
    Open,
    Closed,
}

pub struct Session {
    core: Rc<Core>,
    port: Rc<SessionPort>,
    dialect: Dialect,
    peer: Option<SocketAddr>,
    state: SessionState,
    username: Option<Box<str>>,
    auth_attempts: u32,
    /// What it subscribed to, provided and listens on; `None` until the first of them.
    interests: Option<Box<Interests>>,
    /// 2.x: the username this session counts for in presence (broadcast at login).
    presence_login: Option<Arc<str>>,
    /// What a trusted proxy said about the user (proxy-header auth).
    proxy_identity: Option<Box<crate::auth::ProxyIdentity>>,
    /// Unparseable messages so far (the connection closes past `maxParseErrors`).
    parse_errors: u32,
    /// `{isAuthenticated, id, data}` for permission rules (set at login when rules exist).
    rule_user: Option<Arc<crate::permission::eval::Value>>,
}

/// A reply buffer grown past this (a long error quote) is freed after use.
const KEPT_REPLY_CAPACITY: usize = 64 * 1024;

thread_local! {
    /// This core's buffer for building a reply (a session holds none of its own: an idle
    /// session would keep the capacity of the longest reply it ever sent).
    static REPLY: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// What a session subscribed to, provided or listens on, so that closing it cleans up
/// everywhere. Boxed in the session and created with its first subscription: a session with
/// none (an idle publisher, a logged-in connection that only writes) holds 8 bytes for it.
#[derive(Default)]
struct Interests {
    /// Event names this session sent `S` for (a superset of its subscriptions).
    events: AHashSet<Bytes>,
    /// Record names this session sent `CR` for (a superset of its subscriptions).
    records: AHashSet<Bytes>,
    /// RPC names this session provided or requested (its providers and calls are cleaned up).
    rpc_names: AHashSet<Bytes>,
    /// Patterns this session listens on, per topic (events, records).
    listens: AHashSet<(Topic, Arc<str>)>,
}

/// Most bytes of a client's input quoted back in an error reply. deepstream quotes the whole
/// unit for every unparseable piece in it; for a unit of many pieces that is quadratic work
/// (a 1 MiB unit of short garbage pieces would be answered with terabytes), so a longer unit
/// is quoted by a prefix of the offending piece instead.
pub const MAX_QUOTE: usize = 1024;

/// What an error reply about `piece` (a piece of `unit`) quotes: the whole unit as deepstream
/// does when it is short, else at most `MAX_QUOTE` bytes of the piece, cut at a character
/// boundary.
pub fn quote<'a>(unit: &'a [u8], piece: &'a [u8]) -> &'a [u8] {
    if unit.len() <= MAX_QUOTE {
        return unit;
    }
    if piece.len() <= MAX_QUOTE {
        return piece;
    }
    let mut end = MAX_QUOTE;
    // Back off continuation bytes (10xxxxxx) so a multi-byte character is not cut in two.
    while end > 0 && piece[end] & 0xC0 == 0x80 {
        end -= 1;
    }
    &piece[..end]
}

/// Bytes 0x00-0x1F (0x1E and 0x1F are the protocol's separators).
fn has_control_characters(username: &str) -> bool {
    username.bytes().any(|byte| byte < 0x20)
}

const TOO_MANY_AUTH_ATTEMPTS: &[u8] = b"Stoo many authentication attempts";
const AUTH_TIMEOUT_TEXT: &str =
    "connection has not authenticated successfully in the expected time";

impl Session {
    /// This session's interests, created at the first use.
    fn interests(&mut self) -> &mut Interests {
        self.interests.get_or_insert_with(Box::default)
    }

    /// Starts a session: registers nothing yet, sends the challenge `C|CH`.
    pub fn start(
        core: Rc<Core>,
        port: Rc<SessionPort>,
        dialect: Dialect,
        peer: Option<SocketAddr>,
    ) -> Session {
        let mut session = Session {
            core,
            port,
            dialect,
            peer,
            state: SessionState::AwaitingChallengeResponse,
            username: None,
            auth_attempts: 0,
            interests: None,
            presence_login: None,
            proxy_identity: None,
            rule_user: None,
            parse_errors: 0,
        };
        session.reply(&[b"C", b"CH"]);
        session
    }

    /// The user a trusted proxy authenticated for this connection (proxy-header auth).
    pub fn set_proxy_identity(&mut self, identity: Option<crate::auth::ProxyIdentity>) {
        self.proxy_identity = identity.map(Box::new);
    }

    pub fn state(&self) -> SessionState {
        self.state
    }

    /// The core this session lives on.
    pub fn core(&self) -> &Rc<Core> {
        &self.core
    }

    /// This session's outbound port.
    pub fn port(&self) -> &Rc<SessionPort> {
        &self.port
    }

    /// The client's address (the proxy's word for it behind a trusted proxy).
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    pub fn is_authenticated(&self) -> bool {
        self.username.is_some()
    }

    fn reply(&mut self, fields: &[&[u8]]) {
        REPLY.with(|reply| {
            let mut reply = reply.borrow_mut();
            reply.clear();
            write_message(&mut reply, fields);
            self.core.push_to(&self.port, &reply);
            if reply.capacity() > KEPT_REPLY_CAPACITY {
                *reply = Vec::new();
            }
        });
    }

    fn close_after_flush(&mut self) {
        self.state = SessionState::Closed;
        self.core.flush_broadcasts();
        self.port.close_after_flush();
    }

    /// Handles one unit (one or more messages, as framed by the transport). Stops as soon as
    /// the connection is being closed, and waits between messages while the cross-core queues
    /// are congested, so one unit cannot queue unbounded work for other cores.
    pub async fn handle_unit(&mut self, unit: Bytes) {
        for parsed in messages(&unit, self.dialect) {
            if self.state == SessionState::Closed || self.port.state() != PortState::Open {
                return;
            }
            match parsed {
                Parsed::Message(message) => self.core.counters.message_in(message.topic),
                Parsed::ParseError { .. } => self.core.counters.message_in(b""),
            }
            // 2.x: a pong is accepted, and ignored, in every state.
            if self.dialect == Dialect::V2 {
                if let Parsed::Message(message) = parsed {
                    if message.topic == b"C" && message.action == Action::Pong {
                        continue;
                    }
                }
            }
            match self.state {
                SessionState::AwaitingChallengeResponse => {
                    self.on_connection_message(parsed, &unit)
                }
                SessionState::AwaitingAuth => self.on_auth_message(parsed).await,
                SessionState::Open => self.on_open_message(parsed, &unit).await,
                SessionState::Closed => return,
            }
            if let Parsed::ParseError { .. } = parsed {
                self.count_parse_error();
            }
            self.core.wait_uncongested().await;
        }
    }

    /// One more unparseable message; past `maxParseErrors` the connection is closed.
    fn count_parse_error(&mut self) {
        self.parse_errors += 1;
        if self.parse_errors >= self.core.config().limits.max_parse_errors
            && self.state != SessionState::Closed
        {
            crate::warn!(
                "{}: {} unparseable messages (maxParseErrors): closing the connection",
                self.peer_text(),
                self.parse_errors
            );
            self.close_after_flush();
        }
    }

    fn peer_text(&self) -> String {
        self.peer.map(|p| p.to_string()).unwrap_or_default()
    }

    /// Before `C|CHR`, 1.x answers anything else with `C|E|UNKNOWN_ACTION` and stays open;
    /// 2.x answers a message of another topic with `C|E|INVALID_MESSAGE`, and closes after an
    /// unparseable one.
    fn on_connection_message(&mut self, parsed: Parsed<'_>, unit: &Bytes) {
        match parsed {
            Parsed::Message(message) if message.action == Action::ChallengeResponse => {
                self.state = SessionState::AwaitingAuth;
                self.reply(&[b"C", b"A"]);
            }
            Parsed::Message(message) if self.dialect == Dialect::V2 && message.topic != b"C" => {
                self.reply(&[
                    b"C",
                    b"E",
                    b"INVALID_MESSAGE",
                    b"invalid connection message",
                ]);
            }
            // Like `X|E|MESSAGE_PARSE_ERROR`, this quotes the whole unit with its terminator.
            Parsed::ParseError { raw } if self.dialect == Dialect::V2 => {
                self.reply(&[b"C", b"E", b"MESSAGE_PARSE_ERROR", quote(unit, raw)]);
                self.state = SessionState::Closed;
                self.core.flush_broadcasts();
                self.port.terminate_after_flush();
            }
            Parsed::Message(message) => {
                let mut text = b"unknown action ".to_vec();
                text.extend_from_slice(message.action_raw);
                self.reply(&[b"C", b"E", b"UNKNOWN_ACTION", &text]);
            }
            // deepstream 1.1.1 throws on an unparseable message here (it reads `.action` of
            // null); we answer it like 2.x does, without closing.
            Parsed::ParseError { raw } => {
                self.reply(&[b"C", b"E", b"MESSAGE_PARSE_ERROR", quote(unit, raw)]);
            }
        }
    }

    async fn on_auth_message(&mut self, parsed: Parsed<'_>) {
        let auth_data = match parsed {
            Parsed::Message(message)
                if message.topic == b"A"
                    && message.action == Action::Request
                    && message.data_count() == 1 =>
            {
                // Both references take any JSON whose `typeof` is 'object' (an array too);
                // 1.1.1 crashes on `null`, and 2.x refuses other values. An array carries no
                // username or password.
                match serde_json::from_slice::<Value>(message.data_at(0).unwrap_or_default()) {
                    Ok(Value::Object(map)) => map,
                    Ok(Value::Array(_)) => serde_json::Map::new(),
                    _ => return self.invalid_auth_message(),
                }
            }
            _ => return self.invalid_auth_message(),
        };
        let address = self.peer.map(|peer| peer.ip());
        if !self.core.admission().login_allowed(address) {
            // maxAuthAttemptsPerAddress: this address failed too often within the window,
            // whichever connections it used.
            crate::warn!(
                "{}: login refused: too many failed logins from this address",
                self.peer_text()
            );
            self.refuse_further_logins();
            return;
        }
        let authenticator = Arc::clone(self.core.auth());
        let dialect = self.dialect;
        let context = crate::auth::LoginContext {
            peer: self.peer,
            proxy: self.proxy_identity.as_deref().cloned(),
        };
        let outcome = if authenticator.is_expensive() {
            glommio::executor()
                .spawn_blocking(move || authenticator.authenticate(&auth_data, dialect, &context))
                .await
        } else {
            authenticator.authenticate(&auth_data, dialect, &context)
        };
        if self.state != SessionState::AwaitingAuth {
            return;
        }
        let outcome = match outcome {
            AuthOutcome::Accepted { username, .. } if has_control_characters(&username) => {
                // Written raw into presence messages (`U|PNJ|<name>`) and log lines, a 0x1E or
                // 0x1F in a name would forge messages for other clients.
                crate::warn!(
                    "{}: login refused: the username {:?} contains control characters",
                    self.peer_text(),
                    username
                );
                AuthOutcome::Rejected {
                    client_data: Some(Value::String("username contains control characters".into())),
                }
            }
            other => other,
        };
        match outcome {
            AuthOutcome::Accepted {
                username,
                client_data,
                server_data,
            } => {
                self.set_rule_user(&username, server_data.as_ref());
                crate::info!(
                    "{username} logged in from {}",
                    self.peer.map(|p| p.to_string()).unwrap_or_default()
                );
                if self.dialect == Dialect::V2 && counts_for_presence(&username) {
                    let login: Arc<str> = Arc::from(username.as_str());
                    self.core.broadcast(|| PresenceMessage::Changed {
                        username: Arc::clone(&login),
                        joined: true,
                        local: true,
                    });
                    self.presence_login = Some(login);
                }
                self.username = Some(username.into_boxed_str());
                self.state = SessionState::Open;
                match client_data {
                    None => self.reply(&[b"A", b"A"]),
                    Some(data) => self.reply(&[b"A", b"A", &typed_from_json(&data)]),
                }
            }
            AuthOutcome::Rejected { client_data } => {
                let typed = client_data
                    .as_ref()
                    .map(typed_from_json)
                    .unwrap_or_else(|| b"U".to_vec());
                self.reply(&[b"A", b"E", b"INVALID_AUTH_DATA", &typed]);
                self.auth_attempts += 1;
                self.core.counters.auth_failure();
                self.core.admission().login_failed(address);
                crate::info!(
                    "invalid authentication data from {} (attempt {})",
                    self.peer.map(|p| p.to_string()).unwrap_or_default(),
                    self.auth_attempts
                );
                if self.auth_attempts >= self.core.config().max_auth_attempts {
                    self.refuse_further_logins();
                }
            }
        }
    }

    /// `A|E|TOO_MANY_AUTH_ATTEMPTS`, then the connection closes.
    fn refuse_further_logins(&mut self) {
        self.reply(&[
            b"A",
            b"E",
            b"TOO_MANY_AUTH_ATTEMPTS",
            TOO_MANY_AUTH_ATTEMPTS,
        ]);
        self.close_after_flush();
    }

    fn invalid_auth_message(&mut self) {
        self.reply(&[
            b"A",
            b"E",
            b"INVALID_AUTH_MSG",
            b"invalid authentication message",
        ]);
        self.close_after_flush();
    }

    /// No successful login within `unauthenticatedClientTimeout`.
    pub fn on_auth_timeout(&mut self) {
        if self.is_authenticated() || self.state == SessionState::Closed {
            return;
        }
        crate::info!(
            "{}: {AUTH_TIMEOUT_TEXT}",
            self.peer.map(|p| p.to_string()).unwrap_or_default()
        );
        let text = typed_string(AUTH_TIMEOUT_TEXT);
        self.reply(&[b"C", b"E", b"CONNECTION_AUTHENTICATION_TIMEOUT", &text]);
        self.close_after_flush();
    }

    /// Has an auth result (success or failure) been given? deepstream clears the
    /// unauthenticated-client timer on the first one.
    pub fn auth_timer_cleared(&self) -> bool {
        self.is_authenticated() || self.auth_attempts > 0
    }

    async fn on_open_message(&mut self, parsed: Parsed<'_>, unit: &Bytes) {
        let message = match parsed {
            Parsed::Message(message) => message,
            Parsed::ParseError { raw } => {
                // 1.x sends the whole unit, terminator included; 2.4.1 crashes here instead.
                self.reply(&[b"X", b"E", b"MESSAGE_PARSE_ERROR", quote(unit, raw)]);
                return;
            }
        };
        // The config permission handler runs first and fails when there is no name.
        if message.data_count() == 0 {
            self.reply(&[
                message.topic,
                b"E",
                b"MESSAGE_PERMISSION_ERROR",
                b"",
                message.action_raw,
            ]);
            return;
        }
        let Some(topic) = Topic::parse(message.topic, self.dialect) else {
            return self.reply(&[b"X", b"E", b"UNKNOWN_TOPIC", message.topic]);
        };
        if !self.permitted(topic, &message).await {
            return;
        }
        match topic {
            Topic::Event => self.on_event_message(message, unit),
            Topic::Record => {
                let cross = self.record_cross_references(&message).await;
                self.on_record_message(message, unit, cross)
            }
            Topic::Rpc => self.on_rpc_message(message, unit),
            Topic::Presence => self.on_presence_message(message),
            _ => self.reply(&[b"X", b"E", b"UNKNOWN_TOPIC", message.topic]),
        }
    }

    /// The bytes of `message` with its terminator, shared with the unit (no copy).
    fn message_bytes(unit: &Bytes, message: &Message<'_>) -> Bytes {
        let start = message.raw.as_ptr() as usize - unit.as_ptr() as usize;
        let end = start + message.raw.len();
        if unit.get(end) == Some(&MESSAGE_SEPARATOR) {
            unit.slice(start..end + 1)
        } else {
            let mut owned = message.raw.to_vec();
            owned.push(MESSAGE_SEPARATOR);
            Bytes::from(owned)
        }
    }

    fn field_bytes(unit: &Bytes, field: &[u8]) -> Bytes {
        unit.slice_ref(field)
    }

    fn on_event_message(&mut self, message: Message<'_>, unit: &Bytes) {
        let code = Topic::Event.code();
        let session = self.port.id;
        match message.action {
            Action::Subscribe | Action::Unsubscribe => {
                let (Some(name), 1) = (message.data_at(0), message.data_count()) else {
                    return self.reply(&[code, b"E", b"INVALID_MESSAGE_DATA", message.raw]);
                };
                let name = Self::field_bytes(unit, name);
                if message.action == Action::Subscribe && !self.may_subscribe(Topic::Event, &name) {
                    return;
                }
                let owner = self.core.owner(&name);
                let request = if message.action == Action::Subscribe {
                    // Copied: a slice of the unit would keep the whole read buffer alive.
                    self.interests()
                        .events
                        .insert(Bytes::copy_from_slice(&name));
                    Subscription::Subscribe {
                        topic: Topic::Event,
                        name,
                        session,
                    }
                } else {
                    self.interests().events.remove(&name);
                    Subscription::Unsubscribe {
                        topic: Topic::Event,
                        name,
                        session,
                    }
                };
                self.core.route(owner, request);
            }
            Action::Event => {
                let name = Self::field_bytes(unit, message.data_at(0).unwrap_or_default());
                let owner = self.core.owner(&name);
                let bytes = Self::message_bytes(unit, &message);
                self.core.route(
                    owner,
                    Subscription::Emit {
                        name,
                        message: bytes,
                        sender: session,
                    },
                );
            }
            Action::Listen => self.listen(Topic::Event, message),
            Action::Unlisten => self.unlisten(Topic::Event, message),
            Action::ListenAccept | Action::ListenReject => {
                self.listen_response(Topic::Event, message, unit)
            }
            _ => self.unknown_action(code, message.action_raw),
        }
    }

    /// May this session subscribe to one more name (`maxSubscriptionsPerConnection`, events
    /// and records together)? Answers `TOO_MANY_SUBSCRIPTIONS` when not.
    fn may_subscribe(&mut self, topic: Topic, name: &[u8]) -> bool {
        let known = match topic {
            Topic::Record => self.interests().records.contains(name),
            _ => self.interests().events.contains(name),
        };
        let count = self.interests().events.len() + self.interests().records.len();
        if known || count < self.core.config().limits.max_subscriptions {
            return true;
        }
        self.reply(&[topic.code(), b"E", b"TOO_MANY_SUBSCRIPTIONS", name]);
        false
    }

    /// May this session use one more RPC name (`maxRpcNamesPerConnection`)? A refused request
    /// is answered with its correlation id, so the requester's callback gets the error.
    fn may_use_rpc_name(&mut self, name: &[u8], correlation: Option<&[u8]>) -> bool {
        if self.interests().rpc_names.contains(name)
            || self.interests().rpc_names.len() < self.core.config().limits.max_rpc_names
        {
            return true;
        }
        let mut reply: Vec<&[u8]> = vec![b"P", b"E", b"TOO_MANY_RPC_NAMES", name];
        reply.extend(correlation);
        self.reply(&reply);
        false
    }

    fn unknown_action(&mut self, code: &[u8], action: &[u8]) {
        let mut text = b"unknown action ".to_vec();
        text.extend_from_slice(action);
        self.reply(&[code, b"E", b"UNKNOWN_ACTION", &text]);
    }

    fn listen_response(&mut self, topic: Topic, message: Message<'_>, unit: &Bytes) {
        let (Some(pattern), Some(name)) = (message.data_at(0), message.data_at(1)) else {
            return self.reply(&[topic.code(), b"E", b"INVALID_MESSAGE", message.raw]);
        };
        let name = Self::field_bytes(unit, name);
        let owner = self.core.owner(&name);
        self.core.route(
            owner,
            Subscription::ListenResponse(crate::features::listen::ListenResponse {
                topic,
                accept: message.action == Action::ListenAccept,
                pattern: Arc::from(String::from_utf8_lossy(pattern).as_ref()),
                name,
                session: self.port.id,
                raw: Self::field_bytes(unit, message.raw),
            }),
        );
    }

    fn on_record_message(
        &mut self,
        message: Message<'_>,
        unit: &Bytes,
        cross: Option<Arc<crate::permission::cross::LoadedRecords>>,
    ) {
        let code = Topic::Record.code();
        let name = Self::field_bytes(unit, message.data_at(0).unwrap_or_default());
        match message.action {
            Action::CreateOrRead
            | Action::Unsubscribe
            | Action::Snapshot
            | Action::Has
            | Action::Head
            | Action::Update
            | Action::Patch
            | Action::CreateAndUpdate
            | Action::Delete => {
                if message.action == Action::CreateOrRead
                    && !self.may_subscribe(Topic::Record, &name)
                {
                    return;
                }
                if message.action == Action::CreateOrRead {
                    // Copied: a slice of the unit would keep the whole read buffer alive.
                    self.interests()
                        .records
                        .insert(Bytes::copy_from_slice(&name));
                } else if message.action == Action::Unsubscribe {
                    self.interests().records.remove(&name);
                }
                let owner = self.core.owner(&name);
                self.core.route(
                    owner,
                    RecordMessage {
                        session: self.port.id,
                        dialect: self.dialect,
                        name,
                        message: Self::message_bytes(unit, &message),
                        user: self.rule_user.clone(),
                        cross,
                    },
                );
            }
            Action::Listen => self.listen(Topic::Record, message),
            Action::Unlisten => self.unlisten(Topic::Record, message),
            Action::ListenAccept | Action::ListenReject => {
                self.listen_response(Topic::Record, message, unit)
            }
            _ => self.unknown_action(code, message.action_raw),
        }
    }

    /// 2.x presence requests are answered by this session's own core from its replica.
    fn on_presence_message(&mut self, message: Message<'_>) {
        let action = match message.action {
            Action::Subscribe => PresenceAction::Subscribe,
            Action::Unsubscribe => PresenceAction::Unsubscribe,
            Action::Query => PresenceAction::Query,
            // deepstream answers unknown presence actions on topic E.
            _ => return self.unknown_action(b"E", message.action_raw),
        };
        let own: Arc<str> = Arc::from(self.username.as_deref().unwrap_or_default());
        self.core.route(
            self.core.id,
            PresenceMessage::Request {
                session: self.port.id,
                action,
                username: own,
            },
        );
    }

    fn on_rpc_message(&mut self, message: Message<'_>, unit: &Bytes) {
        let code = Topic::Rpc.code();
        let session = self.port.id;
        let field = |index: usize| message.data_at(index).map(|f| Self::field_bytes(unit, f));
        match message.action {
            Action::Subscribe | Action::Unsubscribe => {
                let Some(name) = field(0) else { return };
                if !self.may_use_rpc_name(&name, None) {
                    return;
                }
                self.interests()
                    .rpc_names
                    .insert(Bytes::copy_from_slice(&name));
                let owner = self.core.owner(&name);
                self.core.route(
                    owner,
                    RpcMessage::Provide {
                        name,
                        session,
                        provide: message.action == Action::Subscribe,
                    },
                );
            }
            Action::Request => {
                let (Some(name), Some(correlation)) = (field(0), field(1)) else {
                    return self.reply(&[code, b"E", b"INVALID_MESSAGE_DATA", message.raw]);
                };
                if !self.may_use_rpc_name(&name, Some(&correlation)) {
                    return;
                }
                if !self.interests().rpc_names.contains(&name) {
                    self.interests()
                        .rpc_names
                        .insert(Bytes::copy_from_slice(&name));
                }
                let owner = self.core.owner(&name);
                self.core.route(
                    owner,
                    RpcMessage::Request(RpcRequest {
                        name,
                        correlation,
                        session,
                        dialect: self.dialect,
                        message: Self::message_bytes(unit, &message),
                    }),
                );
            }
            Action::Ack if self.dialect == Dialect::V2 && message.data_at(0) != Some(b"REQ") => {
                // A 1.x-style ack on the 2.x endpoint: refused as 2.4.1 does (the request then
                // times out waiting for a proper ack).
                let mut text = b"unexpected state for rpc ".to_vec();
                text.extend_from_slice(message.data_at(1).unwrap_or(b"undefined"));
                text.extend_from_slice(b" with action A");
                self.reply(&[code, b"E", b"INVALID_RPC_CORRELATION_ID", &text]);
            }
            Action::Ack | Action::Response | Action::Error | Action::Reject => {
                let Some((action, name_index)) =
                    provider_action(message.action, message.data_at(0), self.dialect)
                else {
                    return;
                };
                let (Some(name), Some(correlation)) = (field(name_index), field(name_index + 1))
                else {
                    let mut text = b"unexpected state for rpc ".to_vec();
                    text.extend_from_slice(message.data_at(1).unwrap_or(b"undefined"));
                    text.extend_from_slice(b" with action ");
                    text.extend_from_slice(message.action_raw);
                    return self.reply(&[code, b"E", b"INVALID_MESSAGE_DATA", &text]);
                };
                let owner = self.core.owner(&name);
                self.core.route(
                    owner,
                    RpcMessage::FromProvider {
                        action,
                        name,
                        correlation,
                        session,
                        dialect: self.dialect,
                        message: Self::message_bytes(unit, &message),
                        data1: field(1).unwrap_or_else(|| Bytes::from_static(b"undefined")),
                    },
                );
            }
            _ => self.unknown_action(code, message.action_raw),
        }
    }

    fn listen(&mut self, topic: Topic, message: Message<'_>) {
        let code = topic.code();
        if message.data_count() > 2 {
            return self.reply(&[code, b"E", b"INVALID_MESSAGE_DATA", message.raw]);
        }
        let pattern = String::from_utf8_lossy(message.data_at(0).unwrap_or_default()).into_owned();
        if pattern.is_empty() {
            // deepstream ignores an empty pattern without a reply.
            return;
        }
        if let Err(error) = compile_pattern(&pattern) {
            return self.reply(&[code, b"E", b"INVALID_MESSAGE_DATA", error.as_bytes()]);
        }
        let limit = self.core.config().limits.max_listen_patterns;
        let known = self
            .interests()
            .listens
            .contains(&(topic, Arc::from(pattern.as_str())));
        if !known && self.interests().listens.len() >= limit {
            // Every core compiles and matches each pattern: they are bounded per session.
            return self.reply(&[code, b"E", b"TOO_MANY_LISTEN_PATTERNS", pattern.as_bytes()]);
        }
        let pattern: Arc<str> = Arc::from(pattern);
        if !self
            .interests()
            .listens
            .insert((topic, Arc::clone(&pattern)))
        {
            // Listening again on the same pattern gets no reply (PROTOCOL.md §3.3).
            return;
        }
        self.reply(&[code, b"A", b"L", pattern.as_bytes()]);
        let session = self.port.id;
        self.core.broadcast(|| Subscription::ListenAdded {
            topic,
            pattern: Arc::clone(&pattern),
            session,
        });
    }

    fn unlisten(&mut self, topic: Topic, message: Message<'_>) {
        let code = topic.code();
        let pattern = String::from_utf8_lossy(message.data_at(0).unwrap_or_default()).into_owned();
        let key: (Topic, Arc<str>) = (topic, Arc::from(pattern.as_str()));
        let Some((_, pattern)) = self.interests().listens.take(&key) else {
            return self.reply(&[code, b"E", b"NOT_SUBSCRIBED", pattern.as_bytes()]);
        };
        let session = self.port.id;
        // Records (1.x): the subscribers' `SH|F` goes before the listener's ack.
        if topic == Topic::Event {
            self.reply(&[code, b"A", b"UL", pattern.as_bytes()]);
        }
        self.core.broadcast(|| Subscription::ListenRemoved {
            topic,
            pattern: Arc::clone(&pattern),
            session,
        });
        if topic == Topic::Record {
            self.reply(&[code, b"A", b"UL", pattern.as_bytes()]);
        }
    }

    /// The connection is gone: remove this session from every core's registries.
    pub fn close(&mut self) {
        self.state = SessionState::Closed;
        let session = self.port.id;
        let interests = self.interests.take().map(|interests| *interests);
        let Interests {
            events,
            records,
            rpc_names,
            listens,
        } = interests.unwrap_or_default();
        let groups = [
            (Topic::Event, events),
            (Topic::Record, records),
            (Topic::Rpc, rpc_names),
        ];
        for (topic, names) in groups {
            let mut by_owner: AHashMap<usize, Vec<Bytes>> = AHashMap::new();
            for name in names {
                by_owner
                    .entry(self.core.owner(&name))
                    .or_default()
                    .push(name);
            }
            for (owner, names) in by_owner {
                let closed: CoreMessage = match topic {
                    Topic::Rpc => RpcMessage::SessionClosed { session, names }.into(),
                    _ => Subscription::SessionClosed {
                        session,
                        topic,
                        names,
                    }
                    .into(),
                };
                self.core.route(owner, closed);
            }
        }
        if self.dialect == Dialect::V2 {
            self.core.route(
                self.core.id,
                PresenceMessage::Request {
                    session,
                    action: PresenceAction::Closed,
                    username: Arc::from(""),
                },
            );
        }
        if let Some(login) = self.presence_login.take() {
            self.core.broadcast(|| PresenceMessage::Changed {
                username: Arc::clone(&login),
                joined: false,
                local: true,
            });
        }
        for (topic, pattern) in listens {
            self.core.broadcast(|| Subscription::ListenRemoved {
                topic,
                pattern: Arc::clone(&pattern),
                session,
            });
        }
        self.core.close_session(session);
        if let Some(username) = &self.username {
            crate::debug!("{username} disconnected");
        }
    }
}
