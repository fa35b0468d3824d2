//! Node messages (`cluster::wire`) on arbitrary bytes, as anyone who can publish on the cluster's
//! Redis could send them: decoding never panics, and whatever decodes encodes back to a payload
//! that decodes to the same message from the same node.
#![no_main]

use bytes::Bytes;
use corestream::cluster::wire::{decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let payload = Bytes::copy_from_slice(bytes);
    if let Some((node, message)) = decode(&payload) {
        let again = Bytes::from(encode(&node, &message));
        assert_eq!(decode(&again), Some((node, message)));
    }
});
