#![no_main]
//! Fuzz target: the master-side decoder of chunkserver packets; a decoded message re-encodes to the same payload.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let t = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) % 400;
    let p = &data[4..];
    if let Ok(m) = antler_protocol::cstoma::CsToMaster::decode(t, p) {
        // NOPs may carry bytes the peer ignores (MooseFS does the same); all else round-trips.
        if !matches!(m, antler_protocol::cstoma::CsToMaster::Nop) {
            let pkt = m.encode();
            assert_eq!(&pkt[8..], p);
        }
    }
});
