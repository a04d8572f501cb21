#![no_main]
//! Fuzz target: block-repl's replication frame decoder; a decoded frame re-encodes to the
//! same bytes (apart from the unused flags field).
use antler_block_repl::frame::decode_all;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = decode_all(data) {
        let again = f.encode();
        assert_eq!(&again[..6], &data[..6]);
        assert_eq!(&again[8..], &data[8..]);
    }
});
