//! Request checks made before routing: the target, host and length rules the protocol
//! layers leave to the gateway, and the listener's size limits. A refused request never
//! reaches a backend. (HTTP/1's framing rules are the codec's: a head that breaks them
//! never gets this far.)

use http::header::{CONTENT_LENGTH, HOST};
use http::Version;

use super::downstream::Request;
use super::uri::{self, is_authority, Shape};
use super::HeadFacts;
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

/// Checks `req` against the HTTP rules and `edge`'s limits; `facts` has what the
/// connection layer checked on the bytes sent (an HTTP/1 request line). Returns the
/// shape of the request's path.
pub(crate) fn check_request(
    req: &Request,
    edge: &Edge,
    facts: HeadFacts,
) -> Result<Shape, Refusal> {
    let target = req.uri.path_and_query().map_or("", |pq| pq.as_str());
    if target.len() > edge.max_uri_length {
        return Err(Refusal {
            status: 414,
            reason: "request target longer than max_uri_length",
        });
    }
    if facts.head_len.unwrap_or_else(|| head_size(req)) > edge.max_header_size {
        return Err(Refusal {
            status: 431,
            reason: "request head larger than max_header_size",
        });
    }
    let shape = match facts.line {
        Some(line) => line,
        // HTTP/2: `:path` as the http crate took it (it has already refused controls
        // and spaces).
        None => uri::target(req.method.as_str().as_bytes(), target.as_bytes(), false),
    }
    .map_err(|reason| Refusal {
        status: 400,
        reason,
    })?;
    check_host(req)?;
    if req.version == Version::HTTP_2 {
        // h2 refuses conflicting lengths; equal repeats would go upstream as they came.
        check_lengths(req)?;
    }
    Ok(shape)
}

/// An HTTP/2 head's size as an HTTP/1 head would be, near enough: each field costs its
/// name, value and `: ` + CRLF.
fn head_size(req: &Request) -> usize {
    let target = req.uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    let line = req.method.as_str().len() + target + 12;
    req.headers
        .iter()
        .fold(line, |n, (k, v)| n + k.as_str().len() + v.len() + 4)
}

fn check_host(req: &Request) -> Result<(), Refusal> {
    let mut hosts = req.headers.get_all(HOST).iter();
    let (host, second) = (hosts.next(), hosts.next());
    if second.is_some() {
        return refuse(400, "more than one Host header");
    }
    let authority = req.uri.authority();
    if host.is_none() && authority.is_none() {
        match req.version {
            Version::HTTP_11 => return refuse(400, "HTTP/1.1 request without Host"),
            Version::HTTP_2 => return refuse(400, "HTTP/2 request without :authority or Host"),
            _ => {}
        }
    }
    // An HTTP/1.0 absolute-form target has no Host to be checked against.
    if host.is_none() && req.version != Version::HTTP_2 && authority.is_some() {
        return refuse(400, "absolute-form target without Host");
    }
    // HTTP/2 `:authority` (the http crate's parser takes more than a host and port).
    if let Some(authority) = authority {
        if !is_authority(authority.as_str().as_bytes()) {
            return refuse(400, "invalid :authority");
        }
    }
    if let Some(host) = host {
        if !is_authority(host.as_bytes()) {
            return refuse(400, "invalid Host header");
        }
        // HTTP/2 `:authority` or an absolute-form target must name the same host.
        if let Some(authority) = authority {
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

/// At most one Content-Length, and that one all digits (not even equal repeats, which
/// RFC 9110 §8.6 lets a recipient merge: a backend might not).
fn check_lengths(req: &Request) -> Result<(), Refusal> {
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

/// The request's declared body length, when it has one.
pub(crate) fn content_length(req: &Request) -> Option<u64> {
    let value = req.headers.get(CONTENT_LENGTH)?;
    std::str::from_utf8(value.as_bytes()).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue, Method, Uri};

    fn req(uri: &'static str, version: Version, lines: &[(&str, &str)]) -> Request {
        let mut headers = HeaderMap::new();
        for (k, v) in lines {
            let name = http::header::HeaderName::from_bytes(k.as_bytes()).unwrap();
            headers.append(name, HeaderValue::from_str(v).unwrap());
        }
        Request {
            method: Method::GET,
            uri: Uri::from_static(uri),
            version,
            headers,
        }
    }

    #[test]
    fn http2_lengths() {
        let h2 = |lines: &[(&str, &str)]| check_lengths(&req("https://a/", Version::HTTP_2, lines));
        assert!(h2(&[("content-length", "5")]).is_ok());
        assert!(h2(&[("content-length", "5"), ("content-length", "5")]).is_err());
        assert!(h2(&[("content-length", "+5")]).is_err());
    }

    #[test]
    fn hosts() {
        let v11 = |lines: &[(&str, &str)]| check_host(&req("/", Version::HTTP_11, lines));
        assert!(v11(&[]).is_err(), "HTTP/1.1 needs Host");
        assert!(check_host(&req("/", Version::HTTP_10, &[])).is_ok());
        assert!(v11(&[("host", "a.test:8443")]).is_ok());
        for bad in [
            "a.test/x",
            "a.test:abc",
            "a:b:c",
            "]",
            "[::1",
            "u@a.test",
            "",
        ] {
            assert!(v11(&[("host", bad)]).is_err(), "{bad}");
        }
        for good in ["[::1]:8443", "1.2.3.4", "a_b.test:"] {
            assert!(v11(&[("host", good)]).is_ok(), "{good}");
        }
        assert!(v11(&[("host", "a"), ("host", "a")]).is_err());
        // As an HTTP/2 request carries it: `:authority` in the URI.
        let h2 = |uri, lines: &[(&str, &str)]| check_host(&req(uri, Version::HTTP_2, lines));
        assert!(h2("https://a.test/", &[("host", "b.test")]).is_err());
        assert!(h2("https://a.test/", &[("host", "A.test")]).is_ok());
        assert!(
            h2("https://a.test:x/", &[]).is_err(),
            "the http crate takes a.test:x"
        );
        assert!(h2("/", &[]).is_err(), "neither :authority nor Host");
        assert!(h2("/", &[("host", "a.test")]).is_ok());
        // HTTP/1.0 absolute-form without Host.
        assert!(check_host(&req("http://a.test/", Version::HTTP_10, &[])).is_err());
    }
}
