//! Record patches from the network (path and typed value) applied to stored JSON: never
//! panics, and a successful patch always produces valid JSON.
#![no_main]

use corestream::features::record_store::patch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let mut parts = input.splitn(3, |byte| *byte == 0x1f);
    let (Some(stored), Some(path), Some(value)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    // Stored data is always JSON that passed validation.
    let mut scratch = stored.to_vec();
    if simd_json_valid(&mut scratch).is_err() {
        return;
    }
    let mut buffer = Vec::new();
    if let Ok(json) = patch(stored, path, value, &mut buffer) {
        let mut copy = json.clone();
        assert!(simd_json_valid(&mut copy).is_ok(), "patched JSON is invalid");
    }
});

fn simd_json_valid(bytes: &mut [u8]) -> Result<(), ()> {
    corestream::features::record_store::validate(bytes).map_err(|_| ())
}
