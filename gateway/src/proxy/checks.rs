//! Request checks made before routing: framing, host and target rules pingora's parser
//! lets through, and the listener's size limits. A refused request never reaches a backend.

use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::Version;
use pingora::http::RequestHeader;
use pingora::protocols::http::ServerSession;

use super::uri::{self, is_authority, LineCheck, Shape};
use crate::config::Edge;

/// Why a request is refused: the status it gets and a reason for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub status: u16,
    pub reason: &'static str,
}

const fn refuse(status: u16, reason: &'static str) -> Result<(), Refusal> {
    Err(Refusal { status, reason })
}

/// Checks the request head read by `downstream` against the HTTP rules and `edge`'s
/// limits; `line` is the check of an HTTP/1 request line as it came off the wire
/// (pingora's parser rewrites some invalid ones into valid ones), `None` for HTTP/2.
/// Returns the shape of the request's path.
pub(crate) fn check_request(
    downstream: &ServerSession,
    edge: &Edge,
    line: Option<LineCheck>,
) -> Result<Shape, Refusal> {
    let req = downstream.req_header();
    if req.raw_path().len() > edge.max_uri_length {
        return Err(Refusal {
            status: 414,
            reason: "request target longer than max_uri_length",
        });
    }
    if head_size(req) > edge.max_header_size {
        return Err(Refusal {
            status: 431,
            reason: "request head larger than max_header_size",
        });
    }
    let shape = match line {
        Some(line) => line,
        // HTTP/2: `:path` as the http crate took it (it has already refused controls
        // and spaces).
        None => {
            let path = req.uri.path_and_query().map_or("", |pq| pq.as_str());
            uri::target(req.method.as_str().as_bytes(), path.as_bytes(), false)
        }
    }
    .map_err(|reason| Refusal {
        status: 400,
        reason,
    })?;
    check_host(req)?;
    match downstream {
        ServerSession::H1(h1) => check_framing(req, || h1.get_headers_raw_bytes())?,
        // HTTP/2 frames its bodies itself, and h2 refuses Transfer-Encoding; but pingora
        // lets equal Content-Length lines through, which would go upstream as they came.
        _ => check_lengths(req)?,
    }
    Ok(shape)
}

/// The request line and headers as they were sent, near enough: each header costs
/// its name, value and `: ` + CRLF.
fn head_size(req: &RequestHeader) -> usize {
    let line = req.method.as_str().len() + req.raw_path().len() + 12;
    req.headers
        .iter()
        .fold(line, |n, (k, v)| n + k.as_str().len() + v.len() + 4)
}

fn check_host(req: &RequestHeader) -> Result<(), Refusal> {
    let mut hosts = req.headers.get_all(HOST).iter();
    let (host, second) = (hosts.next(), hosts.next());
    if second.is_some() {
        return refuse(400, "more than one Host header");
    }
    if host.is_none() && req.version == Version::HTTP_11 {
        return refuse(400, "HTTP/1.1 request without Host");
    }
    // An HTTP/1.0 absolute-form target has no Host to be checked against.
    if host.is_none() && !matches!(req.raw_path().first(), Some(b'/' | b'*')) {
        return refuse(400, "absolute-form target without Host");
    }
    // HTTP/2 `:authority` (the http crate's parser takes more than a host and port).
    if let Some(authority) = req.uri.authority() {
        if !is_authority(authority.as_str().as_bytes()) {
            return refuse(400, "invalid :authority");
        }
    }
    if let Some(host) = host {
        if !is_authority(host.as_bytes()) {
            return refuse(400, "invalid Host header");
        }
        // HTTP/2 `:authority` or an absolute-form target must name the same host.
        if let Some(authority) = req.uri.authority() {
            if !authority
                .as_str()
                .as_bytes()
                .eq_ignore_ascii_case(host.as_bytes())
            {
                return refuse(400, "Host disagrees with the request's authority");
            }
        }
    }
    Ok(())
}

/// HTTP/1 body framing: one unambiguous length, never both Content-Length and
/// Transfer-Encoding (pingora drops the Content-Length in that case, so the raw head
/// is read to see it), and Transfer-Encoding only as a single final `chunked`.
fn check_framing(
    req: &RequestHeader,
    raw_head: impl FnOnce() -> bytes::Bytes,
) -> Result<(), Refusal> {
    check_lengths(req)?;
    let mut encodings = req.headers.get_all(TRANSFER_ENCODING).iter();
    if let Some(te) = encodings.next() {
        if encodings.next().is_some() || !te.as_bytes().eq_ignore_ascii_case(b"chunked") {
            return refuse(400, "Transfer-Encoding other than a single chunked");
        }
        if has_header_line(&raw_head(), b"content-length") {
            return refuse(400, "both Content-Length and Transfer-Encoding");
        }
    }
    Ok(())
}

/// At most one Content-Length, and that one all digits (not even equal repeats, which
/// RFC 9110 §8.6 lets a recipient merge: a backend might not).
fn check_lengths(req: &RequestHeader) -> Result<(), Refusal> {
    let mut lengths = req.headers.get_all(CONTENT_LENGTH).iter();
    if let (Some(first), second) = (lengths.next(), lengths.next()) {
        if second.is_some() {
            return refuse(400, "more than one Content-Length");
        }
        if first.is_empty() || !first.as_bytes().iter().all(u8::is_ascii_digit) {
            return refuse(400, "invalid Content-Length");
        }
    }
    Ok(())
}

/// Whether the raw head has a header line named `name` (lower case).
fn has_header_line(head: &[u8], name: &[u8]) -> bool {
    head.split(|b| *b == b'\n').skip(1).any(|line| {
        line.len() > name.len()
            && line[..name.len()].eq_ignore_ascii_case(name)
            && matches!(line[name.len()], b':' | b' ' | b'\t')
    })
}

/// The request's declared body length, when it has one.
pub(crate) fn content_length(req: &RequestHeader) -> Option<u64> {
    let value = req.headers.get(CONTENT_LENGTH)?;
    std::str::from_utf8(value.as_bytes()).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(lines: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("POST", b"/a", None).unwrap();
        for (k, v) in lines {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn framing_rules() {
        let none = || bytes::Bytes::new();
        assert!(check_framing(&req(&[("content-length", "5")]), none).is_ok());
        assert!(check_framing(&req(&[("transfer-encoding", "chunked")]), none).is_ok());
        assert!(check_framing(&req(&[("transfer-encoding", "Chunked")]), none).is_ok());
        let refused = |r: &RequestHeader, raw: &'static [u8]| {
            check_framing(r, || bytes::Bytes::from_static(raw)).is_err()
        };
        assert!(refused(
            &req(&[("content-length", "5"), ("content-length", "5")]),
            b""
        ));
        assert!(refused(&req(&[("content-length", "5, 5")]), b""));
        assert!(refused(&req(&[("content-length", "+5")]), b""));
        assert!(refused(
            &req(&[("transfer-encoding", "gzip, chunked")]),
            b""
        ));
        assert!(refused(
            &req(&[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked")
            ]),
            b""
        ));
        assert!(refused(
            &req(&[("transfer-encoding", "chunked")]),
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
        assert!(!refused(
            &req(&[("transfer-encoding", "chunked")]),
            b"POST / HTTP/1.1\r\nX-Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
    }

    #[test]
    fn hosts() {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        assert!(check_host(&r).is_err(), "HTTP/1.1 needs Host");
        r.set_version(Version::HTTP_10);
        assert!(check_host(&r).is_ok());
        r.insert_header("host", "a.test:8443").unwrap();
        assert!(check_host(&r).is_ok());
        for bad in [
            "a.test/x",
            "a.test:abc",
            "a:b:c",
            "]",
            "[::1",
            "u@a.test",
            "",
        ] {
            r.insert_header("host", bad).unwrap();
            assert!(check_host(&r).is_err(), "{bad}");
        }
        for good in ["[::1]:8443", "1.2.3.4", "a_b.test:"] {
            r.insert_header("host", good).unwrap();
            assert!(check_host(&r).is_ok(), "{good}");
        }
        // As an HTTP/2 request carries it: `:authority` in the URI.
        let mut abs = RequestHeader::build("GET", b"/", None).unwrap();
        abs.set_uri(http::Uri::from_static("https://a.test/"));
        abs.insert_header("host", "b.test").unwrap();
        assert!(check_host(&abs).is_err());
        abs.insert_header("host", "A.test").unwrap();
        assert!(check_host(&abs).is_ok());
        let mut odd = RequestHeader::build("GET", b"/", None).unwrap();
        odd.set_uri(http::Uri::from_static("https://a.test:x/"));
        assert!(check_host(&odd).is_err(), "the http crate takes a.test:x");
    }
}
