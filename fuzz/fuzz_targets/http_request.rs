//! The HTTP request head parser on arbitrary bytes: never panics; a complete head's length is
//! within the input, and its accessors never panic.
#![no_main]

use corestream::transport::http::{parse_request, Parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if let Parse::Complete(request) = parse_request(input) {
        assert!(request.head_length <= input.len());
        let _ = request.keep_alive();
        let _ = request.is_websocket_upgrade();
        let _ = request.content_length();
        let _ = request.query_param("EIO");
        let _ = request.header("sec-websocket-key");
    }
});
