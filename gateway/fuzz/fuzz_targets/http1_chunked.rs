//! The chunked decoder (`gateway::http1::ChunkedDecoder`) on arbitrary bytes, under the
//! default limits and small ones:
//! - no panic;
//! - no read past the input: every data range and the bytes used lie inside the piece
//!   given, and the end of the body is never past the input;
//! - the same data, trailers and outcome (the error, or where the body ended) whatever
//!   way the bytes arrive (see `splits.rs`).
#![no_main]

mod splits;

use gateway::http1::{ChunkedDecoder, ChunkedLimits, Decoded};
use libfuzzer_sys::fuzz_target;

fn decode(data: &[u8], cuts: &[usize], limits: ChunkedLimits) -> (Vec<u8>, String) {
    let mut decoder = ChunkedDecoder::new(limits);
    let mut body = Vec::new();
    let mut offset = 0;
    for piece in splits::pieces(data, cuts) {
        let mut at = 0;
        while at < piece.len() {
            let rest = &piece[at..];
            let (used, found) = match decoder.decode(rest) {
                Ok(step) => step,
                Err(e) => return (body, format!("error: {e}")),
            };
            assert!(used <= rest.len(), "used {used} of {}", rest.len());
            let more = matches!(found, Decoded::More);
            match found {
                Decoded::Data(range) => {
                    assert!(
                        range.end <= used && !range.is_empty(),
                        "{range:?} of {used}"
                    );
                    body.extend_from_slice(&rest[range]);
                }
                Decoded::More => assert_eq!(used, rest.len(), "More leaves no input"),
                Decoded::Done => {
                    let end = offset + at + used;
                    assert!(end <= data.len());
                    return (
                        body,
                        format!("done at {end}: {:?}", decoder.take_trailers()),
                    );
                }
            }
            at += used;
            if more {
                break;
            }
        }
        offset += piece.len();
    }
    (body, "incomplete".to_owned())
}

fuzz_target!(|data: &[u8]| {
    let small = ChunkedLimits {
        max_line: 16,
        max_trailers: 64,
        max_trailer_fields: 4,
    };
    for limits in [ChunkedLimits::default(), small] {
        let reference = decode(data, &[], limits);
        for cuts in splits::schedules(data) {
            let got = decode(data, &cuts, limits);
            assert_eq!(reference, got, "cut at {cuts:?}");
        }
    }
});
