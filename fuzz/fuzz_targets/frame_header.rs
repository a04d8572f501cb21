#![no_main]
//! Fuzz target: packet header decoding with a link size limit.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() >= 8 {
        let h: [u8; 8] = data[..8].try_into().unwrap();
        if let Ok(hdr) = antler_protocol::frame::Header::decode(&h, 100_000) {
            assert!(hdr.len <= 100_000);
            assert_eq!(hdr.encode(), h);
        }
    }
});
