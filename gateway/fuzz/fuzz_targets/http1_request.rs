//! The HTTP/1 request-head parser (`gateway::http1::parse_request`) on arbitrary bytes,
//! under the default limits and small ones:
//! - no panic;
//! - no read past the input: an accepted head is a prefix of the input and the bytes
//!   after it stay in the buffer;
//! - the same result whatever way the bytes arrive (see `splits.rs`);
//! - an accepted head written back out by the codec's writer parses to the same request.
#![no_main]

mod splits;

use gateway::http1::{parse_request, write, BytesMut, HeadLimits, HeadScan, RequestHead};
use libfuzzer_sys::fuzz_target;

#[derive(Debug)]
enum Outcome {
    Head(Box<RequestHead>),
    Incomplete,
    Refused(String),
}

fn parse(data: &[u8], cuts: &[usize], limits: &HeadLimits) -> Outcome {
    let mut buf = BytesMut::new();
    let mut scan = HeadScan::default();
    let mut read = 0;
    for piece in splits::pieces(data, cuts) {
        buf.extend_from_slice(piece);
        read += piece.len();
        match parse_request(&mut buf, &mut scan, limits) {
            Ok(Some(head)) => {
                let len = head.head_len();
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

fn same(a: &RequestHead, b: &RequestHead) -> bool {
    a.method == b.method
        && a.uri == b.uri
        && a.target() == b.target()
        && a.headers == b.headers
        && a.framing.body == b.framing.body
        && (a.version != b.version || a.framing == b.framing)
}

fn check(data: &[u8], limits: &HeadLimits) {
    let reference = parse(data, &[], limits);
    for cuts in splits::schedules(data) {
        let got = parse(data, &cuts, limits);
        let agree = match (&reference, &got) {
            (Outcome::Head(a), Outcome::Head(b)) => same(a, b) && a.raw() == b.raw(),
            (Outcome::Incomplete, Outcome::Incomplete) => true,
            (Outcome::Refused(a), Outcome::Refused(b)) => a == b,
            _ => false,
        };
        assert!(agree, "whole: {reference:?}\ncut at {cuts:?}: {got:?}");
    }
    if let Outcome::Head(head) = &reference {
        let mut out = Vec::new();
        write::request_line(&mut out, &head.method, head.target());
        write::fields(&mut out, &head.headers, |_| false);
        out.extend_from_slice(b"\r\n");
        let roomy = HeadLimits {
            max_head: usize::MAX / 2,
            max_target: usize::MAX / 2,
            ..*limits
        };
        match parse(&out, &[], &roomy) {
            Outcome::Head(again) => assert!(same(head, &again), "{head:?}\nrewritten: {again:?}"),
            other => panic!("rewritten head: {other:?}\n{}", out.escape_ascii()),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(data, &HeadLimits::default());
    let small = HeadLimits {
        max_head: 300,
        max_headers: 8,
        max_target: 64,
        reserve: 2,
    };
    check(data, &small);
});
