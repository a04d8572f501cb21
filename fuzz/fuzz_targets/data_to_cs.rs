#![no_main]
//! Fuzz target: the data-port decoder (client and chunkserver requests).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let t = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) % 400;
    let p = &data[4..];
    if let Ok(m) = antler_protocol::data::ToCs::decode(t, p) {
        // NOPs may carry bytes the peer ignores (MooseFS does the same); all else round-trips.
        if !matches!(m, antler_protocol::data::ToCs::Nop) {
            let pkt = m.encode();
            assert_eq!(&pkt[8..], p);
        }
    }
});
