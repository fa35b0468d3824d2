//! TCP reassembly on arbitrary input split at arbitrary points: never panics, never buffers
//! more than maxMessageSize, and every unit it returns ends with 0x1E.
#![no_main]

use corestream::transport::tcp::{Frame, TcpFramer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&split, data)) = input.split_first() else {
        return;
    };
    let mut framer = TcpFramer::new(256);
    for chunk in data.chunks(usize::from(split).max(1)) {
        if let Some(Frame::Unit(unit)) = framer.push(chunk) {
            assert_eq!(unit.last(), Some(&0x1e));
        }
        assert!(framer.pending() < 256 + chunk.len());
    }
});
