#![no_main]
//! Fuzz target: changelog line splitting, argument accessors and unescaping.
use antler_protocol::changelog::{escape, parse_line, unescape};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(l) = parse_line(s) {
            for i in 0..l.args.len() + 1 {
                let _ = l.u64_arg(i);
                let _ = l.octal_arg(i);
                let _ = l.char_arg(i);
                if let Ok(b) = l.bytes_arg(i) {
                    assert_eq!(unescape(&escape(&b)).unwrap(), b);
                }
            }
            let _ = l.result_nums();
        }
    }
});
