#![no_main]
//! Fuzz target: metalogger → master message decoder (first 4 bytes pick the type).
use antler_protocol::matoml::MlToMaster;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() >= 4 {
        let t = u32::from_be_bytes(data[..4].try_into().unwrap()) % 70;
        let _ = MlToMaster::decode(t, &data[4..]);
    }
});
