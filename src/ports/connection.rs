//! The connection loop that TCP (1.x) and WebSocket (2.x, and the echo endpoint) sessions share:
//! write what the session produced (one send per turn), hand whole decoded units to the
//! session, answer what the framing itself answers (pongs, echoes), keep the unauthenticated
//! deadline, report what it hears to the core's heartbeat (`heartbeat`), and close as the
//! port's state says. What differs between the
//! transports is the `Wire`: how bytes are framed in both directions. Called by `tcp` and
//! `websocket` once their connection is set up.

use crate::dispatch::Core;
use crate::metrics::Transport;
use crate::ports::net::{poll_read_with, read_with};
use crate::session::Session;
use crate::shard::{Heartbeat, Part, PortState, SessionPort, ShareAs};
use bytes::Bytes;
use futures_lite::future::{or, poll_fn};
use glommio::net::TcpStream;
use glommio::timer::Timer;
use std::future::Future;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

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
    /// Whether a write must finish within a heartbeat interval (a client that cannot take a
    /// write within a heartbeat cannot be reading its pings); otherwise TCP_USER_TIMEOUT and
    /// the slow-consumer abort bound it.
    const WRITES_WITHIN_HEARTBEAT: bool;
    /// Appends what goes on the wire before `length` bytes the session produced (a frame
    /// header, or nothing).
    fn header(&self, length: usize, out: &mut Vec<u8>);
    /// Writes the frame that closes the connection with `code` into `frame`; false when the
    /// transport has none (the socket is just closed).
    fn close_frame(&self, code: Option<u16>, frame: &mut Vec<u8>) -> bool;
}

/// Whom a connection serves: a deepstream session (which holds its core, port and peer), or
/// the echo endpoint. The core, port and peer are not kept twice: an idle connection's task
/// holds this and little else.
pub enum Served {
    Session(Session),
    Echo {
        core: Rc<Core>,
        port: Rc<SessionPort>,
        peer: Option<SocketAddr>,
    },
}

impl Served {
    fn core(&self) -> &Rc<Core> {
        match self {
            Served::Session(session) => session.core(),
            Served::Echo { core, .. } => core,
        }
    }

    fn port(&self) -> &Rc<SessionPort> {
        match self {
            Served::Session(session) => session.port(),
            Served::Echo { port, .. } => port,
        }
    }

    fn peer(&self) -> Option<SocketAddr> {
        match self {
            Served::Session(session) => session.peer(),
            Served::Echo { peer, .. } => *peer,
        }
    }
}

/// One connection: its socket, whom it serves and its framing. A transport heartbeat is not
/// here: the core's `heartbeat` task pings the port and aborts it when the peer falls silent.
pub struct Connection<W: Wire> {
    pub stream: TcpStream,
    pub served: Served,
    pub wire: W,
}

/// What ended an idle wait.
enum Wake {
    Read(std::io::Result<usize>),
    Output,
    AuthTimeout,
}

/// What the loop does next.
enum Action {
    Stop,
    Close(Option<u16>),
    Flush,
    Decode(Inbound),
    Wait,
}

/// Why the loop goes round again or stops.
enum Step {
    Continue,
    Close(Option<u16>),
    Stop,
}

/// The loop's timers, each alive only while needed (a glommio timer is a heap allocation).
#[derive(Default)]
struct Timers {
    /// The unauthenticated-client timeout, until the first auth result.
    auth: Option<Timer>,
    /// While a peer core is congested: when to look again.
    congestion: Option<Timer>,
}

/// How often a reader held back by a congested peer core looks again.
const CONGESTION_RETRY: Duration = Duration::from_micros(500);

impl<W: Wire> Connection<W> {
    /// Serves the connection until either side closes it, then closes the session.
    ///
    /// Not an `async fn`: those keep their arguments twice in their state (rustc #62958), and
    /// a connection's task state is what every idle connection costs. Writing and acting on
    /// input are boxed futures that live only while they run; the idle wait is a poll of the
    /// socket, the port and the timers (no future of its own).
    #[allow(clippy::manual_async_fn)]
    pub fn run(mut self) -> impl std::future::Future<Output = ()> {
        async move { self.serve().await }
    }

    async fn serve(&mut self) {
        self.served.port().set_share_as(W::SHARE_AS);
        let mut timers = Timers::default();
        if let Served::Session(session) = &self.served {
            let timeout = session.core().config().unauthenticated_client_timeout;
            timers.auth = timeout.map(Timer::new);
        }
        // The peer's close (or a framing error) waits here until our output is written.
        let mut closing: Option<Option<u16>> = None;
        // Every await below is a boxed future or a poll of fields: the task's state between
        // turns is `self`, the timers and `closing`.
        loop {
            let step = match self.next_action(closing) {
                Action::Stop => Step::Stop,
                Action::Close(code) => Step::Close(code),
                Action::Flush => Box::pin(self.flush()).await,
                Action::Decode(first) => match Box::pin(self.decoded(first)).await {
                    Step::Close(code) => {
                        closing = Some(code);
                        Step::Continue
                    }
                    step => step,
                },
                Action::Wait => {
                    let wake = poll_fn(|context| self.poll_wake(context, &mut timers)).await;
                    self.woken(wake)
                }
            };
            match step {
                Step::Continue => {}
                Step::Stop => break,
                Step::Close(code) => {
                    Box::pin(self.close_with(code)).await;
                    break;
                }
            }
        }
        let transport = W::TRANSPORT;
        match &mut self.served {
            Served::Session(session) => session.close(),
            Served::Echo { core, port, .. } => core.close_session(port.id),
        }
        self.served.core().counters.session_closed(transport);
    }

    /// Sends the transport's close frame (if it has one) and lingers for the peer's close.
    async fn close_with(&mut self, code: Option<u16>) {
        let mut frame = Vec::new();
        if self.wire.close_frame(code, &mut frame) && self.write(&frame).await {
            linger(&mut self.stream).await;
        }
    }

    /// What to do next: write, close, hand over decoded units, or wait for something.
    fn next_action(&mut self, closing: Option<Option<u16>>) -> Action {
        let port = self.served.port();
        let state = port.state();
        if state == PortState::Abort {
            self.log_missed_heartbeat();
            return Action::Stop;
        }
        if port.has_output() {
            return Action::Flush;
        }
        match (closing, state) {
            (Some(code), _) => return Action::Close(code),
            (None, PortState::TerminateAfterFlush) => return Action::Stop,
            (None, PortState::CloseAfterFlush) => {
                return Action::Close(Some(crate::transport::websocket::close_code::NORMAL))
            }
            _ => {}
        }
        match self.wire.next() {
            Some(first) => Action::Decode(first),
            None => Action::Wait,
        }
    }

    /// Everything the session produced since the last write goes out at once: one vectored
    /// send of its own bytes (framed by the wire) and the broadcasts it shares. The outbox is
    /// taken whole and freed once written, so an idle connection holds no output buffer.
    async fn flush(&mut self) -> Step {
        let outbox = self.served.port().take_outbox();
        // every owned run's header first (the slices below borrow `headers` whole)
        let mut headers = Vec::new();
        let mut header_ranges = Vec::new();
        for part in outbox.parts() {
            if let Part::Owned(run) = part {
                let start = headers.len();
                self.wire.header(run.len(), &mut headers);
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
        let deadline = self.write_deadline();
        let Connection { stream, served, .. } = self;
        let port = served.port();
        served
            .core()
            .counters
            .bytes_out(W::TRANSPORT, outbox.len() + headers.len());
        match crate::ports::net::write_parts_racing(stream, &slices, Some(port), deadline).await {
            true => Step::Continue,
            false => Step::Stop,
        }
    }

    /// Acts on what the framing decoded, until it has nothing more or the session has output.
    async fn decoded(&mut self, first: Inbound) -> Step {
        let mut next = Some(first);
        while let Some(inbound) = next {
            match inbound {
                Inbound::Unit(unit) => {
                    if let Served::Session(session) = &mut self.served {
                        session.handle_unit(unit).await;
                    }
                }
                Inbound::Reply(bytes) => {
                    if !self.write(&bytes).await {
                        return Step::Stop;
                    }
                }
                Inbound::Oversized(reply) => {
                    let core = self.served.core();
                    crate::warn!(
                        "{}: message longer than maxMessageSize ({} bytes) dropped",
                        self.peer_text(),
                        core.config().max_message_size
                    );
                    core.push_to(self.served.port(), reply);
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
            let port = self.served.port();
            if port.has_output() || port.state() != PortState::Open {
                break;
            }
            next = self.wire.next();
        }
        Step::Continue
    }

    /// Acts on what ended the idle wait.
    fn woken(&mut self, wake: Wake) -> Step {
        match wake {
            Wake::Read(Ok(0)) | Wake::Read(Err(_)) => Step::Stop,
            Wake::Read(Ok(read)) => {
                self.served.port().heard();
                self.served.core().counters.bytes_in(W::TRANSPORT, read);
                Step::Continue
            }
            Wake::Output => Step::Continue,
            Wake::AuthTimeout => {
                if let Served::Session(session) = &mut self.served {
                    session.on_auth_timeout();
                }
                Step::Continue
            }
        }
    }

    /// The idle wait as one poll: the auth timeout, the port (output or closing), and the
    /// socket, which is not read while a peer core is congested (back-pressure).
    fn poll_wake(&mut self, context: &mut Context<'_>, timers: &mut Timers) -> Poll<Wake> {
        if let Served::Session(session) = &self.served {
            if session.auth_timer_cleared() {
                timers.auth = None;
            }
        }
        if let Some(timer) = timers.auth.as_mut() {
            if Pin::new(timer).poll(context).is_ready() {
                timers.auth = None;
                return Poll::Ready(Wake::AuthTimeout);
            }
        }
        if self.served.port().poll_ready(context).is_ready() {
            return Poll::Ready(Wake::Output);
        }
        while self.served.core().congested() {
            let retry = timers
                .congestion
                .get_or_insert_with(|| Timer::new(CONGESTION_RETRY));
            if Pin::new(retry).poll(context).is_pending() {
                return Poll::Pending;
            }
            timers.congestion = None;
        }
        timers.congestion = None;
        let Connection { stream, wire, .. } = self;
        poll_read_with(stream, context, |bytes| wire.push(bytes)).map(Wake::Read)
    }

    /// An abort by the heartbeat (the peer fell silent) is said in the log; a slow consumer's
    /// abort was already logged where it happened.
    fn log_missed_heartbeat(&self) {
        if self.served.port().heartbeat() == Heartbeat::Missed {
            // A socket that sent nothing during a whole interval is dropped, without a close
            // frame, as deepstream 2.x (uws) does.
            crate::info!(
                "{}: no message for {} ms: closing the connection",
                self.peer_text(),
                self.served.core().config().heartbeat_interval.as_millis()
            );
        }
    }

    /// When a write that starts now must have finished (see `Wire::WRITES_WITHIN_HEARTBEAT`).
    fn write_deadline(&self) -> Option<Instant> {
        W::WRITES_WITHIN_HEARTBEAT
            .then(|| Instant::now() + self.served.core().config().heartbeat_interval)
    }

    /// Writes bytes, giving up when the session is aborted as a slow consumer or the write
    /// misses its deadline.
    async fn write(&mut self, bytes: &[u8]) -> bool {
        let deadline = self.write_deadline();
        let port = Some(&**self.served.port());
        crate::ports::net::write_all_racing(&mut self.stream, bytes, port, deadline).await
    }

    fn peer_text(&self) -> String {
        self.served
            .peer()
            .map(|peer| peer.to_string())
            .unwrap_or_default()
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
