//! The WebSocket decoder on arbitrary bytes fed in arbitrary pieces: never panics, text
//! messages are valid UTF-8, messages respect the size limit, and nothing is decoded after a
//! protocol failure.
#![no_main]

use corestream::transport::websocket::{Decoder, Event};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&split, data)) = input.split_first() else {
        return;
    };
    let mut decoder = Decoder::new(4096);
    let mut failed = false;
    for chunk in data.chunks(usize::from(split).max(1)) {
        decoder.push(chunk);
        while let Some(event) = decoder.next_event() {
            assert!(!failed, "an event after a failure");
            match event {
                Event::Text(text) => {
                    assert!(std::str::from_utf8(&text).is_ok());
                    assert!(text.len() <= 4096);
                }
                Event::Binary(data) => assert!(data.len() <= 4096),
                Event::Ping(data) => assert!(data.len() <= 125),
                Event::Fail(_) => failed = true,
                Event::Pong | Event::Close(_) => {}
            }
        }
    }
});
