//! RESP replies from Redis on arbitrary bytes: the "is a whole reply here?" scan never panics
//! or claims more bytes than arrived, and parsing what it measured never panics.
#![no_main]

use corestream::cluster::resp::{frame_length, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(Some(length)) = frame_length(bytes) {
        assert!(length <= bytes.len());
        let _ = parse(&bytes[..length]);
    }
});
