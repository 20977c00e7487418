//! The HTTP/1 response-head parser (`gateway::http1::parse_response`) on arbitrary
//! bytes, as the answer to a GET and to a HEAD, under the default limits and small ones:
//! - no panic;
//! - no read past the input: an accepted head is a prefix of the input and the bytes
//!   after it stay in the buffer;
//! - the same result whatever way the bytes arrive (see `splits.rs`);
//! - an accepted head written back out by the codec's writer parses to the same response.
#![no_main]

mod splits;

use gateway::http1::{parse_response, write, BytesMut, HeadLimits, HeadScan, ResponseHead};
use libfuzzer_sys::fuzz_target;

#[derive(Debug)]
enum Outcome {
    Head(Box<ResponseHead>),
    Incomplete,
    Refused(String),
}

fn parse(data: &[u8], cuts: &[usize], limits: &HeadLimits, head_request: bool) -> Outcome {
    let mut buf = BytesMut::new();
    let mut scan = HeadScan::default();
    let mut read = 0;
    for piece in splits::pieces(data, cuts) {
        buf.extend_from_slice(piece);
        read += piece.len();
        match parse_response(&mut buf, &mut scan, limits, head_request) {
            Ok(Some(head)) => {
                let len = head.raw().len();
                assert!(
                    data.starts_with(head.raw()),
                    "the head is the input's prefix"
                );
                assert_eq!(&buf[..], &data[len..read], "the rest stays in the buffer");
                return Outcome::Head(Box::new(head));
            }
            Ok(None) => {}
            Err(e) => return Outcome::Refused(e.to_string()),
        }
    }
    Outcome::Incomplete
}

fn same(a: &ResponseHead, b: &ResponseHead) -> bool {
    a.status == b.status && a.headers == b.headers && a.framing == b.framing
}

fn check(data: &[u8], limits: &HeadLimits, head_request: bool) {
    let reference = parse(data, &[], limits, head_request);
    for cuts in splits::schedules(data) {
        let got = parse(data, &cuts, limits, head_request);
        let agree = match (&reference, &got) {
            (Outcome::Head(a), Outcome::Head(b)) => {
                same(a, b) && a.raw() == b.raw() && a.version == b.version
            }
            (Outcome::Incomplete, Outcome::Incomplete) => true,
            (Outcome::Refused(a), Outcome::Refused(b)) => a == b,
            _ => false,
        };
        assert!(agree, "whole: {reference:?}\ncut at {cuts:?}: {got:?}");
    }
    if let Outcome::Head(head) = &reference {
        let mut out = Vec::new();
        write::status_line(&mut out, head.status, Some(head.reason()));
        write::fields(&mut out, &head.headers, |_| false);
        out.extend_from_slice(b"\r\n");
        let roomy = HeadLimits {
            max_head: usize::MAX / 2,
            ..*limits
        };
        // Written as HTTP/1.1: an HTTP/1.0 response's keep-alive reads differently.
        match parse(&out, &[], &roomy, head_request) {
            Outcome::Head(again) => assert!(
                head.status == again.status
                    && head.headers == again.headers
                    && head.framing.body == again.framing.body
                    && (head.version != again.version || same(head, &again)),
                "{head:?}\nrewritten: {again:?}"
            ),
            other => panic!("rewritten head: {other:?}\n{}", out.escape_ascii()),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let small = HeadLimits {
        max_head: 300,
        max_headers: 8,
        max_target: 64,
        reserve: 2,
    };
    for head_request in [false, true] {
        check(data, &HeadLimits::default(), head_request);
        check(data, &small, head_request);
    }
});
