//! The connection loop that TCP (1.x) and WebSocket (2.x, and the echo endpoint) sessions share:
//! write what the session produced (one send per turn), hand whole decoded units to the
//! session, answer what the framing itself answers (pongs, echoes), keep the unauthenticated
//! deadline and the heartbeat, and close as the port's state says. What differs between the
//! transports is the `Wire`: how bytes are framed in both directions. Called by `tcp` and
//! `websocket` once their connection is set up.

use crate::dispatch::Core;
use crate::metrics::Transport;
use crate::ports::net::read_with;
use crate::session::Session;
use crate::shard::{Outbox, Part, PortState, SessionPort, ShareAs};
use bytes::Bytes;
use futures_lite::future::{or, pending, poll_fn};
use glommio::net::TcpStream;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// The 2.x server ping (the client answers `C|PO`).
const PING: &[u8] = b"C\x1fPI\x1e";

/// What the framing decoded from the bytes read so far.
pub enum Inbound {
    /// A whole unit of messages for the session.
    Unit(Bytes),
    /// Bytes to write back at once (a pong, an echo).
    Reply(Vec<u8>),
    /// A message longer than `maxMessageSize` was dropped; the session is told with this reply.
    Oversized(&'static [u8]),
    /// The peer closes (answer with this code, or none).
    Close(Option<u16>),
    /// The peer broke the framing protocol: close with this code.
    Fail(u16),
    /// Something that needs no action (it still counts as heard for the heartbeat).
    Heard,
}

/// How one transport frames bytes in both directions.
pub trait Wire {
    const TRANSPORT: Transport;
    /// Feeds bytes read from the socket.
    fn push(&mut self, read: &[u8]);
    /// The next thing decoded from what was pushed.
    fn next(&mut self) -> Option<Inbound>;
    /// How broadcasts are shared with this transport's ports: already framed for the wire.
    const SHARE_AS: ShareAs;
    /// Appends what goes on the wire before `length` bytes the session produced (a frame
    /// header, or nothing).
    fn header(&self, length: usize, out: &mut Vec<u8>);
    /// Writes the frame that closes the connection with `code` into `frame`; false when the
    /// transport has none (the socket is just closed).
    fn close_frame(&self, code: Option<u16>, frame: &mut Vec<u8>) -> bool;
}

/// One connection: its socket, its session (none for the echo endpoint) and its framing.
pub struct Connection<W: Wire> {
    pub core: Rc<Core>,
    pub stream: TcpStream,
    pub port: Rc<SessionPort>,
    pub session: Option<Session>,
    pub wire: W,
    pub peer: Option<SocketAddr>,
    /// Ping every interval and drop a peer silent for a whole interval (2.x); `None`: no
    /// heartbeat.
    pub heartbeat: Option<Duration>,
    /// Give up a write that takes longer (`None`: TCP_USER_TIMEOUT and the slow-consumer
    /// abort bound it).
    pub write_timeout: Option<Duration>,
}

/// The buffers one connection reuses from write to write.
#[derive(Default)]
struct Buffers {
    /// What the port held, taken whole for one write.
    outbox: Outbox,
    /// The frame headers of the outbox's owned runs (WebSocket), one after another.
    headers: Vec<u8>,
}

impl Buffers {
    /// Empties both after a write; a large outbox (a burst) is freed, so an idle connection
    /// holds at most small buffers.
    fn release(&mut self) {
        self.outbox.clear();
        self.headers = Vec::new();
    }
}

enum Wake {
    Read(std::io::Result<usize>),
    Output,
    Tick,
}

/// Why the loop goes round again or stops.
enum Step {
    Continue,
    Close(Option<u16>),
    Stop,
}

/// The loop's own state between turns.
struct Clock {
    auth_deadline: Option<Instant>,
    next_tick: Option<Instant>,
    heard_since_tick: bool,
}

impl<W: Wire> Connection<W> {
    /// Serves the connection until either side closes it, then closes the session.
    ///
    /// Not an `async fn`: those keep their arguments twice in their state (rustc #62958), and
    /// a connection's task state is what every idle connection costs (1968 bytes as an
    /// `async fn`, 1216 as written here, for a TCP connection).
    #[allow(clippy::manual_async_fn)]
    pub fn run(mut self) -> impl std::future::Future<Output = ()> {
        async move { self.serve().await }
    }

    async fn serve(&mut self) {
        self.port.set_share_as(W::SHARE_AS);
        let config = std::sync::Arc::clone(self.core.config());
        let mut clock = Clock {
            auth_deadline: config
                .unauthenticated_client_timeout
                .filter(|_| self.session.is_some())
                .map(|timeout| Instant::now() + timeout),
            next_tick: self.heartbeat.map(|interval| Instant::now() + interval),
            heard_since_tick: true,
        };
        let mut closing: Option<Option<u16>> = None;
        let mut buffers = Buffers::default();
        loop {
            let turn = self.turn(&mut clock, &mut buffers, &mut closing);
            match turn.await {
                Step::Continue => {}
                Step::Stop => break,
                Step::Close(code) => {
                    Box::pin(self.close_with(code)).await;
                    break;
                }
            }
        }
        match self.session.as_mut() {
            Some(session) => session.close(),
            None => self.core.close_session(self.port.id),
        }
        self.core.counters.session_closed(W::TRANSPORT);
    }

    /// Sends the transport's close frame (if it has one) and lingers for the peer's close.
    async fn close_with(&mut self, code: Option<u16>) {
        let mut frame = Vec::new();
        if self.wire.close_frame(code, &mut frame) && self.write(&frame).await {
            linger(&mut self.stream).await;
        }
    }

    /// One turn: write, close, hand over decoded units, or wait for something to happen.
    async fn turn(
        &mut self,
        clock: &mut Clock,
        buffers: &mut Buffers,
        closing: &mut Option<Option<u16>>,
    ) -> Step {
        let state = self.port.state();
        if state == PortState::Abort {
            return Step::Stop;
        }
        // Writing and acting on input are boxed: their state (a write's timers, a unit's
        // handling, which may wait on auth or a permission's cross-reference) lives only while
        // they run, so an idle connection's task holds just the small wait below.
        if self.port.has_output() {
            return Box::pin(self.flush(buffers)).await;
        }
        match (*closing, state) {
            (Some(code), _) => return Step::Close(code),
            (None, PortState::TerminateAfterFlush) => return Step::Stop,
            (None, PortState::CloseAfterFlush) => {
                return Step::Close(Some(crate::transport::websocket::close_code::NORMAL))
            }
            _ => {}
        }
        if let Some(first) = self.wire.next() {
            match Box::pin(self.decoded(first, clock)).await {
                Step::Continue => {}
                Step::Close(code) => {
                    *closing = Some(code);
                    return Step::Continue;
                }
                Step::Stop => return Step::Stop,
            }
        }
        if self.port.has_output() || self.port.state() != PortState::Open {
            return Step::Continue;
        }
        self.wait(clock).await
    }

    /// Everything the session produced since the last write goes out at once: one vectored
    /// send of its own bytes (framed by the wire) and the broadcasts it shares.
    async fn flush(&mut self, buffers: &mut Buffers) -> Step {
        self.port.take_outbox(&mut buffers.outbox);
        let Buffers { outbox, headers } = buffers;
        // every owned run's header first (the slices below borrow `headers` whole)
        let mut header_ranges = Vec::new();
        for part in outbox.parts() {
            if let Part::Owned(run) = part {
                let start = headers.len();
                self.wire.header(run.len(), headers);
                header_ranges.push(start..headers.len());
            }
        }
        let mut slices = Vec::with_capacity(2 * header_ranges.len() + 1);
        let mut header_ranges = header_ranges.into_iter();
        for part in outbox.parts() {
            match part {
                Part::Owned(run) => {
                    let header = header_ranges.next().unwrap_or_default();
                    if !header.is_empty() {
                        slices.push(IoSlice::new(&headers[header]));
                    }
                    slices.push(IoSlice::new(run));
                }
                Part::Shared(chunk) => slices.push(IoSlice::new(chunk)),
            }
        }
        self.core
            .counters
            .bytes_out(W::TRANSPORT, outbox.len() + headers.len());
        let deadline = self.write_timeout.map(|timeout| Instant::now() + timeout);
        let port = Some(&*self.port);
        let written =
            crate::ports::net::write_parts_racing(&mut self.stream, &slices, port, deadline).await;
        drop(slices);
        buffers.release();
        match written {
            true => Step::Continue,
            false => Step::Stop,
        }
    }

    /// Acts on what the framing decoded, until it has nothing more or the session has output.
    async fn decoded(&mut self, first: Inbound, clock: &mut Clock) -> Step {
        let mut next = Some(first);
        while let Some(inbound) = next {
            clock.heard_since_tick = true;
            match inbound {
                Inbound::Unit(unit) => {
                    if let Some(session) = self.session.as_mut() {
                        session.handle_unit(unit).await;
                    }
                }
                Inbound::Reply(bytes) => {
                    if !self.write(&bytes).await {
                        return Step::Stop;
                    }
                }
                Inbound::Oversized(reply) => {
                    crate::warn!(
                        "{}: message longer than maxMessageSize ({} bytes) dropped",
                        self.peer_text(),
                        self.core.config().max_message_size
                    );
                    self.core.push_to(&self.port, reply);
                }
                Inbound::Close(code) => return Step::Close(code),
                Inbound::Fail(code) => {
                    crate::debug!(
                        "{}: WebSocket protocol error, closing with {code}",
                        self.peer_text()
                    );
                    return Step::Close(Some(code));
                }
                Inbound::Heard => {}
            }
            if self.port.has_output() || self.port.state() != PortState::Open {
                break;
            }
            next = self.wire.next();
        }
        Step::Continue
    }

    /// Waits for bytes, for output, or for a deadline, and acts on it.
    async fn wait(&mut self, clock: &mut Clock) -> Step {
        if self
            .session
            .as_ref()
            .is_some_and(|session| session.auth_timer_cleared())
        {
            clock.auth_deadline = None;
        }
        let deadline = match (clock.auth_deadline, clock.next_tick) {
            (Some(auth), Some(tick)) => Some(auth.min(tick)),
            (auth, tick) => auth.or(tick),
        };
        let (core, port, stream, wire) = (&self.core, &self.port, &mut self.stream, &mut self.wire);
        let wake = or(
            or(
                async {
                    // Back-pressure: while a peer core's queue is over its limit, stop reading.
                    core.wait_uncongested().await;
                    Wake::Read(read_with(stream, |bytes| wire.push(bytes)).await)
                },
                async {
                    poll_fn(|context| port.poll_ready(context)).await;
                    Wake::Output
                },
            ),
            async {
                match deadline {
                    Some(at) => {
                        glommio::timer::sleep(at.saturating_duration_since(Instant::now())).await
                    }
                    None => pending::<()>().await,
                }
                Wake::Tick
            },
        )
        .await;
        match wake {
            Wake::Read(Ok(0)) | Wake::Read(Err(_)) => Step::Stop,
            Wake::Read(Ok(read)) => {
                self.core.counters.bytes_in(W::TRANSPORT, read);
                Step::Continue
            }
            Wake::Output => Step::Continue,
            Wake::Tick => self.tick(clock),
        }
    }

    /// A deadline passed: the unauthenticated timeout, or the heartbeat.
    fn tick(&mut self, clock: &mut Clock) -> Step {
        let now = Instant::now();
        if clock.auth_deadline.is_some_and(|deadline| now >= deadline) {
            if let Some(session) = self.session.as_mut() {
                session.on_auth_timeout();
            }
            clock.auth_deadline = None;
        }
        let (Some(interval), Some(tick)) = (self.heartbeat, clock.next_tick) else {
            return Step::Continue;
        };
        if now < tick {
            return Step::Continue;
        }
        // A socket that sent nothing during a whole interval is dropped, without a close
        // frame, as deepstream 2.x (uws) does.
        if !clock.heard_since_tick {
            crate::info!(
                "{}: no message for {} ms: closing the connection",
                self.peer_text(),
                interval.as_millis()
            );
            return Step::Stop;
        }
        clock.heard_since_tick = false;
        clock.next_tick = Some(now + interval);
        self.core.push_to(&self.port, PING);
        Step::Continue
    }

    /// Writes bytes, giving up when the session is aborted as a slow consumer or the write
    /// takes longer than `write_timeout`.
    async fn write(&mut self, bytes: &[u8]) -> bool {
        let deadline = self.write_timeout.map(|timeout| Instant::now() + timeout);
        crate::ports::net::write_all_racing(&mut self.stream, bytes, Some(&self.port), deadline)
            .await
    }

    fn peer_text(&self) -> String {
        self.peer.map(|peer| peer.to_string()).unwrap_or_default()
    }
}

/// After our close frame: stop writing and drain what the peer still sends (up to a second),
/// so the kernel closes with FIN rather than a reset that could discard the close frame.
pub async fn linger(stream: &mut TcpStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write).await;
    let drain = async {
        while let Ok(read) = read_with(stream, |_| {}).await {
            if read == 0 {
                break;
            }
        }
    };
    or(drain, glommio::timer::sleep(Duration::from_secs(1))).await;
}
