//! The compression policy: eligibility and the edits to a compressed response's head.

use http::header::{
    ACCEPT_ENCODING, ACCEPT_RANGES, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE,
    CONTENT_TYPE, ETAG, VARY,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use super::{digits, Algorithm, Compression, MediaRange};

fn response(pairs: &[(http::header::HeaderName, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(k.clone(), HeaderValue::from_static(v));
    }
    h
}

fn json(len: &'static str) -> HeaderMap {
    response(&[
        (CONTENT_TYPE, "application/json; charset=utf-8"),
        (CONTENT_LENGTH, len),
        (ETAG, "\"v1\""),
        (ACCEPT_RANGES, "bytes"),
    ])
}

#[test]
fn the_request_negotiates_unless_head_or_no_transform() {
    let c = Compression::default();
    let mut req = HeaderMap::new();
    req.insert(ACCEPT_ENCODING, HeaderValue::from_static("gzip, br"));
    assert_eq!(c.request(&Method::GET, &req), Some(Algorithm::Brotli));
    assert_eq!(c.request(&Method::POST, &req), Some(Algorithm::Brotli));
    assert_eq!(c.request(&Method::HEAD, &req), None);
    req.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("max-age=0, No-Transform"),
    );
    assert_eq!(c.request(&Method::GET, &req), None);
    assert_eq!(c.request(&Method::GET, &HeaderMap::new()), None);
}

#[test]
fn a_compressed_head_is_edited() {
    let c = Compression::default();
    let mut h = json("5000");
    let e = c
        .response(Some(Algorithm::Zstd), StatusCode::OK, &mut h)
        .unwrap();
    assert_eq!(e.algorithm(), Algorithm::Zstd);
    assert_eq!(h[CONTENT_ENCODING], "zstd");
    assert_eq!(h[VARY], "accept-encoding");
    assert_eq!(h[ETAG], "W/\"v1\"", "a strong ETag turns weak");
    assert!(h.get(CONTENT_LENGTH).is_none());
    assert!(h.get(ACCEPT_RANGES).is_none());

    let mut weak = json("5000");
    weak.insert(ETAG, HeaderValue::from_static("W/\"v1\""));
    weak.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
    c.response(Some(Algorithm::Gzip), StatusCode::NOT_FOUND, &mut weak)
        .unwrap();
    assert_eq!(weak[ETAG], "W/\"v1\"");
    assert_eq!(weak.get_all(VARY).iter().count(), 1);
}

#[test]
fn an_eligible_response_varies_even_when_not_compressed() {
    let c = Compression::default();
    let mut h = json("5000");
    assert!(c.response(None, StatusCode::OK, &mut h).is_none());
    assert_eq!(h[VARY], "accept-encoding");
    assert_eq!(h[CONTENT_LENGTH], "5000", "left as it was");
    assert_eq!(h[ETAG], "\"v1\"");
}

#[test]
fn ineligible_responses_are_left_alone() {
    let c = Compression::default();
    let cases: Vec<(&str, StatusCode, HeaderMap)> = vec![
        ("below min_size", StatusCode::OK, json("1023")),
        (
            "no content type",
            StatusCode::OK,
            response(&[(CONTENT_LENGTH, "5000")]),
        ),
        (
            "a type not listed",
            StatusCode::OK,
            response(&[(CONTENT_TYPE, "image/png")]),
        ),
        ("encoded already", StatusCode::OK, {
            let mut h = json("5000");
            h.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            h
        }),
        ("no-transform", StatusCode::OK, {
            let mut h = json("5000");
            h.insert(
                CACHE_CONTROL,
                HeaderValue::from_static("public, no-transform"),
            );
            h
        }),
        ("a range", StatusCode::OK, {
            let mut h = json("5000");
            h.insert(CONTENT_RANGE, HeaderValue::from_static("bytes 0-4999/9000"));
            h
        }),
        ("206", StatusCode::PARTIAL_CONTENT, json("5000")),
        ("204", StatusCode::NO_CONTENT, json("5000")),
        ("304", StatusCode::NOT_MODIFIED, json("5000")),
        ("101", StatusCode::SWITCHING_PROTOCOLS, json("5000")),
        ("a bad length", StatusCode::OK, json("lots")),
    ];
    for (why, status, mut h) in cases {
        let before = h.clone();
        assert!(
            c.response(Some(Algorithm::Gzip), status, &mut h).is_none(),
            "{why}"
        );
        assert_eq!(h, before, "{why}: untouched");
    }
    let mut identity = json("5000");
    identity.insert(CONTENT_ENCODING, HeaderValue::from_static("identity"));
    assert!(c
        .response(Some(Algorithm::Gzip), StatusCode::OK, &mut identity)
        .is_some());
    let mut unknown_length = response(&[(CONTENT_TYPE, "text/event-stream")]);
    assert!(
        c.response(Some(Algorithm::Gzip), StatusCode::OK, &mut unknown_length)
            .is_some(),
        "unknown length: compressed"
    );
}

#[test]
fn media_ranges() {
    let text = MediaRange::parse("Text/*").unwrap();
    assert!(text.covers(b"text/html"));
    assert!(text.covers(b"TEXT/CSS"));
    assert!(!text.covers(b"text/"));
    assert!(!text.covers(b"textual/html"));
    let json = MediaRange::parse("application/json").unwrap();
    assert!(json.covers(b"Application/JSON"));
    assert!(!json.covers(b"application/json5"));
    assert!(MediaRange::parse("*/*").unwrap().covers(b"image/png"));
    for bad in [
        "json",
        "*/json",
        "text/html; charset=utf-8",
        "te xt/html",
        "/x",
        "x/",
    ] {
        assert!(MediaRange::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn content_length_digits() {
    assert_eq!(digits(b"0"), Some(0));
    assert_eq!(digits(b"1024"), Some(1024));
    assert_eq!(digits(b"18446744073709551615"), Some(u64::MAX));
    assert_eq!(digits(b"18446744073709551616"), None, "overflow");
    assert_eq!(digits(b""), None);
    assert_eq!(digits(b"12a"), None);
    assert_eq!(digits(b"+1"), None);
    assert_eq!(digits(b" 1"), None);
}
