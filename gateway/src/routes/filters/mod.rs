//! The filters a route can run, one file each: each holds its validated config type
//! (with the checks the config layer runs on its parts), its runtime over `http`
//! types, and its tests.

pub mod compression;
pub mod cors;
pub mod headers;
pub mod in_flight;
pub mod rate_limit;
pub mod redirect;
pub mod rewrite;
pub mod weights;

use http::header::VARY;
use http::{HeaderMap, HeaderValue};

/// Adds `token` (lower case) to the response's `Vary` unless it is listed already or
/// `Vary: *` is there.
pub(crate) fn vary(headers: &mut HeaderMap, token: &'static str) {
    let listed = headers.get_all(VARY).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .map(<[u8]>::trim_ascii)
            .any(|t| t == b"*" || t.eq_ignore_ascii_case(token.as_bytes()))
    });
    if !listed {
        headers.append(VARY, HeaderValue::from_static(token));
    }
}

/// Whether `value` is an RFC 9110 token (header names, methods, codings).
pub fn is_token(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vary_is_added_once() {
        let mut h = HeaderMap::new();
        vary(&mut h, "origin");
        vary(&mut h, "origin");
        assert_eq!(h.get_all(VARY).iter().count(), 1);
        h.insert(VARY, HeaderValue::from_static("Cookie, Accept-Encoding"));
        vary(&mut h, "accept-encoding");
        assert_eq!(h.get_all(VARY).iter().count(), 1);
        vary(&mut h, "origin");
        let all: Vec<_> = h.get_all(VARY).iter().collect();
        assert_eq!(all, ["Cookie, Accept-Encoding", "origin"]);
        h.insert(VARY, HeaderValue::from_static("*"));
        vary(&mut h, "origin");
        assert_eq!(h.get_all(VARY).iter().count(), 1, "* covers everything");
    }

    #[test]
    fn tokens() {
        assert!(is_token("x-canary"));
        assert!(is_token("X_Env.1~"));
        assert!(!is_token(""));
        assert!(!is_token("x canary"));
        assert!(!is_token("x:y"));
        assert!(!is_token("é"));
    }
}
