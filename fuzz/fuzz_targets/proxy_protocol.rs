//! PROXY protocol headers (v1 and v2) on arbitrary bytes: parsing never panics, a header
//! never claims more bytes than arrived, and the claimed bytes alone parse to the same header.
#![no_main]

use corestream::transport::proxy_protocol::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(Some((header, length))) = parse(bytes) {
        assert!(length <= bytes.len());
        assert_eq!(parse(&bytes[..length]), Ok(Some((header, length))));
    }
});
