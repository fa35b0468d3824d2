//! WebSocket connections after the upgrade (`http` answered the handshake): a 2.x deepstream
//! session, or the echo endpoint used by the conformance suites. Served by the shared loop
//! (`connection`) over RFC 6455 framing (`transport::websocket`).

use super::connection::{Connection, Inbound, Served, Wire};
use super::route::Endpoint;
use crate::auth::proxy::Caller;
use crate::dispatch::Core;
use crate::metrics::Transport;
use crate::protocol::actions::Dialect;
use crate::session::Session;
use crate::shard::ShareAs;
use crate::transport::websocket::{self, Decoder, Event};
use bytes::Bytes;
use glommio::net::TcpStream;
use std::rc::Rc;

/// The server side of RFC 6455 for one endpoint.
struct WebSocketWire {
    decoder: Decoder,
    endpoint: Endpoint,
}

impl Wire for WebSocketWire {
    const TRANSPORT: Transport = Transport::WebSocket;

    fn push(&mut self, read: &[u8]) {
        self.decoder.push(read);
    }

    fn next(&mut self) -> Option<Inbound> {
        let mut reply = Vec::new();
        let inbound = match (self.decoder.next_event()?, self.endpoint) {
            (Event::Text(text), Endpoint::Deepstream) => Inbound::Unit(Bytes::from(text)),
            (Event::Text(text), Endpoint::Echo) => {
                websocket::write_text(&mut reply, &text);
                Inbound::Reply(reply)
            }
            (Event::Binary(data), Endpoint::Echo) => {
                websocket::write_binary(&mut reply, &data);
                Inbound::Reply(reply)
            }
            // deepstream speaks text only.
            (Event::Binary(_), Endpoint::Deepstream) => Inbound::Close(Some(1003)),
            (Event::Ping(data), _) => {
                websocket::write_pong(&mut reply, &data);
                Inbound::Reply(reply)
            }
            (Event::Pong, _) => Inbound::Heard,
            // Answer the close handshake with the peer's code (or none), then leave.
            (Event::Close(code), _) => Inbound::Close(code),
            (Event::Fail(code), _) => Inbound::Fail(code),
        };
        Some(inbound)
    }

    const SHARE_AS: ShareAs = ShareAs::WebSocketFrame;
    const WRITES_WITHIN_HEARTBEAT: bool = true;

    fn header(&self, length: usize, out: &mut Vec<u8>) {
        // What the session produced between broadcasts goes out as one text frame.
        websocket::write_text_header(out, length);
    }

    fn close_frame(&self, code: Option<u16>, frame: &mut Vec<u8>) -> bool {
        websocket::write_close(frame, code);
        true
    }
}

/// One WebSocket connection's task: a 2.x deepstream session, or the echo endpoint. Not an
/// `async fn`, so the task holds only the connection loop's state.
pub fn serve_websocket(
    core: Rc<Core>,
    stream: TcpStream,
    leftover: Vec<u8>,
    endpoint: Endpoint,
    caller: Caller,
) -> impl std::future::Future<Output = ()> {
    let peer = caller.address;
    core.counters.session_opened(Transport::WebSocket);
    let port = core.open_session();
    let mut decoder = Decoder::new(core.config().max_message_size);
    decoder.push(&leftover);
    let served = match endpoint {
        Endpoint::Deepstream => {
            port.heartbeat_on();
            let mut session = Session::start(core, port, Dialect::V2, peer);
            session.set_proxy_identity(caller.identity);
            Served::Session(session)
        }
        Endpoint::Echo => Served::Echo { core, port, peer },
    };
    Connection {
        stream,
        served,
        wire: WebSocketWire { decoder, endpoint },
    }
    .run()
}
