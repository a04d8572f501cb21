#![no_main]
//! Fuzz target: chunk file header, file name and size-to-layout decoding.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = antler_protocol::chunkfile::ChunkHeader::decode(data);
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some((id, v)) = antler_protocol::chunkfile::parse_file_name(s) {
            assert_eq!(antler_protocol::chunkfile::file_name(id, v), s);
        }
    }
    if data.len() >= 8 {
        let size = u64::from_be_bytes(data[..8].try_into().unwrap());
        let _ = antler_protocol::chunkfile::Layout::from_file_size(size);
    }
});
