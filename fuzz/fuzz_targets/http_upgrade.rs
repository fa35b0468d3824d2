//! The HTTP port's input path end to end, without sockets: arbitrary bytes are parsed as a
//! request head, routed as the server routes them (origins, engine.io, WebSocket upgrades,
//! health, metrics), and for an upgrade everything after the head is fed to the WebSocket
//! decoder, whose text messages go through the deepstream message splitter; for engine.io the
//! body goes through the polling payload decoders. Nothing may panic, and the decoder must
//! never buffer more than the frame limit.
#![no_main]

use corestream::base::config::{Config, Origins};
use corestream::ports::route::{route, Route};
use corestream::protocol::actions::Dialect;
use corestream::protocol::message::messages;
use corestream::transport::engineio::{decode_binary_payload, decode_text_payload};
use corestream::transport::http::{parse_request, Parse};
use corestream::transport::websocket::{Decoder, Event};
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 64 * 1024;

fuzz_target!(|input: &[u8]| {
    let config = Config {
        websocket_echo_path: Some("/echo".into()),
        engineio_echo_path: Some("/engine.io".into()),
        origins: Origins::Only(vec!["https://good.example".into()]),
        ..Config::default()
    };
    let Parse::Complete(request) = parse_request(input) else {
        return;
    };
    let rest = &input[request.head_length..];
    match route(&config, &request) {
        Route::WebSocket { handshake, .. } => {
            assert!(handshake.starts_with("HTTP/1.1 101 "));
            let mut decoder = Decoder::new(LIMIT);
            // Fed in two pieces, as a socket may deliver it.
            let (first, second) = rest.split_at(rest.len() / 2);
            for piece in [first, second] {
                decoder.push(piece);
                while let Some(event) = decoder.next_event() {
                    if let Event::Text(text) = event {
                        assert!(text.len() <= LIMIT);
                        for _ in messages(&text, Dialect::V2) {}
                    }
                }
                assert!(decoder.pending() <= LIMIT + 14 + piece.len());
            }
        }
        Route::EngineIo(_) => {
            let _ = decode_text_payload(rest);
            let _ = decode_binary_payload(rest);
        }
        Route::ForbiddenOrigin
        | Route::Health
        | Route::Metrics
        | Route::Answer { .. } => {}
    }
});
