//! The request head parser: httparse over the bytes up to the blank line, straight into
//! `http`'s method, URI, version and header map (values sharing the head's buffer), with
//! the framing rules applied and the raw request line and target kept.

use std::mem::MaybeUninit;
use std::ops::Range;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, Uri, Version};

use super::framing::{FieldScan, RequestFraming};
use super::head::{header_map, range_in, shared, HeadLimits, HeadScan, MAX_HEADER_SLOTS};
use super::Http1Error;

/// The longest target `http::Uri` holds.
const URI_MAX: usize = u16::MAX as usize - 1;

/// A parsed request head.
#[derive(Debug, Clone)]
pub struct RequestHead {
    pub method: Method,
    /// The target as `http` parses it (origin, absolute, authority or asterisk form).
    pub uri: Uri,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    pub headers: HeaderMap,
    /// Body framing and connection options from the header fields.
    pub framing: RequestFraming,
    /// The head as received, through its blank line.
    raw: Bytes,
    line: Range<usize>,
    target: Range<usize>,
}

impl RequestHead {
    /// The head's bytes as received (empty lines before the request line included).
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// Its size in bytes, for a limit on heads.
    pub fn head_len(&self) -> usize {
        self.raw.len()
    }

    /// The request line, without its line end.
    pub fn request_line(&self) -> &[u8] {
        self.raw.get(self.line.clone()).unwrap_or_default()
    }

    /// The request target exactly as sent.
    pub fn target(&self) -> &[u8] {
        self.raw.get(self.target.clone()).unwrap_or_default()
    }

    /// The target as sent, sharing the head's buffer.
    pub fn target_bytes(&self) -> Bytes {
        self.raw.slice(self.target.clone())
    }

    /// A HEAD request: its response has no body, whatever its headers say.
    pub fn is_head(&self) -> bool {
        self.method == Method::HEAD
    }
}

/// Parses the request head at the front of `buf` once it is complete: the head is split
/// off `buf` (bytes after it, a body or pipelined requests, stay there) and `scan` is
/// reset. `Ok(None)`: not complete yet, read more into `buf` and call again with the
/// same `scan`.
pub fn parse_request(
    buf: &mut BytesMut,
    scan: &mut HeadScan,
    limits: &HeadLimits,
) -> Result<Option<RequestHead>, Http1Error> {
    let Some(end) = scan.find(buf) else {
        if buf.len() > limits.max_head {
            return Err(oversized(buf, scan.start(), limits));
        }
        return Ok(None);
    };
    if end > limits.max_head {
        return Err(oversized(buf, scan.start(), limits));
    }
    scan.reset();
    let raw = buf.split_to(end).freeze();
    parse_head(raw, limits).map(Some)
}

/// Parses one complete head (`raw` ends with its blank line).
pub fn parse_head(raw: Bytes, limits: &HeadLimits) -> Result<RequestHead, Http1Error> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADER_SLOTS];
    let max_headers = limits.max_headers.min(MAX_HEADER_SLOTS);
    let slots = slots.get_mut(..max_headers).unwrap_or_default();
    let mut req = httparse::Request::new(&mut []);
    let parsed = match req.parse_with_uninit_headers(&raw, slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err(Http1Error::InvalidHead("end of the head")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Http1Error::TooManyHeaders { limit: max_headers })
        }
        Err(e) => return Err(Http1Error::Malformed(e)),
    };
    if parsed != raw.len() {
        return Err(Http1Error::InvalidHead("end of the head"));
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(Http1Error::InvalidHead("request line"));
    };
    let limit = limits.max_target.min(URI_MAX);
    if target.len() > limit {
        return Err(Http1Error::TargetTooLong { limit });
    }
    let version = match version {
        0 => Version::HTTP_10,
        1 => Version::HTTP_11,
        _ => return Err(Http1Error::InvalidHead("version")),
    };
    let (Some(target_range), Some(line_start)) = (
        range_in(&raw, target.as_bytes()),
        range_in(&raw, method.as_bytes()).map(|r| r.start),
    ) else {
        return Err(Http1Error::InvalidHead("request line"));
    };
    let method =
        Method::from_bytes(method.as_bytes()).map_err(|_| Http1Error::InvalidHead("method"))?;
    let uri = shared(&raw, target.as_bytes())
        .and_then(|t| Uri::from_maybe_shared(t).ok())
        .ok_or(Http1Error::InvalidHead("request target"))?;
    let line_end = line_end(&raw, target_range.end);
    let mut scan = FieldScan::request();
    let headers = header_map(&raw, req.headers, limits.reserve, &mut scan, false)?;
    let framing = scan.finish_request(version)?;
    Ok(RequestHead {
        method,
        uri,
        version,
        headers,
        framing,
        line: line_start..line_end,
        target: target_range,
        raw,
    })
}

/// The end of the line that contains `from`, without its CR.
fn line_end(raw: &[u8], from: usize) -> usize {
    let lf = raw
        .get(from..)
        .and_then(|rest| memchr::memchr(b'\n', rest))
        .map_or(raw.len(), |at| from + at);
    if lf > from && raw.get(lf - 1) == Some(&b'\r') {
        lf - 1
    } else {
        lf
    }
}

/// The error for a head that does not end within `max_head` bytes, decided by its first
/// `max_head + 1` bytes only (so the same whatever way they arrived): 414 when it is the
/// request target that is too long (or the request line that never ends), else 431.
fn oversized(buf: &[u8], start: Option<usize>, limits: &HeadLimits) -> Http1Error {
    let too_long = Http1Error::TargetTooLong {
        limit: limits.max_target,
    };
    let too_large = Http1Error::HeadTooLarge {
        limit: limits.max_head,
    };
    let window = buf.get(..limits.max_head.saturating_add(1)).unwrap_or(buf);
    // Empty lines fill the window unless the start line begins inside it; a CR as its
    // last byte may still be one's first half, whatever the byte after it turns out to be.
    let Some(rest) = start
        .and_then(|s| window.get(s..))
        .filter(|rest| !rest.is_empty() && *rest != b"\r")
    else {
        return too_large;
    };
    let Some(line) = rest
        .split(|&b| b == b'\n')
        .next()
        .filter(|l| l.len() < rest.len())
    else {
        return too_long;
    };
    // `METHOD SP target SP version`: the target is between the first and the last space.
    let first = line.iter().position(|&b| b == b' ');
    let last = line.iter().rposition(|&b| b == b' ');
    match (first, last) {
        (Some(a), Some(b)) if b.saturating_sub(a + 1) > limits.max_target => too_long,
        _ => too_large,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::framing::RequestBody;

    fn parse(bytes: &[u8]) -> Result<Option<RequestHead>, Http1Error> {
        let mut buf = BytesMut::from(bytes);
        parse_request(&mut buf, &mut HeadScan::default(), &HeadLimits::default())
    }

    fn head(bytes: &[u8]) -> RequestHead {
        parse(bytes).unwrap().unwrap()
    }

    #[test]
    fn a_typical_head() {
        let mut buf = BytesMut::from(
            &b"GET /a/b?c=d HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\nX-Custom: 1\r\nX-Custom: 2\r\n\r\nNEXT"[..],
        );
        let mut scan = HeadScan::default();
        let req = parse_request(&mut buf, &mut scan, &HeadLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(req.method, Method::GET);
        assert_eq!(req.version, Version::HTTP_11);
        assert_eq!(req.uri.path(), "/a/b");
        assert_eq!(req.uri.query(), Some("c=d"));
        assert_eq!(req.target(), b"/a/b?c=d");
        assert_eq!(req.request_line(), b"GET /a/b?c=d HTTP/1.1");
        assert_eq!(req.headers["host"], "example.com");
        let custom: Vec<_> = req.headers.get_all("x-custom").iter().collect();
        assert_eq!(custom, ["1", "2"]);
        assert_eq!(req.framing.body, RequestBody::Empty);
        assert!(req.framing.keep_alive);
        assert_eq!(&buf[..], b"NEXT", "pipelined bytes stay in the buffer");
        assert_eq!(req.head_len(), req.raw().len());
        assert!(req.headers.capacity() >= 4 + HeadLimits::default().reserve);
    }

    #[test]
    fn partial_heads_wait_for_more() {
        let full = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";
        let mut buf = BytesMut::new();
        let mut scan = HeadScan::default();
        let limits = HeadLimits::default();
        let mut found = None;
        for &b in full.iter() {
            buf.extend_from_slice(&[b]);
            if let Some(req) = parse_request(&mut buf, &mut scan, &limits).unwrap() {
                found = Some(req);
                break;
            }
        }
        let req = found.unwrap();
        assert_eq!(req.framing.body, RequestBody::Length(3));
        assert!(buf.is_empty(), "the body had not arrived yet");
    }

    #[test]
    fn forms_and_versions() {
        let abs = head(b"GET http://a.test:8080/p?q HTTP/1.1\r\nHost: a.test:8080\r\n\r\n");
        assert_eq!(abs.uri.authority().unwrap().as_str(), "a.test:8080");
        assert_eq!(abs.uri.path(), "/p");
        let star = head(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(star.uri.path(), "*");
        let v10 = head(b"\r\nGET / HTTP/1.0\r\n\r\n");
        assert_eq!(v10.version, Version::HTTP_10);
        assert!(!v10.framing.keep_alive);
        assert_eq!(v10.request_line(), b"GET / HTTP/1.0");
        let lf = head(b"HEAD /x HTTP/1.1\nHost: a\n\n");
        assert!(lf.is_head());
        assert_eq!(lf.request_line(), b"HEAD /x HTTP/1.1");
        let ext = head(b"PURGE /x HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(ext.method.as_str(), "PURGE");
    }

    /// The malformed heads of e2e/tests/hostile.rs that httparse refuses.
    #[test]
    fn malformed_heads_are_400() {
        let cases: [&[u8]; 12] = [
            b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nX-A: a\0b\r\n\r\n",
            b"GET / HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n",
            b"GET /a\0b HTTP/1.1\r\n\r\n",
            b"GET /a\rb HTTP/1.1\r\n\r\n",
            b"GET /a /b HTTP/1.1\r\n\r\n",
            b"GET  /x HTTP/1.1\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding:\r\n chunked\r\n\r\n",
            b"GET /\xff HTTP/1.1\r\n\r\n",
        ];
        for case in cases {
            let e = parse(case).unwrap_err();
            assert_eq!(
                e.request_status(),
                400,
                "{:?}: {e}",
                case.escape_ascii().to_string()
            );
        }
        // LF in the target ends the request line early: not a request line.
        assert_eq!(
            parse(b"GET /a\nb HTTP/1.1\r\n\r\n")
                .unwrap_err()
                .request_status(),
            400
        );
    }

    #[test]
    fn framing_is_applied() {
        let both = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(parse(both), Err(Http1Error::Framing(_))));
        let te10 = b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(parse(te10), Err(Http1Error::Framing(_))));
        let chunked = head(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n");
        assert_eq!(chunked.framing.body, RequestBody::Chunked);
        assert!(chunked.framing.expect_continue);
    }

    #[test]
    fn limits() {
        let limits = HeadLimits {
            max_head: 64,
            max_headers: 2,
            max_target: 16,
            reserve: 0,
        };
        let run = |bytes: &[u8]| {
            let mut buf = BytesMut::from(bytes);
            parse_request(&mut buf, &mut HeadScan::default(), &limits)
        };
        let fits = b"GET /0123456789abcde HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n";
        assert!(run(fits).unwrap().is_some());
        let target = b"GET /0123456789abcdef HTTP/1.1\r\n\r\n";
        assert!(matches!(run(target), Err(Http1Error::TargetTooLong { .. })));
        let fields = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        assert!(matches!(
            run(fields),
            Err(Http1Error::TooManyHeaders { .. })
        ));
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(60));
        assert!(matches!(
            run(big.as_bytes()),
            Err(Http1Error::HeadTooLarge { .. })
        ));
        // Not ended yet, already over: decided without waiting for the end.
        let open = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(60));
        assert!(matches!(
            run(open.as_bytes()),
            Err(Http1Error::HeadTooLarge { .. })
        ));
        let long_line = format!("GET /{}", "a".repeat(80));
        assert!(matches!(
            run(long_line.as_bytes()),
            Err(Http1Error::TargetTooLong { .. })
        ));
        let long_target = format!("GET /{} HTTP/1.1\r\nX: {}", "a".repeat(40), "b".repeat(30));
        assert!(matches!(
            run(long_target.as_bytes()),
            Err(Http1Error::TargetTooLong { .. })
        ));
    }

    /// Empty lines up to the limit and the start line just past it: 431 whether the bytes
    /// come at once or one per read (found by the http1_request fuzz target).
    #[test]
    fn empty_lines_to_the_limit_are_too_large_however_they_arrive() {
        let limits = HeadLimits {
            max_head: 8,
            ..HeadLimits::default()
        };
        for input in [
            &b"\r\n\r\n\n\r\n\n\rj\n\r\n"[..],
            b"\r\n\r\n\n\r\n\n\n\rj\n\r\n",
            b"\r\n\r\n\n\n\n\n\r\n",
        ] {
            let whole = parse_request(
                &mut BytesMut::from(input),
                &mut HeadScan::default(),
                &limits,
            );
            assert!(
                matches!(whole, Err(Http1Error::HeadTooLarge { .. })),
                "{}: {whole:?}",
                input.escape_ascii()
            );
            let mut buf = BytesMut::new();
            let mut scan = HeadScan::default();
            let bytewise = input
                .iter()
                .find_map(|&b| {
                    buf.extend_from_slice(&[b]);
                    parse_request(&mut buf, &mut scan, &limits).transpose()
                })
                .map(|r| r.map(|_| ()));
            assert!(
                matches!(bytewise, Some(Err(Http1Error::HeadTooLarge { .. }))),
                "{}: {bytewise:?}",
                input.escape_ascii()
            );
        }
    }
}
