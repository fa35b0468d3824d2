//! An engine.io session carried by a WebSocket: the probe, the upgrade from polling, then
//! packets in text frames (binary messages in binary frames that start with the byte 4).
//! Called by `requests` after the 101.

use super::{Carrier, EioSession};
use crate::dispatch::Core;
use crate::metrics::Transport;
use crate::ports::net::{put, read_with};
use crate::transport::engineio::Packet;
use crate::transport::websocket::{self, close_code, Decoder, Event};
use futures_lite::future::or;
use glommio::net::TcpStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// What the frames decoded so far ask for.
enum Decoded {
    /// Nothing more to do until the next read.
    Read,
    /// Close the WebSocket with this code (or none).
    Close(Option<u16>),
}

/// Drives the WebSocket until it or the session closes.
pub async fn serve(
    core: &Rc<Core>,
    stream: &mut TcpStream,
    leftover: Vec<u8>,
    session: Rc<EioSession>,
) {
    let mut decoder = Decoder::new(core.config().max_message_size.max(4 * 1024 * 1024));
    decoder.push(&leftover);
    loop {
        // Output, once this WebSocket carries the session.
        if session.carrier.get() == Carrier::WebSocket && session.has_output() {
            if !write_output(core, stream, &session).await {
                break;
            }
            continue;
        }
        if session.closed.get() {
            return close(core, stream, Some(close_code::NORMAL)).await;
        }
        if let Decoded::Close(code) = decoded(core, stream, &session, &mut decoder).await {
            detach(&session);
            return close(core, stream, code).await;
        }
        let read = or(
            async { Some(read_with(stream, |bytes| decoder.push(bytes)).await) },
            async {
                if session.carrier.get() == Carrier::WebSocket {
                    session.wait_output(Duration::from_secs(3600)).await;
                } else {
                    // Not carrying the session yet: only watch for its close.
                    glommio::timer::sleep(Duration::from_millis(200)).await;
                }
                None
            },
        )
        .await;
        match read {
            Some(Ok(0)) | Some(Err(_)) => return detach(&session),
            Some(Ok(read)) => core.counters.bytes_in(Transport::EngineIo, read),
            None => {}
        }
    }
    // The carrying WebSocket failed (or its client stopped reading): the session ends with it.
    session.close();
}

/// The WebSocket is gone: the session ends with it if it carried it, otherwise polling goes on.
fn detach(session: &EioSession) {
    if session.carrier.get() == Carrier::WebSocket {
        session.close();
    } else {
        session.websocket_attached.set(false);
    }
}

async fn close(core: &Core, stream: &mut TcpStream, code: Option<u16>) {
    let mut frame = Vec::new();
    websocket::write_close(&mut frame, code);
    if put(core, stream, &frame).await {
        crate::ports::connection::linger(stream).await;
    }
}

/// Writes the session's output: `false` when the client stopped reading (its session is
/// aborted past its outbound limit, or the write outlives the engine.io heartbeat).
async fn write_output(core: &Core, stream: &mut TcpStream, session: &EioSession) -> bool {
    let mut frame = Vec::new();
    let mut packet_bytes = Vec::new();
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
    let config = core.config();
    let deadline = Instant::now() + config.engineio_ping_interval + config.engineio_ping_timeout;
    crate::ports::net::write_all_racing(stream, &frame, session.port(), Some(deadline)).await
}

/// Acts on every frame decoded so far.
async fn decoded(
    core: &Core,
    stream: &mut TcpStream,
    session: &EioSession,
    decoder: &mut Decoder,
) -> Decoded {
    while let Some(event) = decoder.next_event() {
        let mut reply = Vec::new();
        match event {
            Event::Text(text) => match Packet::decode(&text) {
                Some(Packet::Ping(data))
                    if data == b"probe" && session.carrier.get() == Carrier::Polling =>
                {
                    session.carrier.set(Carrier::Upgrading);
                    session.touch();
                    websocket::write_text(&mut reply, b"3probe");
                    if !put(core, stream, &reply).await {
                        return Decoded::Close(None);
                    }
                    // A poll still waiting answers with a noop, so the client can upgrade.
                    session.release_poll();
                }
                Some(Packet::Upgrade) => {
                    // Pending noops were for the polling side.
                    session.carrier.set(Carrier::WebSocket);
                    session.touch();
                }
                Some(packet) => session.receive(vec![packet]),
                None => return Decoded::Close(Some(close_code::PROTOCOL_ERROR)),
            },
            Event::Binary(data) => match data.split_first() {
                Some((4, rest)) => session.receive(vec![Packet::Binary(rest.to_vec())]),
                _ => return Decoded::Close(Some(close_code::PROTOCOL_ERROR)),
            },
            Event::Ping(data) => {
                websocket::write_pong(&mut reply, &data);
                let _ = put(core, stream, &reply).await;
            }
            Event::Pong => {}
            Event::Close(code) => return Decoded::Close(code),
            Event::Fail(code) => return Decoded::Close(Some(code)),
        }
    }
    Decoded::Read
}
