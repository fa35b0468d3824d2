//! One engine.io request on the HTTP port (`EIO=3` in the query, on the deepstream path or the
//! echo path): the polling handshake, a poll or post (answered here, or relayed to the core
//! that owns the session), and the WebSocket upgrade, new or for a polling session. Called by
//! `ports::http` for every request its router sends to engine.io.

use super::{Carrier, EioRegistry, EioSession, Mode};
use crate::admission::Refusal;
use crate::auth::proxy::Caller;
use crate::dispatch::{Core, RelayRequest};
use crate::ports::net::put;
use crate::transport::engineio::Packet;
use crate::transport::http::{response, Request};
use crate::transport::websocket::{self, close_code};
use glommio::net::TcpStream;
use std::rc::Rc;
use std::time::Duration;

/// Whether the HTTP connection may serve another request after this one.
pub enum Fate {
    KeepAlive,
    Close,
    /// A poll that waits for output: the connection answers it with `LongPoll::answer`, and
    /// needs nothing of its request meanwhile.
    LongPoll(LongPoll),
}

/// A pending long poll (a GET for a session of this core): what answering it needs once
/// there is output, and nothing else; it can wait for minutes on each polling session.
pub struct LongPoll {
    session: Rc<EioSession>,
    b64: bool,
    keep_alive: bool,
    cors: Vec<(&'static str, String)>,
}

impl LongPoll {
    /// Waits for output (or the heartbeat's end) and answers. `false`: the connection must
    /// close (the write failed, or the request asked for `Connection: close`).
    pub async fn answer(self, core: &Core, stream: &mut TcpStream) -> bool {
        let reply = super::answer_polling(core, Some(self.session), None, self.b64, false).await;
        let headers = with_cors(&[("Content-Type", reply.content_type)], &self.cors);
        let answer = response(reply.status, &headers, &reply.body, self.keep_alive);
        // Boxed: the write's state (its deadline timer) is not part of the wait's.
        Box::pin(put(core, stream, &answer)).await && self.keep_alive
    }
}

/// How long after the 101 of a WebSocket-only engine.io session its open packet is written
/// (see `send_open`). 2 ms lost the packet in 1 of ~20 connections when the client's machine was
/// busy (the conformance test "websocket handshake timing", during a parallel build); 10 ms is
/// still nothing next to a session's life, and a client that opens with polling (every
/// browser client by default) never waits for it.
const OPEN_PACKET_DELAY: Duration = Duration::from_millis(10);

/// One request and what every answer to it shares.
struct Exchange<'a> {
    core: &'a Rc<Core>,
    engineio: &'a Rc<EioRegistry>,
    stream: &'a mut TcpStream,
    request: &'a Request,
    mode: Mode,
    caller: &'a Caller,
    /// The CORS headers every answer carries.
    cors: Vec<(&'static str, String)>,
    keep_alive: bool,
    b64: bool,
}

/// Serves one engine.io request; a WebSocket upgrade keeps the connection until it closes.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    core: &Rc<Core>,
    engineio: &Rc<EioRegistry>,
    stream: &mut TcpStream,
    request: &Request,
    body: &[u8],
    leftover: &mut Vec<u8>,
    mode: Mode,
    caller: &Caller,
) -> Fate {
    let mut exchange = Exchange {
        core,
        engineio,
        stream,
        request,
        mode,
        caller,
        cors: cors_headers(request),
        keep_alive: request.keep_alive(),
        b64: matches!(request.query_param("b64"), Some("1" | "true")),
    };
    if request.query_param("EIO") != Some("3") {
        exchange.error(5, "Unsupported protocol version").await;
        return Fate::KeepAlive;
    }
    let sid = request.query_param("sid").filter(|sid| !sid.is_empty());
    if let Some(sid) = sid {
        let home = EioRegistry::home_core(sid).filter(|home| *home < core.cores());
        if home != Some(core.id) {
            // Boxed, as the upgrade below: a pending long poll's state holds neither.
            Box::pin(exchange.elsewhere(sid, home, body)).await;
            return Fate::KeepAlive;
        }
    }
    match (request.query_param("transport"), sid) {
        (Some("websocket"), _) if request.is_websocket_upgrade() => {
            Box::pin(exchange.upgrade(sid, std::mem::take(leftover))).await
        }
        (Some("polling"), None) if request.method == "GET" => exchange.handshake().await,
        (Some("polling"), Some(sid)) => exchange.poll(sid, body).await,
        _ => {
            exchange.error(0, "Transport unknown").await;
            Fate::KeepAlive
        }
    }
}

/// Only an allowed origin gets here (`ports::http` refused the others): it is reflected, with
/// credentials, as engine.io does.
fn cors_headers(request: &Request) -> Vec<(&'static str, String)> {
    match request.header("origin") {
        Some(origin) => vec![
            (
                "Access-Control-Allow-Origin",
                String::from_utf8_lossy(origin).to_string(),
            ),
            ("Access-Control-Allow-Credentials", "true".to_string()),
            ("Vary", "Origin".to_string()),
        ],
        None => vec![("Access-Control-Allow-Origin", "*".to_string())],
    }
}

/// `first` headers, then the CORS headers.
fn with_cors<'h>(
    first: &[(&'h str, &'h str)],
    cors: &'h [(&'static str, String)],
) -> Vec<(&'h str, &'h str)> {
    let mut headers = first.to_vec();
    headers.extend(cors.iter().map(|(name, value)| (*name, value.as_str())));
    headers
}

impl Exchange<'_> {
    /// `first` headers, then the CORS headers.
    fn headers<'h>(&'h self, first: &[(&'h str, &'h str)]) -> Vec<(&'h str, &'h str)> {
        with_cors(first, &self.cors)
    }

    async fn put(&mut self, bytes: &[u8]) -> bool {
        put(self.core, self.stream, bytes).await
    }

    /// engine.io's error answer (400 with `{code, message}`).
    fn error_answer(&self, code: u8, message: &str, keep_alive: bool) -> Vec<u8> {
        let body = format!("{{\"code\":{code},\"message\":\"{message}\"}}");
        let headers = self.headers(&[("Content-Type", "application/json")]);
        response(400, &headers, body.as_bytes(), keep_alive)
    }

    async fn error(&mut self, code: u8, message: &str) {
        let answer = self.error_answer(code, message, self.keep_alive);
        let _ = self.put(&answer).await;
    }

    /// A handshake over an engine.io session limit: 503, try later.
    async fn refuse(&mut self, refusal: Refusal) -> Fate {
        let (key, text) = match refusal {
            Refusal::NodeFull => ("maxEngineioSessions", "this node has too many sessions"),
            Refusal::AddressFull => (
                "maxEngineioSessionsPerAddress",
                "too many sessions from this address",
            ),
        };
        crate::warn!("engine.io handshake refused: {text} ({key})");
        let body = format!("{{\"code\":4,\"message\":\"{text}\"}}");
        let headers = self.headers(&[("Content-Type", "application/json")]);
        let answer = response(503, &headers, body.as_bytes(), false);
        let _ = self.put(&answer).await;
        Fate::Close
    }

    /// The session lives on another core: relay a poll or post there; a WebSocket cannot be
    /// relayed (refused: the client keeps polling).
    async fn elsewhere(&mut self, sid: &str, home: Option<usize>, body: &[u8]) {
        let request = self.request;
        let is_poll = request.query_param("transport") == Some("polling")
            && matches!(request.method.as_str(), "GET" | "POST");
        let Some(home) = home.filter(|_| is_poll) else {
            return self.error(3, "Bad request").await;
        };
        let config = self.core.config();
        let wait = config.engineio_ping_interval + config.engineio_ping_timeout;
        let relayed = RelayRequest {
            reply_to: self.core.id,
            request: 0,
            sid: sid.to_string(),
            post: (request.method == "POST").then(|| body.to_vec()),
            b64: self.b64,
            binary: is_binary_post(request),
            user: self.caller.user().map(str::to_string),
        };
        match self
            .core
            .relay(home, relayed, wait + Duration::from_secs(1))
            .await
        {
            Some(reply) => {
                let headers = self.headers(&[("Content-Type", reply.content_type)]);
                let answer = response(reply.status, &headers, &reply.body, self.keep_alive);
                let _ = self.put(&answer).await;
            }
            None => self.error(1, "Session ID unknown").await,
        }
    }

    /// A new polling session: its open packet is the answer.
    async fn handshake(&mut self) -> Fate {
        let opened = self
            .engineio
            .open(self.mode, Carrier::Polling, self.b64, self.caller.clone());
        let (session, open) = match opened {
            Ok(opened) => opened,
            Err(refusal) => return self.refuse(refusal).await,
        };
        let (bytes, content_type) = super::polling_body(&[open], !self.b64, session.convention);
        let cookie = format!("io={}", session.sid);
        let headers = self.headers(&[("Content-Type", content_type), ("Set-Cookie", &cookie)]);
        let answer = response(200, &headers, &bytes, self.keep_alive);
        let _ = self.put(&answer).await;
        Fate::KeepAlive
    }

    /// A poll (GET), a post (POST) or a CORS preflight for a session of this core.
    async fn poll(&mut self, sid: &str, body: &[u8]) -> Fate {
        let request = self.request;
        let answer = match request.method.as_str() {
            "GET" | "POST" => {
                let post = (request.method == "POST").then_some(body);
                let session = self.engineio.get_for(sid, self.caller.user());
                if let (None, Some(session)) = (post, &session) {
                    if session.carrier.get() == Carrier::Polling && !session.closed.get() {
                        return Fate::LongPoll(LongPoll {
                            session: Rc::clone(session),
                            b64: self.b64,
                            keep_alive: self.keep_alive,
                            cors: std::mem::take(&mut self.cors),
                        });
                    }
                }
                let binary = is_binary_post(request);
                let reply = super::answer_polling(self.core, session, post, self.b64, binary).await;
                let headers = self.headers(&[("Content-Type", reply.content_type)]);
                response(reply.status, &headers, &reply.body, self.keep_alive)
            }
            "OPTIONS" => {
                let headers = self.headers(&[
                    ("Access-Control-Allow-Headers", "Content-Type"),
                    ("Access-Control-Allow-Methods", "GET, POST"),
                ]);
                response(200, &headers, b"", self.keep_alive)
            }
            _ => self.error_answer(3, "Bad request", self.keep_alive),
        };
        let _ = self.put(&answer).await;
        Fate::KeepAlive
    }

    /// The WebSocket upgrade: for a polling session of this core (`sid`), or a new session
    /// carried by the WebSocket alone.
    async fn upgrade(&mut self, sid: Option<&str>, leftover: Vec<u8>) -> Fate {
        let attached = sid.map(|sid| attach(self.engineio, sid, self.caller.user()));
        if let Some(Attach::Unknown) = attached {
            let answer = self.error_answer(1, "Session ID unknown", false);
            let _ = self.put(&answer).await;
            return Fate::Close;
        }
        let Some(key) = self.request.header("sec-websocket-key") else {
            let _ = self.put(&response(400, &[], b"", false)).await;
            return Fate::Close;
        };
        // A new session (WebSocket only) is opened before the 101, so a refusal can still be
        // an HTTP answer.
        let opened = match attached {
            None => match self.engineio.open(
                self.mode,
                Carrier::WebSocket,
                self.b64,
                self.caller.clone(),
            ) {
                Ok(opened) => Some(opened),
                Err(refusal) => return self.refuse(refusal).await,
            },
            Some(_) => None,
        };
        let handshake = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            websocket::accept_key(key)
        );
        if !self.put(handshake.as_bytes()).await {
            if let Some((session, _)) = opened {
                session.close();
            }
            return Fate::Close;
        }
        let session = match (attached, opened) {
            (Some(Attach::Attached(session)), _) => session,
            (_, Some((session, open))) => match self.send_open(&session, open).await {
                true => session,
                false => return Fate::Close,
            },
            // A second WebSocket for a session that has one is accepted, then closed.
            _ => {
                let mut frame = Vec::new();
                websocket::write_close(&mut frame, Some(close_code::NORMAL));
                let _ = self.put(&frame).await;
                return Fate::Close;
            }
        };
        super::websocket::serve(self.core, self.stream, leftover, session).await;
        Fate::Close
    }

    /// The open packet of a WebSocket-only session, once the client has taken the 101 on its
    /// own: a client that attaches its message listener when the socket opens (as the
    /// engine.io protocol suite does) would miss a packet that arrived with the 101 in one
    /// read. Node's engine.io has that gap naturally (its handshake code runs between the two
    /// writes); here it is a short pause.
    async fn send_open(&mut self, session: &Rc<EioSession>, open: Packet) -> bool {
        glommio::timer::sleep(OPEN_PACKET_DELAY).await;
        let mut packet = Vec::new();
        open.encode(&mut packet);
        let mut frame = Vec::new();
        websocket::write_text(&mut frame, &packet);
        if !self.put(&frame).await {
            session.close();
            return false;
        }
        true
    }
}

/// What a WebSocket upgrade finds for its `sid`.
enum Attach {
    /// The session, now carried (after the probe) by this WebSocket.
    Attached(Rc<EioSession>),
    /// The session has a WebSocket already.
    Duplicate,
    /// No such session (or it closed).
    Unknown,
}

fn attach(engineio: &EioRegistry, sid: &str, user: Option<&str>) -> Attach {
    match engineio.get_for(sid, user) {
        Some(session) if session.closed.get() => Attach::Unknown,
        Some(session) if session.websocket_attached.get() => Attach::Duplicate,
        Some(session) => {
            session.websocket_attached.set(true);
            Attach::Attached(session)
        }
        None => Attach::Unknown,
    }
}

fn is_binary_post(request: &Request) -> bool {
    request
        .header("content-type")
        .is_some_and(|value| value.starts_with(b"application/octet-stream"))
}
