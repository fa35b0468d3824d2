//! engine.io protocol 3 sessions on the HTTP port (deepstream 1.x browser clients at `urlPath`,
//! and an echo endpoint at `engineioEchoPath` for conformance testing).
//!
//! A session lives on the core that created it; its sid starts with that core's number. It is
//! driven by its own task (which owns the deepstream `Session`, 1.x dialect): packets that
//! arrive by polling POST or WebSocket are queued for it; what it has to send waits in its
//! output until a polling GET or the WebSocket takes it. The client pings, the server pongs;
//! a session silent for `pingInterval + pingTimeout` is closed.
//!
//! A polling request that lands on another core (every new HTTP connection may) is relayed to
//! the session's home core through the mesh and answered from there (`answer_polling`).
//! A WebSocket upgrade that lands on another core is handed over, socket and all, to the home
//! core (`RelayMessage::Adopt`), which serves it.
//!
//! `requests` answers the HTTP requests (handshake, polls, posts, the upgrade); `websocket`
//! drives a session over a WebSocket.

pub mod requests;
pub mod websocket;

use crate::admission::{EngineioTicket, Refusal};
use crate::auth::proxy::Caller;
use crate::dispatch::{Core, RelayReply, RelayRequest};
use crate::metrics::Transport;
use crate::protocol::actions::Dialect;
use crate::session::Session;
use crate::shard::{PortState, SessionPort};
use crate::transport::engineio::{
    decode_binary_payload, decode_text_payload, encode_binary_payload, encode_text_payload,
    handshake, Packet, TextConvention,
};
use ahash::AHashMap;
use bytes::Bytes;
use futures_lite::future::{or, poll_fn};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// deepstream's engine.io endpoint, or the echo endpoint (`engineioEchoPath`).
pub use crate::ports::route::Endpoint as Mode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    Polling,
    /// A WebSocket probed (`2probe`/`3probe`); polling continues until `5`.
    Upgrading,
    WebSocket,
}

pub struct EioSession {
    core: std::rc::Weak<Core>,
    pub sid: String,
    pub mode: Mode,
    pub convention: TextConvention,
    /// The client asked for base64 (`b64=1`) at the handshake: never binary payloads.
    pub b64: bool,
    port: Option<Rc<SessionPort>>,
    /// Engine.io packets to send (pongs, noops, echoes), before the deepstream output.
    out: RefCell<VecDeque<Packet>>,
    inbound: RefCell<VecDeque<Packet>>,
    driver_waker: RefCell<Option<Waker>>,
    output_wakers: RefCell<Vec<Waker>>,
    pub carrier: Cell<Carrier>,
    pub closed: Cell<bool>,
    last_seen: Cell<Instant>,
    /// A WebSocket is attached (only one may be).
    pub websocket_attached: Cell<bool>,
    /// `maxEngineioQueuedPackets`: most packets waiting in each direction.
    max_queued: usize,
    /// This session's place in the node's engine.io counts (given back when it is dropped).
    _ticket: EngineioTicket,
    /// The user a trusted proxy authenticated when the session was opened (proxy-header auth):
    /// every later request for the session must come as that user (`EioRegistry::get_for`).
    user: Option<String>,
}

/// A session id: the home core, then 128 bits from the operating system's cryptographic
/// generator (the sid is the only credential of a poll or an upgrade).
fn new_sid(core: usize) -> String {
    let mut sid = format!("{core:x}-");
    for byte in crate::random::bytes::<16>() {
        sid.push_str(&format!("{byte:02x}"));
    }
    sid
}

impl EioSession {
    /// The deepstream session's outbound port (`None` on the echo path).
    pub fn port(&self) -> Option<&SessionPort> {
        self.port.as_deref()
    }

    pub fn touch(&self) {
        self.last_seen.set(Instant::now());
    }

    /// Queues packets from the client for the session's task. A client that sends more than
    /// `maxEngineioQueuedPackets` before the session could handle them is closed.
    pub fn receive(&self, packets: Vec<Packet>) {
        self.touch();
        let mut inbound = self.inbound.borrow_mut();
        if inbound.len() + packets.len() > self.max_queued {
            drop(inbound);
            crate::warn!(
                "engine.io session {}: more than {} packets queued (maxEngineioQueuedPackets): \
                 closing it",
                self.sid,
                self.max_queued
            );
            self.close();
            return;
        }
        inbound.extend(packets);
        drop(inbound);
        if let Some(waker) = self.driver_waker.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Queues an engine.io packet (pong, noop, echo) for the client; past
    /// `maxEngineioQueuedPackets` unread packets the session is closed.
    pub fn send(&self, packet: Packet) {
        if self.out.borrow().len() >= self.max_queued {
            crate::warn!(
                "engine.io session {}: more than {} packets unread (maxEngineioQueuedPackets): \
                 closing it",
                self.sid,
                self.max_queued
            );
            self.close();
            return;
        }
        self.out.borrow_mut().push_back(packet);
        self.wake_output();
    }

    fn wake_output(&self) {
        // Taken, not drained: an idle session keeps no waker list allocated.
        let wakers = std::mem::take(&mut *self.output_wakers.borrow_mut());
        for waker in wakers {
            waker.wake();
        }
    }

    pub fn has_output(&self) -> bool {
        !self.out.borrow().is_empty() || self.port.as_ref().is_some_and(|port| port.has_output())
    }

    /// Everything waiting to go out: engine.io packets, then the deepstream output as one
    /// message packet.
    pub fn take_output(&self) -> Vec<Packet> {
        // Taken, not drained: an idle session keeps no queue allocated.
        let mut packets: Vec<Packet> = std::mem::take(&mut *self.out.borrow_mut()).into();
        if let Some(port) = &self.port {
            if port.has_output() {
                let mut buffer = Vec::new();
                port.take_into(&mut buffer);
                self.count_bytes_out(&buffer);
                packets.push(Packet::Message(buffer));
            }
        }
        packets
    }

    fn count_bytes_out(&self, messages: &[u8]) {
        if let Some(core) = self.core.upgrade() {
            core.counters.bytes_out(Transport::EngineIo, messages.len());
        }
    }

    /// Waits until there is output, the session closed, or `wait` passed.
    pub async fn wait_output(&self, wait: Duration) {
        let ready = poll_fn(|context| {
            if self.has_output() || self.closed.get() {
                return Poll::Ready(());
            }
            let mut wakers = self.output_wakers.borrow_mut();
            if !wakers.iter().any(|waker| waker.will_wake(context.waker())) {
                wakers.push(context.waker().clone());
            }
            drop(wakers);
            if let Some(port) = &self.port {
                let _ = port.poll_ready(context);
            }
            Poll::Pending
        });
        or(ready, glommio::timer::sleep(wait)).await;
    }

    /// Wakes a pending poll so it can answer (used when the WebSocket takes over).
    pub fn release_poll(&self) {
        self.send(Packet::Noop);
    }

    pub fn close(&self) {
        self.closed.set(true);
        self.wake_output();
        if let Some(waker) = self.driver_waker.borrow_mut().take() {
            waker.wake();
        }
    }
}

/// This core's engine.io sessions.
pub struct EioRegistry {
    core: Rc<Core>,
    sessions: RefCell<AHashMap<String, Rc<EioSession>>>,
}

impl EioRegistry {
    pub fn new(core: Rc<Core>) -> Rc<EioRegistry> {
        Rc::new(EioRegistry {
            core,
            sessions: RefCell::new(AHashMap::new()),
        })
    }

    pub fn get(&self, sid: &str) -> Option<Rc<EioSession>> {
        self.sessions.borrow().get(sid).cloned()
    }

    /// The session `sid`, for a request that came as `user` (the user a trusted proxy named for
    /// it, `None` without proxy-header auth). A session opened as another user is not given:
    /// the sid alone (which travels in URLs, so may leak into logs) must not let one
    /// authenticated user ride another's session. The request is answered as for an unknown sid.
    pub fn get_for(&self, sid: &str, user: Option<&str>) -> Option<Rc<EioSession>> {
        let session = self.get(sid)?;
        if session.user.as_deref() == user {
            return Some(session);
        }
        crate::warn!(
            "engine.io session {}…: a request as {:?} for a session opened as {:?}: refused",
            &sid[..sid.len().min(8)],
            user.unwrap_or("(no proxied user)"),
            session.user.as_deref().unwrap_or("(no proxied user)")
        );
        None
    }

    pub fn len(&self) -> usize {
        self.sessions.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.borrow().is_empty()
    }

    /// The core a sid belongs to.
    pub fn home_core(sid: &str) -> Option<usize> {
        let (core, _) = sid.split_once('-')?;
        usize::from_str_radix(core, 16).ok()
    }

    /// Creates a session and starts its task. Returns it with the open packet to send, or why
    /// it was refused (`maxEngineioSessions`, `maxEngineioSessionsPerAddress`).
    pub fn open(
        self: &Rc<Self>,
        mode: Mode,
        carrier: Carrier,
        b64: bool,
        caller: Caller,
    ) -> Result<(Rc<EioSession>, Packet), Refusal> {
        let core = &self.core;
        let ticket = core
            .admission()
            .open_engineio(caller.address.map(|address| address.ip()))?;
        let sid = new_sid(core.id);
        let convention = match mode {
            Mode::Deepstream => TextConvention::Utf8Bytes,
            Mode::Echo => TextConvention::Utf16Units,
        };
        let port = (mode == Mode::Deepstream).then(|| core.open_session());
        let session = Rc::new(EioSession {
            core: Rc::downgrade(core),
            sid: sid.clone(),
            mode,
            convention,
            b64,
            port: port.clone(),
            out: RefCell::new(VecDeque::new()),
            inbound: RefCell::new(VecDeque::new()),
            driver_waker: RefCell::new(None),
            output_wakers: RefCell::new(Vec::new()),
            carrier: Cell::new(carrier),
            closed: Cell::new(false),
            last_seen: Cell::new(Instant::now()),
            websocket_attached: Cell::new(carrier == Carrier::WebSocket),
            max_queued: core.config().limits.max_engineio_queued_packets,
            _ticket: ticket,
            user: caller.user().map(str::to_string),
        });
        self.sessions
            .borrow_mut()
            .insert(sid.clone(), Rc::clone(&session));
        let config = core.config();
        let open = Packet::Open(handshake(
            &sid,
            carrier == Carrier::Polling,
            config.engineio_ping_interval.as_millis(),
            config.engineio_ping_timeout.as_millis(),
        ));
        let deepstream = port.map(|port| {
            let mut session = Session::start(Rc::clone(core), port, Dialect::V1, caller.address);
            session.set_proxy_identity(caller.identity);
            session
        });
        core.counters.session_opened(Transport::EngineIo);
        glommio::spawn_local(drive(Rc::clone(self), Rc::clone(&session), deepstream)).detach();
        Ok((session, open))
    }

    fn forget(&self, sid: &str) {
        self.sessions.borrow_mut().remove(sid);
    }
}

/// The task of one engine.io session: feeds its packets to the deepstream session (or echoes
/// them) and closes it on a close packet, a heartbeat timeout or a deepstream close.
/// Not an `async fn` (which would keep its arguments twice in its state, rustc #62958): an
/// idle engine.io session costs this task's state.
#[allow(clippy::manual_async_fn)]
fn drive(
    registry: Rc<EioRegistry>,
    eio: Rc<EioSession>,
    mut session: Option<Session>,
) -> impl std::future::Future<Output = ()> {
    async move { drive_session(&registry, &eio, &mut session).await }
}

async fn drive_session(registry: &EioRegistry, eio: &EioSession, session: &mut Option<Session>) {
    let config = std::sync::Arc::clone(registry.core.config());
    let silence = config.engineio_ping_interval + config.engineio_ping_timeout;
    let mut auth_deadline = config
        .unauthenticated_client_timeout
        .filter(|_| session.is_some())
        .map(|timeout| Instant::now() + timeout);
    'session: loop {
        if eio.closed.get() {
            break;
        }
        if let Some(port) = &eio.port {
            match port.state() {
                PortState::Abort => break,
                PortState::CloseAfterFlush | PortState::TerminateAfterFlush
                    if !port.has_output() =>
                {
                    break
                }
                _ => {}
            }
        }
        let packets: Vec<Packet> = std::mem::take(&mut *eio.inbound.borrow_mut()).into();
        for packet in packets {
            match packet {
                Packet::Message(data) => match session.as_mut() {
                    // Boxed: its state lives only while a unit is handled.
                    Some(session) => Box::pin(session.handle_unit(Bytes::from(data))).await,
                    None => eio.send(Packet::Message(data)),
                },
                Packet::Binary(data) => {
                    if session.is_none() {
                        eio.send(Packet::Binary(data));
                    }
                }
                Packet::Ping(data) => eio.send(Packet::Pong(data)),
                Packet::Close => break 'session,
                Packet::Open(_) | Packet::Pong(_) | Packet::Upgrade | Packet::Noop => {}
            }
        }
        if let Some(session) = session.as_ref() {
            if session.auth_timer_cleared() {
                auth_deadline = None;
            }
        }
        let deadline = {
            let silent_until = eio.last_seen.get() + silence;
            auth_deadline.map_or(silent_until, |auth| auth.min(silent_until))
        };
        let woken = poll_fn(|context| {
            if !eio.inbound.borrow().is_empty() || eio.closed.get() {
                return Poll::Ready(());
            }
            *eio.driver_waker.borrow_mut() = Some(context.waker().clone());
            if let Some(port) = &eio.port {
                if port.state() != PortState::Open {
                    return Poll::Ready(());
                }
            }
            Poll::Pending
        });
        or(
            woken,
            glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())),
        )
        .await;
        let now = Instant::now();
        if auth_deadline.is_some_and(|auth| now >= auth) {
            if let Some(session) = session.as_mut() {
                session.on_auth_timeout();
            }
            auth_deadline = None;
        }
        if now >= eio.last_seen.get() + silence && eio.inbound.borrow().is_empty() {
            crate::debug!("engine.io session {} timed out", eio.sid);
            break;
        }
        if let Some(port) = &eio.port {
            if port.state() != PortState::Open {
                // Let a poll or the WebSocket take what the session wrote last, then stop.
                eio.wait_output(Duration::from_millis(0)).await;
                if port.has_output() {
                    glommio::timer::sleep(Duration::from_millis(50)).await;
                }
                if port.state() == PortState::Abort || !port.has_output() {
                    break;
                }
            }
        }
    }
    eio.close();
    if let Some(session) = session.as_mut() {
        session.close();
    }
    registry.forget(&eio.sid);
    registry.core.counters.session_closed(Transport::EngineIo);
}

/// A polling response body and its content type for `packets`.
pub fn polling_body(
    packets: &[Packet],
    binary_allowed: bool,
    convention: TextConvention,
) -> (Vec<u8>, &'static str) {
    let has_binary = packets
        .iter()
        .any(|packet| matches!(packet, Packet::Binary(_)));
    if binary_allowed && has_binary {
        (encode_binary_payload(packets), "application/octet-stream")
    } else {
        (
            encode_text_payload(packets, convention),
            "text/plain; charset=UTF-8",
        )
    }
}

/// Decodes a polling POST body (binary when sent as `application/octet-stream`).
pub fn decode_post(body: &[u8], binary: bool) -> Option<Vec<Packet>> {
    if binary {
        decode_binary_payload(body).ok()
    } else {
        decode_text_payload(body).ok()
    }
}

fn json_error(code: u8, message: &str) -> RelayReply {
    RelayReply {
        status: 400,
        content_type: "application/json",
        body: format!("{{\"code\":{code},\"message\":\"{message}\"}}").into_bytes(),
    }
}

/// Answers a polling GET (`post` is `None`: wait for output, then send it) or POST (deliver
/// the packets, answer `ok`) for a session of this core.
pub async fn answer_polling(
    core: &Core,
    session: Option<Rc<EioSession>>,
    post: Option<&[u8]>,
    b64: bool,
    binary: bool,
) -> RelayReply {
    let Some(session) = session else {
        return json_error(1, "Session ID unknown");
    };
    if session.carrier.get() == Carrier::WebSocket || session.closed.get() {
        return json_error(3, "Bad request");
    }
    match post {
        None => {
            session.touch();
            let wait = core.config().engineio_ping_interval + core.config().engineio_ping_timeout;
            session.wait_output(wait).await;
            let mut packets = session.take_output();
            if packets.is_empty() {
                packets.push(Packet::Noop);
            }
            let (body, content_type) =
                polling_body(&packets, !(b64 || session.b64), session.convention);
            RelayReply {
                status: 200,
                content_type,
                body,
            }
        }
        Some(body) => match decode_post(body, binary) {
            Some(packets) => {
                session.receive(packets);
                RelayReply {
                    status: 200,
                    content_type: "text/html",
                    body: b"ok".to_vec(),
                }
            }
            None => {
                session.close();
                json_error(3, "Bad request")
            }
        },
    }
}

/// Serves polling requests that other cores relay to this one.
pub fn register_relay(core: &Rc<Core>, registry: &Rc<EioRegistry>) {
    let handler_core = Rc::clone(core);
    let registry = Rc::clone(registry);
    core.set_relay_handler(Rc::new(move |request: RelayRequest| {
        let core = Rc::clone(&handler_core);
        let registry = Rc::clone(&registry);
        glommio::spawn_local(async move {
            let session = registry.get_for(&request.sid, request.user.as_deref());
            let reply = answer_polling(
                &core,
                session,
                request.post.as_deref(),
                request.b64,
                request.binary,
            )
            .await;
            core.reply_relay(request.reply_to, request.request, reply);
        })
        .detach();
    }));
}
