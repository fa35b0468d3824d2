//! The HTTP port (`port`, default 6020): one listener per core, and the task that drives each
//! HTTP connection. It reads request heads (`transport::http`), routes them and owns the socket:
//! - `urlPath` with a WebSocket upgrade: a 2.x deepstream session over RFC 6455 frames
//!   (`transport::websocket`), with the `C|PI` heartbeat;
//! - `websocketEchoPath` (conformance testing only): a WebSocket echo;
//! - `healthCheckPath`: 200 while this node serves, 503 while it shuts down;
//! - `/metrics`: Prometheus text, summed over every core;
//! - anything else: 400/404/405/413/426/431 as fits, with keep-alive where allowed.
//!
//! Called by `server` (accept loops); it never knows what a record or an event is.

use crate::admission::Refusal;
use crate::auth::proxy::Caller;
use crate::engineio_port::{self, Carrier, EioRegistry, EioSession};
use crate::http_route::{self, Endpoint, Route};
use crate::net::Read;
use crate::protocol::actions::Dialect;
use crate::session::Session;
use crate::shard::{
    Core, CoreStats, PortState, RelayRequest, SessionPort, Transport, TOPIC_NAMES, TRANSPORT_NAMES,
};
use crate::transport::engineio::Packet;
use crate::transport::http::{parse_request, response, Parse, Request};
use crate::transport::websocket::{self, close_code, Decoder, Event};
use bytes::Bytes;
use futures_lite::future::{or, pending, poll_fn};
use futures_lite::AsyncReadExt;
use glommio::net::{TcpListener, TcpStream};
use std::fmt::Write as _;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Accepts HTTP connections on this core until the listener fails for good.
pub async fn accept_http(core: Rc<Core>, listener: TcpListener) {
    let engineio = EioRegistry::new(Rc::clone(&core));
    engineio_port::register_relay(&core, &engineio);
    {
        let adopting_core = Rc::clone(&core);
        let engineio = Rc::clone(&engineio);
        core.set_adopt_handler(Rc::new(move |fd, received| {
            // SAFETY: the sending core dup'ed this socket for us and kept no other use of the
            // duplicate; the stream takes ownership and closes it.
            let stream = unsafe { <TcpStream as std::os::fd::FromRawFd>::from_raw_fd(fd) };
            glommio::spawn_local(serve_http(
                Rc::clone(&adopting_core),
                Rc::clone(&engineio),
                stream,
                received,
            ))
            .detach();
        }));
    }
    loop {
        match listener.accept().await {
            Ok(stream) => {
                glommio::spawn_local(serve_http(
                    Rc::clone(&core),
                    Rc::clone(&engineio),
                    stream,
                    Vec::new(),
                ))
                .detach();
            }
            Err(error) => {
                crate::error!("accepting an HTTP connection failed: {error}");
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// What reading one request got.
enum Incoming {
    Request {
        request: Request,
        /// The head as received (replayed when an upgrade is handed to another core).
        head: Vec<u8>,
        body: Vec<u8>,
    },
    /// Answer with this status and close.
    Refuse(u16),
    /// The peer closed, or was idle past `httpKeepAliveTimeout`: close quietly.
    Gone,
}

/// Reads one request (head and body) under the HTTP limits: an idle connection waits at most
/// `httpKeepAliveTimeout` for its next request, a head must arrive within `httpHeaderTimeout` of
/// its first byte (408 otherwise) and a body within `httpBodyTimeout` (408); bodies are framed by
/// `Content-Length` only (501 for `Transfer-Encoding`) and limited to `maxMessageSize` (413).
async fn read_request(core: &Core, stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Incoming {
    let limits = &core.config.limits;
    let mut chunk = [0u8; 4096];
    let mut head_deadline =
        (!buffer.is_empty()).then(|| Instant::now() + limits.http_header_timeout);
    let idle_deadline = Instant::now() + limits.http_keep_alive_timeout;
    let request = loop {
        match parse_request(buffer) {
            Parse::Complete(request) => break request,
            Parse::Refuse(status) => return Incoming::Refuse(status),
            Parse::Partial => {}
        }
        let deadline = head_deadline.unwrap_or(idle_deadline);
        match crate::net::read_until(stream, &mut chunk, deadline).await {
            Read::Data(count) => {
                buffer.extend_from_slice(&chunk[..count]);
                head_deadline.get_or_insert(Instant::now() + limits.http_header_timeout);
            }
            Read::Closed => return Incoming::Gone,
            Read::TimedOut if head_deadline.is_some() => return Incoming::Refuse(408),
            Read::TimedOut => return Incoming::Gone,
        }
    };
    if request.header("transfer-encoding").is_some() {
        return Incoming::Refuse(501);
    }
    let Some(body_length) = request.content_length() else {
        return Incoming::Refuse(400);
    };
    if body_length > core.config.max_message_size {
        return Incoming::Refuse(413);
    }
    let head: Vec<u8> = buffer.drain(..request.head_length).collect();
    let body_deadline = Instant::now() + limits.http_body_timeout;
    while buffer.len() < body_length {
        match crate::net::read_until(stream, &mut chunk, body_deadline).await {
            Read::Data(count) => buffer.extend_from_slice(&chunk[..count]),
            Read::Closed => return Incoming::Gone,
            Read::TimedOut => return Incoming::Refuse(408),
        }
    }
    let body = buffer.drain(..body_length).collect();
    Incoming::Request {
        request,
        head,
        body,
    }
}

/// Writes a response or a frame: `false` when the write failed or did not finish within
/// `tcpUserTimeout` (a client that stopped reading); the caller then drops the connection.
async fn put(core: &Core, stream: &mut TcpStream, bytes: &[u8]) -> bool {
    let deadline = Instant::now() + core.config.limits.tcp_user_timeout;
    crate::net::write_all_racing(stream, bytes, None, Some(deadline)).await
}

/// Writes for a deepstream WebSocket session: gives up as soon as the session is aborted as a
/// slow consumer, or when the write takes longer than a heartbeat interval (the client cannot
/// be reading its pings).
async fn put_session(
    core: &Core,
    stream: &mut TcpStream,
    port: &SessionPort,
    bytes: &[u8],
) -> bool {
    let deadline = Instant::now() + core.config.heartbeat_interval;
    crate::net::write_all_racing(stream, bytes, Some(port), Some(deadline)).await
}

async fn serve_http(
    core: Rc<Core>,
    engineio: Rc<EioRegistry>,
    mut stream: TcpStream,
    received: Vec<u8>,
) {
    crate::net::tune(&stream, &core.config.limits);
    let peer = stream.peer_addr().ok();
    let mut buffer = received;
    loop {
        let (request, original_head, body) =
            match read_request(&core, &mut stream, &mut buffer).await {
                Incoming::Request {
                    request,
                    head,
                    body,
                } => (request, head, body),
                Incoming::Refuse(status) => {
                    let _ = put(&core, &mut stream, &response(status, &[], b"", false)).await;
                    return;
                }
                Incoming::Gone => return,
            };
        let keep_alive = request.keep_alive();
        let caller = crate::auth::proxy::caller(&core.config, peer, |name| request.header(name));
        let mut keep_open = keep_alive;
        let reply = match http_route::route(&core.config, &request) {
            Route::ForbiddenOrigin => {
                // `origins`: a page from another origin may not poll, post or upgrade (a
                // browser would send the visitor's credentials for nginx along with it).
                crate::info!(
                    "{}: request from origin {:?} refused (not in origins)",
                    caller.address.map(|a| a.to_string()).unwrap_or_default(),
                    String::from_utf8_lossy(request.header("origin").unwrap_or_default())
                );
                response(403, &[], b"origin not allowed", keep_alive)
            }
            Route::EngineIo(endpoint) => {
                // A WebSocket upgrade for a session of another core: hand the connection over,
                // with the request, so the home core serves it.
                let home = request
                    .query_param("sid")
                    .and_then(EioRegistry::home_core)
                    .filter(|home| *home < core.cores && *home != core.id);
                if let (Some(home), true) = (home, request.is_websocket_upgrade()) {
                    let mut replay = original_head;
                    replay.extend_from_slice(&body);
                    replay.extend_from_slice(&buffer);
                    hand_over(&core, &stream, home, replay);
                    return;
                }
                let fate = serve_engineio(
                    &core,
                    &engineio,
                    &mut stream,
                    &request,
                    &body,
                    &mut buffer,
                    endpoint,
                    &caller,
                )
                .await;
                match fate {
                    Fate::KeepAlive if keep_alive => continue,
                    _ => return,
                }
            }
            Route::WebSocket {
                endpoint,
                handshake,
            } => {
                if put(&core, &mut stream, handshake.as_bytes()).await {
                    serve_websocket(core, stream, buffer, endpoint, caller).await;
                }
                return;
            }
            Route::Health => health(&core, keep_alive).await,
            Route::Metrics => {
                let stats = core.gather_stats().await;
                let body = prometheus(&stats);
                let headers = [("Content-Type", "text/plain; version=0.0.4")];
                response(200, &headers, body.as_bytes(), keep_alive)
            }
            Route::Answer {
                status,
                headers,
                body,
                close,
            } => {
                keep_open = keep_alive && !close;
                response(status, headers, body, keep_open)
            }
        };
        if !put(&core, &mut stream, &reply).await || !keep_open {
            return;
        }
    }
}

/// Hands the connection (and the bytes read from it) to the core that owns its engine.io
/// session.
fn hand_over(core: &Rc<Core>, stream: &TcpStream, home: usize, received: Vec<u8>) {
    // SAFETY: dup of our own open socket; the copy goes to the home core, which becomes its
    // only user; ours is closed when the caller drops `stream`.
    let duplicate = unsafe { libc::dup(std::os::fd::AsRawFd::as_raw_fd(stream)) };
    if duplicate >= 0 {
        core.route(
            home,
            crate::shard::CoreMessage::Adopt {
                fd: duplicate,
                received,
            },
        );
    }
}

/// The health check: 200 while every core answers within half a second (with a body saying
/// so when the cluster's Redis is down), 503 otherwise.
async fn health(core: &Rc<Core>, keep_alive: bool) -> Vec<u8> {
    let answered = core.gather_stats_within(Duration::from_millis(500)).await;
    let redis_down = answered
        .iter()
        .filter(|stats| {
            stats.cluster.enabled
                && !(stats.cluster.command_link_up && stats.cluster.pubsub_link_up)
        })
        .count();
    if answered.len() < core.cores {
        let body = format!(
            "{} of {} cores did not answer",
            core.cores - answered.len(),
            core.cores
        );
        return response(503, &[], body.as_bytes(), keep_alive);
    }
    if redis_down > 0 {
        // Still 200: this node serves its own clients without Redis; the body says the
        // cluster is degraded (cross-node traffic and record writes fail until Redis is back).
        let body = format!(
            "degraded: {redis_down} of {} cores have no Redis connection",
            core.cores
        );
        return response(200, &[], body.as_bytes(), keep_alive);
    }
    response(200, &[], b"", keep_alive)
}

enum Fate {
    KeepAlive,
    Close,
}

fn engineio_error(code: u8, message: &str, cors: &[(&str, String)], keep_alive: bool) -> Vec<u8> {
    let body = format!("{{\"code\":{code},\"message\":\"{message}\"}}");
    let mut headers: Vec<(&str, &str)> = vec![("Content-Type", "application/json")];
    headers.extend(cors.iter().map(|(name, value)| (*name, value.as_str())));
    response(400, &headers, body.as_bytes(), keep_alive)
}

/// How long after the 101 of a WebSocket-only engine.io session its open packet is written.
const OPEN_PACKET_DELAY: Duration = Duration::from_millis(2);

/// The answer to a handshake over an engine.io session limit (503: try later).
fn refused(refusal: Refusal, cors: &[(&str, String)]) -> Vec<u8> {
    let (key, text) = match refusal {
        Refusal::NodeFull => ("maxEngineioSessions", "this node has too many sessions"),
        Refusal::AddressFull => (
            "maxEngineioSessionsPerAddress",
            "too many sessions from this address",
        ),
    };
    crate::warn!("engine.io handshake refused: {text} ({key})");
    let body = format!("{{\"code\":4,\"message\":\"{text}\"}}");
    let mut headers: Vec<(&str, &str)> = vec![("Content-Type", "application/json")];
    headers.extend(cors.iter().map(|(name, value)| (*name, value.as_str())));
    response(503, &headers, body.as_bytes(), false)
}

/// One engine.io request (`EIO` in the query) on the deepstream path or the echo path.
#[allow(clippy::too_many_arguments)]
async fn serve_engineio(
    core: &Rc<Core>,
    engineio: &Rc<EioRegistry>,
    stream: &mut TcpStream,
    request: &Request,
    body: &[u8],
    leftover: &mut Vec<u8>,
    mode: Endpoint,
    caller: &Caller,
) -> Fate {
    let keep_alive = request.keep_alive();
    // Only an allowed origin gets here (`serve_http` refused the others): it is reflected, with
    // credentials, as engine.io does.
    let cors: Vec<(&str, String)> = match request.header("origin") {
        Some(origin) => vec![
            (
                "Access-Control-Allow-Origin",
                String::from_utf8_lossy(origin).to_string(),
            ),
            ("Access-Control-Allow-Credentials", "true".to_string()),
            ("Vary", "Origin".to_string()),
        ],
        None => vec![("Access-Control-Allow-Origin", "*".to_string())],
    };
    if request.query_param("EIO") != Some("3") {
        let _ = put(
            core,
            stream,
            &engineio_error(5, "Unsupported protocol version", &cors, keep_alive),
        )
        .await;
        return Fate::KeepAlive;
    }
    let sid = request.query_param("sid").filter(|sid| !sid.is_empty());
    let b64 = matches!(request.query_param("b64"), Some("1" | "true"));
    let binary_post = request
        .header("content-type")
        .is_some_and(|value| value.starts_with(b"application/octet-stream"));
    if let Some(sid) = sid {
        let home = EioRegistry::home_core(sid).filter(|home| *home < core.cores);
        if home != Some(core.id) {
            let is_poll = request.query_param("transport") == Some("polling")
                && matches!(request.method.as_str(), "GET" | "POST");
            let reply = match (home, is_poll) {
                // The session lives on another core: relay the poll or post there.
                (Some(home), true) => {
                    let wait = core.config.engineio_ping_interval
                        + core.config.engineio_ping_timeout
                        + Duration::from_secs(1);
                    let relayed = RelayRequest {
                        reply_to: core.id,
                        request: 0,
                        sid: sid.to_string(),
                        post: (request.method == "POST").then(|| body.to_vec()),
                        b64,
                        binary: binary_post,
                    };
                    match core.relay(home, relayed, wait).await {
                        Some(reply) => {
                            let mut headers: Vec<(&str, &str)> =
                                vec![("Content-Type", reply.content_type)];
                            headers
                                .extend(cors.iter().map(|(name, value)| (*name, value.as_str())));
                            response(reply.status, &headers, &reply.body, keep_alive)
                        }
                        None => engineio_error(1, "Session ID unknown", &cors, keep_alive),
                    }
                }
                // A WebSocket cannot be relayed: refused, the client keeps polling.
                _ => engineio_error(3, "Bad request", &cors, keep_alive),
            };
            let _ = put(core, stream, &reply).await;
            return Fate::KeepAlive;
        }
    }
    match (request.query_param("transport"), sid) {
        (Some("websocket"), _) if request.is_websocket_upgrade() => {
            // A second WebSocket for a session that has one is accepted, then closed.
            let mut duplicate = false;
            let session = match sid {
                Some(sid) => match engineio.get(sid) {
                    Some(session) if session.closed.get() => None,
                    Some(session) if session.websocket_attached.get() => {
                        duplicate = true;
                        None
                    }
                    Some(session) => {
                        session.websocket_attached.set(true);
                        Some(session)
                    }
                    None => None,
                },
                None => None,
            };
            if sid.is_some() && session.is_none() && !duplicate {
                let _ = put(
                    core,
                    stream,
                    &engineio_error(1, "Session ID unknown", &cors, false),
                )
                .await;
                return Fate::Close;
            }
            let Some(key) = request.header("sec-websocket-key") else {
                let _ = put(core, stream, &response(400, &[], b"", false)).await;
                return Fate::Close;
            };
            // A new session (WebSocket only) is opened before the 101, so a refusal can still
            // be an HTTP answer.
            let opened = match (&session, duplicate) {
                (None, false) => {
                    match engineio.open(mode, Carrier::WebSocket, b64, caller.clone()) {
                        Ok(opened) => Some(opened),
                        Err(refusal) => {
                            let _ = put(core, stream, &refused(refusal, &cors)).await;
                            return Fate::Close;
                        }
                    }
                }
                _ => None,
            };
            let handshake = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {}\r\n\r\n",
                websocket::accept_key(key)
            );
            if !put(core, stream, handshake.as_bytes()).await {
                if let Some((session, _)) = opened {
                    session.close();
                }
                return Fate::Close;
            }
            if duplicate {
                let mut frame = Vec::new();
                websocket::write_close(&mut frame, Some(close_code::NORMAL));
                let _ = put(core, stream, &frame).await;
                return Fate::Close;
            }
            let session = match (session, opened) {
                (Some(session), _) => session,
                (None, Some((session, open))) => {
                    // The open packet goes out once the client has taken the 101 on its own: a
                    // client that attaches its message listener when the socket opens (as the
                    // engine.io protocol suite does) would miss a packet that arrived with the
                    // 101 in one read. Node's engine.io has that gap naturally (its handshake
                    // code runs between the two writes); here it is a short pause.
                    glommio::timer::sleep(OPEN_PACKET_DELAY).await;
                    let mut frame = Vec::new();
                    let mut packet = Vec::new();
                    open.encode(&mut packet);
                    websocket::write_text(&mut frame, &packet);
                    if !put(core, stream, &frame).await {
                        session.close();
                        return Fate::Close;
                    }
                    session
                }
                (None, None) => return Fate::Close,
            };
            serve_engineio_websocket(core, stream, std::mem::take(leftover), session).await;
            Fate::Close
        }
        (Some("polling"), None) if request.method == "GET" => {
            let (session, open) = match engineio.open(mode, Carrier::Polling, b64, caller.clone()) {
                Ok(opened) => opened,
                Err(refusal) => {
                    let _ = put(core, stream, &refused(refusal, &cors)).await;
                    return Fate::Close;
                }
            };
            let (bytes, content_type) =
                engineio_port::polling_body(&[open], !b64, session.convention);
            let cookie = format!("io={}", session.sid);
            let mut headers: Vec<(&str, &str)> = vec![
                ("Content-Type", content_type),
                ("Set-Cookie", cookie.as_str()),
            ];
            headers.extend(cors.iter().map(|(name, value)| (*name, value.as_str())));
            let _ = put(core, stream, &response(200, &headers, &bytes, keep_alive)).await;
            Fate::KeepAlive
        }
        (Some("polling"), Some(sid)) => {
            let answer = match request.method.as_str() {
                "GET" | "POST" => {
                    let post = (request.method == "POST").then_some(body);
                    let reply = engineio_port::answer_polling(
                        core,
                        engineio.get(sid),
                        post,
                        b64,
                        binary_post,
                    )
                    .await;
                    let mut headers: Vec<(&str, &str)> = vec![("Content-Type", reply.content_type)];
                    headers.extend(cors.iter().map(|(name, value)| (*name, value.as_str())));
                    response(reply.status, &headers, &reply.body, keep_alive)
                }
                "OPTIONS" => {
                    let mut headers: Vec<(&str, &str)> = vec![
                        ("Access-Control-Allow-Headers", "Content-Type"),
                        ("Access-Control-Allow-Methods", "GET, POST"),
                    ];
                    headers.extend(cors.iter().map(|(name, value)| (*name, value.as_str())));
                    response(200, &headers, b"", keep_alive)
                }
                _ => engineio_error(3, "Bad request", &cors, keep_alive),
            };
            let _ = put(core, stream, &answer).await;
            Fate::KeepAlive
        }
        _ => {
            let _ = put(
                core,
                stream,
                &engineio_error(0, "Transport unknown", &cors, keep_alive),
            )
            .await;
            Fate::KeepAlive
        }
    }
}

/// An engine.io session carried by a WebSocket: probe, upgrade, then packets in text frames
/// (binary messages in binary frames that start with the byte 4).
async fn serve_engineio_websocket(
    core: &Rc<Core>,
    stream: &mut TcpStream,
    leftover: Vec<u8>,
    session: Rc<EioSession>,
) {
    let mut decoder = Decoder::new(core.config.max_message_size.max(4 * 1024 * 1024));
    decoder.push(&leftover);
    let mut chunk = vec![0u8; 16 * 1024];
    let mut frame = Vec::new();
    let mut packet_bytes = Vec::new();
    loop {
        // Output, once this WebSocket carries the session.
        if session.carrier.get() == Carrier::WebSocket && session.has_output() {
            frame.clear();
            for packet in session.take_output() {
                match packet {
                    Packet::Binary(data) => {
                        let mut payload = vec![4u8];
                        payload.extend_from_slice(&data);
                        websocket::write_binary(&mut frame, &payload);
                    }
                    Packet::Noop => {}
                    other => {
                        packet_bytes.clear();
                        other.encode(&mut packet_bytes);
                        websocket::write_text(&mut frame, &packet_bytes);
                    }
                }
            }
            core.counters.bytes_out(Transport::EngineIo, frame.len());
            // A client that stops reading: its session is aborted past its outbound limit, or
            // the write outlives the engine.io heartbeat.
            let deadline = Instant::now()
                + core.config.engineio_ping_interval
                + core.config.engineio_ping_timeout;
            let port = session.port();
            if !crate::net::write_all_racing(stream, &frame, port, Some(deadline)).await {
                break;
            }
            continue;
        }
        if session.closed.get() {
            frame.clear();
            websocket::write_close(&mut frame, Some(close_code::NORMAL));
            if put(core, stream, &frame).await {
                linger(stream, &mut chunk).await;
            }
            return;
        }
        let mut failed = None;
        while let Some(event) = decoder.next_event() {
            match event {
                Event::Text(text) => match Packet::decode(&text) {
                    Some(Packet::Ping(data))
                        if data == b"probe" && session.carrier.get() == Carrier::Polling =>
                    {
                        session.carrier.set(Carrier::Upgrading);
                        session.touch();
                        frame.clear();
                        websocket::write_text(&mut frame, b"3probe");
                        if !put(core, stream, &frame).await {
                            failed = Some(None);
                            break;
                        }
                        // A poll still waiting answers with a noop, so the client can upgrade.
                        session.release_poll();
                    }
                    Some(Packet::Upgrade) => {
                        session.carrier.set(Carrier::WebSocket);
                        session.touch();
                        // Pending noops were for the polling side.
                    }
                    Some(packet) => session.receive(vec![packet]),
                    None => {
                        failed = Some(Some(close_code::PROTOCOL_ERROR));
                        break;
                    }
                },
                Event::Binary(data) => match data.split_first() {
                    Some((4, rest)) => session.receive(vec![Packet::Binary(rest.to_vec())]),
                    _ => {
                        failed = Some(Some(close_code::PROTOCOL_ERROR));
                        break;
                    }
                },
                Event::Ping(data) => {
                    frame.clear();
                    websocket::write_pong(&mut frame, &data);
                    let _ = put(core, stream, &frame).await;
                }
                Event::Pong => {}
                Event::Close(code) => {
                    failed = Some(code);
                    break;
                }
                Event::Fail(code) => {
                    failed = Some(Some(code));
                    break;
                }
            }
        }
        if let Some(code) = failed {
            if session.carrier.get() == Carrier::WebSocket {
                session.close();
            } else {
                session.websocket_attached.set(false);
            }
            frame.clear();
            websocket::write_close(&mut frame, code);
            if put(core, stream, &frame).await {
                linger(stream, &mut chunk).await;
            }
            return;
        }
        let read = or(async { Some(stream.read(&mut chunk).await) }, async {
            if session.carrier.get() == Carrier::WebSocket {
                session.wait_output(Duration::from_secs(3600)).await;
            } else {
                // Not carrying the session yet: only watch for its close.
                glommio::timer::sleep(Duration::from_millis(200)).await;
            }
            None
        })
        .await;
        match read {
            Some(Ok(0)) | Some(Err(_)) => {
                if session.carrier.get() == Carrier::WebSocket {
                    session.close();
                } else {
                    session.websocket_attached.set(false);
                }
                return;
            }
            Some(Ok(read)) => {
                core.counters.bytes_in(Transport::EngineIo, read);
                decoder.push(&chunk[..read]);
            }
            None => {}
        }
    }
    // The carrying WebSocket failed (or its client stopped reading): the session ends with it.
    session.close();
}

enum Wake {
    Read(std::io::Result<usize>),
    Output,
    Tick,
}

/// Drives one WebSocket connection: a 2.x deepstream session, or the echo endpoint.
async fn serve_websocket(
    core: Rc<Core>,
    mut stream: TcpStream,
    leftover: Vec<u8>,
    mode: Endpoint,
    caller: Caller,
) {
    let peer = caller.address;
    let transport = Transport::WebSocket;
    core.counters.session_opened(transport);
    let port = core.open_session();
    let mut session = match mode {
        Endpoint::Deepstream => {
            let mut session = Session::start(Rc::clone(&core), Rc::clone(&port), Dialect::V2, peer);
            session.set_proxy_identity(caller.identity);
            Some(session)
        }
        Endpoint::Echo => None,
    };
    let mut decoder = Decoder::new(core.config.max_message_size);
    decoder.push(&leftover);
    let mut chunk = vec![0u8; 16 * 1024];
    let mut payload = Vec::new();
    let mut frame = Vec::new();
    let heartbeat = core.config.heartbeat_interval;
    let mut next_tick = Instant::now() + heartbeat;
    let mut heard_since_tick = true;
    let mut auth_deadline = core
        .config
        .unauthenticated_client_timeout
        .filter(|_| mode == Endpoint::Deepstream)
        .map(|timeout| Instant::now() + timeout);
    let mut closing: Option<Option<u16>> = None;
    'connection: loop {
        // Everything the session produced since the last write goes out as one text frame.
        if port.state() == PortState::Abort {
            break;
        }
        if port.has_output() {
            port.take_into(&mut payload);
            frame.clear();
            websocket::write_text(&mut frame, &payload);
            payload.clear();
            core.counters.bytes_out(transport, frame.len());
            if !put_session(&core, &mut stream, &port, &frame).await {
                break;
            }
            continue;
        }
        if closing.is_none() && port.state() == PortState::TerminateAfterFlush {
            break;
        }
        let close = match (closing, port.state()) {
            (Some(code), _) => Some(code),
            (None, PortState::CloseAfterFlush) => Some(Some(close_code::NORMAL)),
            _ => None,
        };
        if let Some(code) = close {
            frame.clear();
            websocket::write_close(&mut frame, code);
            if put_session(&core, &mut stream, &port, &frame).await {
                linger(&mut stream, &mut chunk).await;
            }
            break;
        }
        // Events already decoded from earlier reads.
        while let Some(event) = decoder.next_event() {
            heard_since_tick = true;
            match (event, mode) {
                (Event::Text(text), Endpoint::Deepstream) => {
                    if let Some(session) = session.as_mut() {
                        session.handle_unit(Bytes::from(text)).await;
                    }
                }
                (Event::Text(text), Endpoint::Echo) => {
                    frame.clear();
                    websocket::write_text(&mut frame, &text);
                    if !put_session(&core, &mut stream, &port, &frame).await {
                        break 'connection;
                    }
                }
                (Event::Binary(data), Endpoint::Echo) => {
                    frame.clear();
                    websocket::write_binary(&mut frame, &data);
                    if !put_session(&core, &mut stream, &port, &frame).await {
                        break 'connection;
                    }
                }
                // deepstream speaks text only.
                (Event::Binary(_), Endpoint::Deepstream) => {
                    closing = Some(Some(1003));
                    continue 'connection;
                }
                (Event::Ping(data), _) => {
                    frame.clear();
                    websocket::write_pong(&mut frame, &data);
                    if !put_session(&core, &mut stream, &port, &frame).await {
                        break 'connection;
                    }
                }
                (Event::Pong, _) => {}
                (Event::Close(code), _) => {
                    // Answer the close handshake with the peer's code (or none), then leave.
                    closing = Some(code);
                    continue 'connection;
                }
                (Event::Fail(code), _) => {
                    crate::debug!(
                        "{}: WebSocket protocol error, closing with {code}",
                        peer.map(|p| p.to_string()).unwrap_or_default()
                    );
                    closing = Some(Some(code));
                    continue 'connection;
                }
            }
            if port.has_output() || port.state() != PortState::Open {
                continue 'connection;
            }
        }
        if let Some(session) = session.as_ref() {
            if session.auth_timer_cleared() {
                auth_deadline = None;
            }
        }
        let wake = or(
            or(
                async {
                    core.wait_uncongested().await;
                    Wake::Read(stream.read(&mut chunk).await)
                },
                async {
                    poll_fn(|context| port.poll_ready(context)).await;
                    Wake::Output
                },
            ),
            async {
                let deadline = match (mode, auth_deadline) {
                    (Endpoint::Deepstream, Some(auth)) => auth.min(next_tick),
                    (Endpoint::Deepstream, None) => next_tick,
                    (Endpoint::Echo, _) => {
                        pending::<()>().await;
                        next_tick
                    }
                };
                glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
                Wake::Tick
            },
        )
        .await;
        match wake {
            Wake::Read(Ok(0)) | Wake::Read(Err(_)) => break,
            Wake::Read(Ok(read)) => {
                core.counters.bytes_in(transport, read);
                decoder.push(&chunk[..read]);
            }
            Wake::Output => {}
            Wake::Tick => {
                let now = Instant::now();
                if auth_deadline.is_some_and(|deadline| now >= deadline) {
                    if let Some(session) = session.as_mut() {
                        session.on_auth_timeout();
                    }
                    auth_deadline = None;
                }
                if now >= next_tick {
                    // A socket that sent nothing during a whole interval is dropped, without a
                    // close frame, as deepstream 2.x (uws) does.
                    if !heard_since_tick {
                        crate::info!(
                            "{}: no message for {} ms: closing the connection",
                            peer.map(|p| p.to_string()).unwrap_or_default(),
                            heartbeat.as_millis()
                        );
                        break;
                    }
                    heard_since_tick = false;
                    next_tick = now + heartbeat;
                    core.push_to(&port, b"C\x1fPI\x1e");
                }
            }
        }
    }
    match session.as_mut() {
        Some(session) => session.close(),
        None => core.close_session(port.id),
    }
    core.counters.session_closed(transport);
}

/// After our close frame: stop writing and drain what the peer still sends (up to a second),
/// so the kernel closes with FIN rather than a reset that could discard the close frame.
async fn linger(stream: &mut TcpStream, chunk: &mut [u8]) {
    let _ = stream.shutdown(std::net::Shutdown::Write).await;
    let drain = async {
        while let Ok(read) = stream.read(chunk).await {
            if read == 0 {
                break;
            }
        }
    };
    or(drain, glommio::timer::sleep(Duration::from_secs(1))).await;
}

/// (name, Prometheus type, help, the value of one core), summed over cores.
type SummedMetric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&CoreStats) -> u64,
);

/// Prometheus text format, summed over cores.
fn prometheus(stats: &[CoreStats]) -> String {
    let sum = |value: &dyn Fn(&CoreStats) -> u64| -> u64 { stats.iter().map(value).sum() };
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: Vec<(String, u64)>| {
        let _ = writeln!(out, "# HELP corestream_{name} {help}");
        let _ = writeln!(out, "# TYPE corestream_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "corestream_{name}{labels} {value}");
        }
    };
    let by_transport = |value: &dyn Fn(&CoreStats, usize) -> u64| -> Vec<(String, u64)> {
        TRANSPORT_NAMES
            .iter()
            .enumerate()
            .map(|(index, name)| {
                (
                    format!("{{transport=\"{name}\"}}"),
                    stats.iter().map(|core| value(core, index)).sum(),
                )
            })
            .collect()
    };
    metric(
        "cores",
        "gauge",
        "Cores serving.",
        vec![(String::new(), stats.len() as u64)],
    );
    metric(
        "connections",
        "gauge",
        "Open connections by transport.",
        by_transport(&|core, index| core.sessions_by_transport[index]),
    );
    metric(
        "connections_total",
        "counter",
        "Connections accepted by transport.",
        by_transport(&|core, index| core.sessions_total_by_transport[index]),
    );
    metric(
        "received_bytes_total",
        "counter",
        "Bytes received by transport.",
        by_transport(&|core, index| core.bytes_in_by_transport[index]),
    );
    metric(
        "sent_bytes_total",
        "counter",
        "Bytes sent by transport.",
        by_transport(&|core, index| core.bytes_out_by_transport[index]),
    );
    metric(
        "messages_received_total",
        "counter",
        "Messages received by topic.",
        TOPIC_NAMES
            .iter()
            .enumerate()
            .map(|(index, topic)| {
                (
                    format!("{{topic=\"{topic}\"}}"),
                    stats
                        .iter()
                        .map(|core| core.messages_in_by_topic[index])
                        .sum(),
                )
            })
            .collect(),
    );
    metric(
        "messages_sent_total",
        "counter",
        "Messages sent by topic.",
        TOPIC_NAMES
            .iter()
            .enumerate()
            .map(|(index, topic)| {
                (
                    format!("{{topic=\"{topic}\"}}"),
                    stats
                        .iter()
                        .map(|core| core.messages_out_by_topic[index])
                        .sum(),
                )
            })
            .collect(),
    );
    metric(
        "slow_consumer_disconnects_total",
        "counter",
        "Sessions closed because they did not read their messages.",
        vec![(String::new(), sum(&|core| core.slow_consumer_disconnects))],
    );
    metric(
        "auth_failures_total",
        "counter",
        "Rejected logins.",
        vec![(String::new(), sum(&|core| core.auth_failures))],
    );
    metric(
        "subscriptions",
        "gauge",
        "Subscriptions by topic.",
        vec![
            (
                "{topic=\"event\"}".to_string(),
                sum(&|core| core.events.subscriptions as u64),
            ),
            (
                "{topic=\"record\"}".to_string(),
                sum(&|core| core.record_subscriptions.subscriptions as u64),
            ),
        ],
    );
    metric(
        "records",
        "gauge",
        "Records held.",
        vec![(String::new(), sum(&|core| core.records as u64))],
    );
    metric(
        "rpc_providers",
        "gauge",
        "RPC providers.",
        vec![(String::new(), sum(&|core| core.rpc.1 as u64))],
    );
    metric(
        "rpc_calls_in_flight",
        "gauge",
        "RPC calls waiting for a response.",
        vec![(String::new(), sum(&|core| core.rpc.2 as u64))],
    );
    metric(
        "presence_users",
        "gauge",
        "Usernames logged in (2.x presence).",
        vec![(
            String::new(),
            stats
                .iter()
                .map(|core| core.presence.0 as u64)
                .max()
                .unwrap_or(0),
        )],
    );
    metric(
        "cross_core_queue_bytes",
        "gauge",
        "Bytes queued for other cores.",
        vec![(String::new(), sum(&|core| core.cross_core_queue_bytes))],
    );
    if stats.iter().any(|core| core.cluster.enabled) {
        let links_up = |up: &dyn Fn(&CoreStats) -> bool| -> u64 {
            stats.iter().filter(|core| up(core)).count() as u64
        };
        metric(
            "redis_links_up",
            "gauge",
            "Redis connections up (each core has a command and a pub/sub link).",
            vec![
                (
                    "{link=\"command\"}".into(),
                    links_up(&|core| core.cluster.command_link_up),
                ),
                (
                    "{link=\"pubsub\"}".into(),
                    links_up(&|core| core.cluster.pubsub_link_up),
                ),
            ],
        );
        let summed: [SummedMetric; 7] = [
            (
                "redis_reconnects_total",
                "counter",
                "Redis reconnections after a lost connection.",
                |core| core.cluster.reconnects,
            ),
            (
                "redis_commands_total",
                "counter",
                "Commands sent to Redis.",
                |core| core.cluster.redis_commands,
            ),
            (
                "redis_errors_total",
                "counter",
                "Redis commands that failed or could not be sent (Redis unreachable).",
                |core| core.cluster.redis_errors,
            ),
            (
                "cluster_channels",
                "gauge",
                "Redis channels subscribed (names with local subscribers).",
                |core| core.cluster.channels,
            ),
            (
                "cluster_published_total",
                "counter",
                "Messages published to the other nodes.",
                |core| core.cluster.published,
            ),
            (
                "cluster_received_total",
                "counter",
                "Messages received from Redis channels.",
                |core| core.cluster.received,
            ),
            (
                "cluster_write_conflicts_total",
                "counter",
                "Record writes refused by the compare-and-set in Redis (VERSION_EXISTS).",
                |core| core.cluster.write_conflicts,
            ),
        ];
        for (name, kind, help, value) in summed {
            metric(name, kind, help, vec![(String::new(), sum(&value))]);
        }
        metric(
            "cluster_remote_nodes",
            "gauge",
            "Other live nodes seen through Redis.",
            vec![(
                String::new(),
                stats
                    .iter()
                    .map(|core| core.cluster.remote_nodes)
                    .max()
                    .unwrap_or(0),
            )],
        );
        metric(
            "cluster_listen_leader",
            "gauge",
            "1 when this node leads listening for the cluster (runs discovery for every node).",
            vec![(
                String::new(),
                u64::from(stats.iter().any(|core| core.cluster.listen_leader)),
            )],
        );
    }
    out
}
