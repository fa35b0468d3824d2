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

use crate::dispatch::{Core, RelayMessage};
use crate::metrics::prometheus;
use crate::ports::engineio::requests::{Fate, LongPoll};
use crate::ports::engineio::{self as engineio_port, EioRegistry};
use crate::ports::net::{put, Read};
use crate::ports::route::{self as http_route, Route};
use crate::transport::http::{parse_request, response, Parse, Request};
use glommio::net::{TcpListener, TcpStream};
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
    let limits = &core.config().limits;
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
        match crate::ports::net::read_until(stream, buffer, deadline).await {
            Read::Data(_) => {
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
    if body_length > core.config().max_message_size {
        return Incoming::Refuse(413);
    }
    let head: Vec<u8> = buffer.drain(..request.head_length).collect();
    let body_deadline = Instant::now() + limits.http_body_timeout;
    while buffer.len() < body_length {
        match crate::ports::net::read_until(stream, buffer, body_deadline).await {
            Read::Data(_) => {}
            Read::Closed => return Incoming::Gone,
            Read::TimedOut => return Incoming::Refuse(408),
        }
    }
    let body = buffer.drain(..body_length).collect();
    if buffer.is_empty() {
        // Nothing pipelined: an idle keep-alive connection (or a pending long poll) keeps no
        // buffer.
        *buffer = Vec::new();
    }
    Incoming::Request {
        request,
        head,
        body,
    }
}

/// A connection whose request is a pending long poll: answers it, then serves the
/// connection's next requests in a new connection task (`received`: bytes already read after
/// the poll's request). Not an `async fn` (rustc #62958: its arguments would be kept twice).
#[allow(clippy::manual_async_fn)]
fn long_poll(
    core: Rc<Core>,
    engineio: Rc<EioRegistry>,
    mut stream: TcpStream,
    received: Vec<u8>,
    poll: LongPoll,
) -> impl std::future::Future<Output = ()> {
    async move {
        if poll.answer(&core, &mut stream).await {
            glommio::spawn_local(serve_http(core, engineio, stream, received)).detach();
        }
    }
}

async fn serve_http(
    core: Rc<Core>,
    engineio: Rc<EioRegistry>,
    mut stream: TcpStream,
    received: Vec<u8>,
) {
    crate::ports::net::tune(&stream, &core.config().limits);
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
        let caller = crate::auth::proxy::caller(core.config(), peer, |name| request.header(name));
        let mut keep_open = keep_alive;
        let reply = match http_route::route(core.config(), &request) {
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
                    .filter(|home| *home < core.cores() && *home != core.id);
                if let (Some(home), true) = (home, request.is_websocket_upgrade()) {
                    let mut replay = original_head;
                    replay.extend_from_slice(&body);
                    replay.extend_from_slice(&buffer);
                    hand_over(&core, &stream, home, replay);
                    return;
                }
                // A long poll may wait for minutes: it keeps the parsed request, not its text.
                drop(original_head);
                let fate = crate::ports::engineio::requests::serve(
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
                    Fate::LongPoll(poll) => {
                        // The poll waits in a small task of its own, without this one's state
                        // or the request; a new connection task takes over after the answer.
                        let waiting = long_poll(core, engineio, stream, buffer, poll);
                        glommio::spawn_local(waiting).detach();
                        return;
                    }
                    _ => return,
                }
            }
            Route::WebSocket {
                endpoint,
                handshake,
            } => {
                if put(&core, &mut stream, handshake.as_bytes()).await {
                    // A task of its own: this one's state (HTTP requests) is not kept for the
                    // WebSocket's life.
                    let connection = crate::ports::websocket::serve_websocket(
                        core, stream, buffer, endpoint, caller,
                    );
                    glommio::spawn_local(connection).detach();
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
            RelayMessage::Adopt {
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
    if answered.len() < core.cores() {
        let body = format!(
            "{} of {} cores did not answer",
            core.cores() - answered.len(),
            core.cores()
        );
        return response(503, &[], body.as_bytes(), keep_alive);
    }
    if redis_down > 0 {
        // Still 200: this node serves its own clients without Redis; the body says the
        // cluster is degraded (cross-node traffic and record writes fail until Redis is back).
        let body = format!(
            "degraded: {redis_down} of {} cores have no Redis connection",
            core.cores()
        );
        return response(200, &[], body.as_bytes(), keep_alive);
    }
    response(200, &[], b"", keep_alive)
}
