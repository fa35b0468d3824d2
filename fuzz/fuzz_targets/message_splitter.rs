//! The deepstream message splitter/parser on arbitrary units: never panics, every field is a
//! slice of the input, and re-joining a message's fields gives back its raw bytes.
#![no_main]

use corestream::protocol::actions::Dialect;
use corestream::protocol::message::{messages, Parsed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|unit: &[u8]| {
    for dialect in [Dialect::V1, Dialect::V2] {
        for parsed in messages(unit, dialect) {
            if let Parsed::Message(message) = parsed {
                let mut joined = message.topic.to_vec();
                joined.push(0x1f);
                joined.extend_from_slice(message.action_raw);
                for field in message.data_fields() {
                    joined.push(0x1f);
                    joined.extend_from_slice(field);
                }
                assert_eq!(joined, message.raw);
                assert_eq!(message.data_fields().count(), message.data_count());
            }
        }
    }
});
