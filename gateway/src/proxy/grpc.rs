//! gRPC at the edge: telling a gRPC call from other requests, its `grpc-timeout` as the
//! call's deadline, and the gateway's own refusals and failures answered as gRPC
//! statuses (a trailers-only response with HTTP 200, as gRPC clients read them) instead
//! of JSON bodies.

use std::time::Duration;

use http::header::{HeaderName, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue};

const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
pub(crate) const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
pub(crate) const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// Whether a request is a gRPC call: `content-type: application/grpc` or
/// `application/grpc+FORMAT` (`;` parameters allowed).
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return false;
    };
    let v = value.as_bytes();
    let prefix = b"application/grpc";
    v.len() >= prefix.len()
        && v[..prefix.len()].eq_ignore_ascii_case(prefix)
        && matches!(v.get(prefix.len()), None | Some(b'+' | b';'))
}

/// The call's `grpc-timeout` (`TimeoutValue TimeoutUnit`: at most 8 digits, then one of
/// `H M S m u n`); `None` when absent or malformed (then the call has no deadline).
pub(crate) fn timeout(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(GRPC_TIMEOUT)?.as_bytes();
    let (&unit, digits) = v.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The gRPC status code standing for one of the gateway's HTTP answers, and its
/// message: no route is UNIMPLEMENTED, a limit RESOURCE_EXHAUSTED, no backend (or one
/// that failed) UNAVAILABLE, a timeout DEADLINE_EXCEEDED.
pub(crate) fn status_for(http: u16) -> (&'static str, &'static str) {
    match http {
        400 | 414 => ("13", "bad request"),
        401 => ("16", "unauthenticated"),
        403 => ("7", "forbidden"),
        404 => ("12", "no route"),
        405 | 421 => ("12", "not served here"),
        413 => ("8", "request message too large"),
        429 => ("8", "too many requests"),
        431 => ("8", "request headers too large"),
        502 => ("14", "bad gateway"),
        503 => ("14", "service unavailable"),
        504 => ("4", "deadline exceeded"),
        300..=399 => ("12", "redirected"),
        _ => ("2", "internal error"),
    }
}

/// The fields of a trailers-only answer for the gateway's HTTP `status`.
pub(crate) fn answer_fields(status: u16) -> [(HeaderName, HeaderValue); 3] {
    let (code, message) = status_for(status);
    [
        (CONTENT_TYPE, HeaderValue::from_static("application/grpc")),
        (GRPC_STATUS, HeaderValue::from_static(code)),
        (GRPC_MESSAGE, HeaderValue::from_static(message)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: &'static str, value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn grpc_calls_are_told_by_their_content_type() {
        assert!(is_grpc(&with("content-type", "application/grpc")));
        assert!(is_grpc(&with("content-type", "application/grpc+proto")));
        assert!(is_grpc(&with("content-type", "Application/GRPC;charset=x")));
        assert!(!is_grpc(&with("content-type", "application/grpc-web")));
        assert!(!is_grpc(&with("content-type", "application/json")));
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn timeouts_parse_by_the_grpc_spec() {
        let t = |v| timeout(&with("grpc-timeout", v));
        assert_eq!(t("100m"), Some(Duration::from_millis(100)));
        assert_eq!(t("2S"), Some(Duration::from_secs(2)));
        assert_eq!(t("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(t("5M"), Some(Duration::from_secs(300)));
        assert_eq!(t("250u"), Some(Duration::from_micros(250)));
        assert_eq!(t("99999999n"), Some(Duration::from_nanos(99_999_999)));
        assert_eq!(t("123456789m"), None, "at most 8 digits");
        assert_eq!(t("10"), None, "a unit is required");
        assert_eq!(t("m"), None);
        assert_eq!(t("1x"), None);
        assert_eq!(t("-1S"), None);
    }

    #[test]
    fn gateway_answers_map_to_grpc_codes() {
        assert_eq!(status_for(404).0, "12");
        assert_eq!(status_for(429).0, "8");
        assert_eq!(status_for(502).0, "14");
        assert_eq!(status_for(503).0, "14");
        assert_eq!(status_for(504).0, "4");
        assert_eq!(status_for(403).0, "7");
        assert_eq!(status_for(500).0, "2");
    }
}
