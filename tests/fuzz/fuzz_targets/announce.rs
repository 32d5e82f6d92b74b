//! The multicast announcement decoder on arbitrary bytes: no panics, and every accepted
//! datagram re-encodes to an equal announcement that is no longer than the input (unknown
//! fields are dropped, everything else has one spelling).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pacserve::peers::discovery::{decode, encode};
use pacserve::limits::MAX_ANNOUNCE_BYTES;

fuzz_target!(|data: &[u8]| {
    let Ok(a) = decode(data) else {
        return;
    };
    let bytes = encode(&a);
    assert!(bytes.len() <= data.len() && bytes.len() <= MAX_ANNOUNCE_BYTES);
    assert_eq!(decode(&bytes).as_ref(), Ok(&a), "re-encoded: {bytes:?}");
});
