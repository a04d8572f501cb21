//! Fuzzes the master's decoder of client (mfsmount, tools) requests.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    // First two bytes pick the type among the client request range and a few others.
    let t = 400 + u16::from_be_bytes([data[0], data[1]]) as u32 % 310;
    let _ = antler_protocol::cltoma::ClRequest::decode(t, &data[2..]);
});
