#![no_main]
//! Fuzz target: the `MFSM 2.0` metadata file decoder; what decodes must re-encode to
//! something that decodes to the same image.
use antler_protocol::metadata::MetaImage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = MetaImage::decode(data) {
        let again = MetaImage::decode(&m.encode()).expect("our own encoding decodes");
        assert_eq!(again, m);
    }
});
