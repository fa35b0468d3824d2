//! engine.io polling payloads (text and binary) on arbitrary bodies: decoding never panics,
//! and whatever decodes re-encodes (in every convention) to a body that decodes the same.
#![no_main]

use corestream::transport::engineio::{
    decode_binary_payload, decode_text_payload, encode_binary_payload, encode_text_payload,
    TextConvention,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Ok(packets) = decode_text_payload(body) {
        for convention in [TextConvention::Utf8Bytes, TextConvention::Utf16Units] {
            let again = encode_text_payload(&packets, convention);
            let decoded = decode_text_payload(&again).expect("re-encoded text payload decodes");
            // Text messages that are not UTF-8 (only possible from a 1.x-style body) cannot be
            // carried by the plain-text convention.
            if convention == TextConvention::Utf8Bytes {
                assert_eq!(decoded, packets);
            }
        }
    }
    if let Ok(packets) = decode_binary_payload(body) {
        let again = encode_binary_payload(&packets);
        assert_eq!(decode_binary_payload(&again).expect("re-encoded binary payload decodes"), packets);
    }
});
