//! The PROXY protocol header parser (`gateway::listener::proxy_protocol::parse`) on
//! arbitrary bytes:
//! - no panic;
//! - a header decided is no longer than 16 + 65,535 bytes, and a version 1 one ends
//!   within 107;
//! - every non-empty prefix of the input either needs more bytes or decides the same as
//!   the whole input: what the reader concludes does not depend on how the bytes arrive.
#![no_main]

use gateway::listener::proxy_protocol::{parse, Parsed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let whole = parse(data);
    if let Ok(Parsed::Done { len, .. }) = whole {
        assert!(len <= 16 + 65_535, "{len}");
        if data.starts_with(b"PROXY ") {
            assert!(len <= 107 && len <= data.len(), "{len}");
        }
    }
    for k in 1..data.len() {
        let part = parse(&data[..k]);
        assert!(
            part == Ok(Parsed::Incomplete) || part == whole,
            "{k} bytes: {part:?}, all {}: {whole:?}",
            data.len()
        );
    }
});
