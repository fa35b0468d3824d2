//! The 1.x TCP port: accepts connections, reads the PROXY protocol header from trusted proxies
//! (`tcpProxyProtocol`), and serves each connection with the shared loop (`connection`) over
//! the 1.x framing (`transport::tcp`: messages ended by 0x1E, no length prefix). Started by
//! `server` on every core.

use super::connection::{Connection, Inbound, Served, Wire};
use crate::dispatch::Core;
use crate::metrics::Transport;
use crate::ports::net::{read_until, Read};
use crate::protocol::actions::Dialect;
use crate::session::Session;
use crate::shard::ShareAs;
use crate::transport::proxy_protocol::{self, ProxyHeader};
use crate::transport::tcp::{Frame, TcpFramer, MAXIMUM_MESSAGE_SIZE_EXCEEDED};
use glommio::net::{TcpListener, TcpStream};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How long a proxy may take to send its PROXY header.
const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts TCP connections on this core until the listener fails for good.
pub async fn accept_tcp(core: Rc<Core>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let count = core.counters.connections_accepted.get() + 1;
                core.counters.connections_accepted.set(count);
                crate::ports::net::tune(&stream, &core.config().limits);
                let peer = stream.peer_addr().ok();
                if core.config().tcp_proxy_protocol {
                    glommio::spawn_local(behind_proxy(Rc::clone(&core), stream, peer)).detach();
                } else {
                    let connection = tcp_connection(Rc::clone(&core), stream, peer, &[]);
                    glommio::spawn_local(connection).detach();
                }
            }
            Err(error) => {
                // Out of file descriptors and the like: say so, back off, keep serving.
                crate::error!("accepting a TCP connection failed: {error}");
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The 1.x framing: a unit is everything up to the last 0x1E received.
struct TcpWire {
    framer: TcpFramer,
    ready: Option<Frame>,
}

impl Wire for TcpWire {
    const TRANSPORT: Transport = Transport::Tcp;

    fn push(&mut self, read: &[u8]) {
        self.ready = self.framer.push(read);
    }

    fn next(&mut self) -> Option<Inbound> {
        match self.ready.take()? {
            Frame::Unit(unit) => Some(Inbound::Unit(unit)),
            Frame::Oversized => Some(Inbound::Oversized(MAXIMUM_MESSAGE_SIZE_EXCEEDED)),
        }
    }

    const SHARE_AS: ShareAs = ShareAs::Raw;
    const WRITES_WITHIN_HEARTBEAT: bool = false;

    fn header(&self, _length: usize, _out: &mut Vec<u8>) {}

    fn close_frame(&self, _code: Option<u16>, _frame: &mut Vec<u8>) -> bool {
        false
    }
}

/// A connection from a trusted proxy: reads its PROXY header, then serves it in a task of its
/// own (this one's state, the header read, is not kept for the connection's life).
async fn behind_proxy(core: Rc<Core>, mut stream: TcpStream, peer: Option<SocketAddr>) {
    match read_proxy_header(&core, &mut stream, peer).await {
        Ok((source, rest)) => {
            let connection = tcp_connection(Rc::clone(&core), stream, source.or(peer), &rest);
            glommio::spawn_local(connection).detach();
        }
        Err(reason) => {
            crate::warn!(
                "{}: {reason}: connection closed",
                peer.map(|p| p.to_string()).unwrap_or_default()
            );
        }
    }
}

/// One 1.x TCP connection's task (`received`: bytes that followed a PROXY header). Not an
/// `async fn`, so the task holds only the connection loop's state.
fn tcp_connection(
    core: Rc<Core>,
    stream: TcpStream,
    peer: Option<SocketAddr>,
    received: &[u8],
) -> impl std::future::Future<Output = ()> {
    core.counters.session_opened(Transport::Tcp);
    let port = core.open_session();
    let session = Session::start(Rc::clone(&core), port, Dialect::V1, peer);
    let mut wire = TcpWire {
        framer: TcpFramer::new(core.config().max_message_size),
        ready: None,
    };
    if !received.is_empty() {
        wire.push(received);
    }
    Connection {
        stream,
        served: Served::Session(session),
        wire,
    }
    .run()
}

/// Reads the PROXY protocol header of a connection from a trusted proxy: the client's address
/// (`None`: a LOCAL connection, keep the socket's) and the bytes that followed the header.
async fn read_proxy_header(
    core: &Core,
    stream: &mut TcpStream,
    peer: Option<SocketAddr>,
) -> Result<(Option<SocketAddr>, Vec<u8>), String> {
    let trusted = peer.is_some_and(|peer| core.config().trusted_proxies.contains(&peer.ip()));
    if !trusted {
        return Err("not a trusted proxy (tcpProxyProtocol is on; see trustedProxies)".into());
    }
    let deadline = Instant::now() + PROXY_HEADER_TIMEOUT;
    let mut received = Vec::new();
    loop {
        match proxy_protocol::parse(&received) {
            Ok(Some((header, length))) => {
                let source = match header {
                    ProxyHeader::Proxied { source } => Some(source),
                    ProxyHeader::Local => None,
                };
                return Ok((source, received.split_off(length)));
            }
            Ok(None) => {}
            Err(error) => return Err(error.to_string()),
        }
        match read_until(stream, &mut received, deadline).await {
            Read::TimedOut => return Err("no PROXY header within 5 s".into()),
            Read::Closed => return Err("closed before its PROXY header".into()),
            Read::Data(_) => {}
        }
    }
}
