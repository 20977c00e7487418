//! Header modifiers (the Gateway API's `RequestHeaderModifier` and
//! `ResponseHeaderModifier`; nginx's `proxy_set_header`, `add_header`,
//! `more_set_headers`): remove, then set, then add.

use http::{HeaderMap, HeaderName, HeaderValue};

/// One `request_headers` or `response_headers` table, validated.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HeaderModifier {
    /// Removed first (every value).
    pub remove: Vec<HeaderName>,
    /// Then replace every value of the name.
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Then appended as a further value.
    pub add: Vec<(HeaderName, HeaderValue)>,
}

/// Which message a modifier changes (the names it may not touch differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Request,
    Response,
}

impl HeaderModifier {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }

    /// Applies the modifier to `headers`.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

/// Why `name` (lower case) may not be changed by a modifier on `side`, if it may not:
/// the message's framing and hop-by-hop headers belong to each connection, and the
/// headers the gateway itself sets must say what the gateway saw.
pub fn forbidden(name: &str, side: Side) -> Option<&'static str> {
    const HOP: &str = "is hop-by-hop: it describes one connection, and the gateway writes its own";
    const FRAMING: &str = "frames the message: the gateway sets it from the body it sends";
    const OWN: &str = "is set by the gateway (from what it saw, for the backend to trust)";
    match name {
        "connection" | "keep-alive" | "proxy-connection" | "te" | "trailer" | "upgrade" => {
            Some(HOP)
        }
        "transfer-encoding" | "content-length" => Some(FRAMING),
        "x-request-id" | "forwarded" => Some(OWN),
        n if n.starts_with("x-forwarded-") => Some(OWN),
        "host" if side == Side::Request => {
            Some("is the request's authority: change it with rewrite = { host = \"...\" }")
        }
        "content-encoding" if side == Side::Response => {
            Some("describes the body's coding: the compression filter sets it")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &'static str) -> HeaderName {
        HeaderName::from_static(n)
    }

    #[test]
    fn remove_then_set_then_add() {
        let m = HeaderModifier {
            remove: vec![name("x-debug"), name("x-env")],
            set: vec![
                (name("x-env"), HeaderValue::from_static("prod")),
                (name("cache-control"), HeaderValue::from_static("no-store")),
            ],
            add: vec![
                (name("x-tag"), HeaderValue::from_static("a")),
                (name("x-env"), HeaderValue::from_static("extra")),
            ],
        };
        let mut h = HeaderMap::new();
        h.append("x-debug", HeaderValue::from_static("1"));
        h.append("x-debug", HeaderValue::from_static("2"));
        h.append("x-env", HeaderValue::from_static("dev"));
        h.append("cache-control", HeaderValue::from_static("max-age=60"));
        h.append("cache-control", HeaderValue::from_static("public"));
        h.append("x-tag", HeaderValue::from_static("z"));
        h.append("x-kept", HeaderValue::from_static("k"));
        m.apply(&mut h);
        assert!(h.get("x-debug").is_none(), "every value removed");
        let env: Vec<_> = h.get_all("x-env").iter().collect();
        assert_eq!(env, ["prod", "extra"], "removed, set, then added to");
        let cc: Vec<_> = h.get_all("cache-control").iter().collect();
        assert_eq!(cc, ["no-store"], "set replaces every value");
        let tag: Vec<_> = h.get_all("x-tag").iter().collect();
        assert_eq!(tag, ["z", "a"], "add appends");
        assert_eq!(h["x-kept"], "k");
        assert!(HeaderModifier::default().is_empty());
        assert!(!m.is_empty());
    }

    #[test]
    fn own_and_hop_by_hop_headers_are_refused() {
        for n in [
            "connection",
            "keep-alive",
            "te",
            "upgrade",
            "transfer-encoding",
            "content-length",
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-forwarded-anything",
            "forwarded",
            "x-request-id",
        ] {
            assert!(forbidden(n, Side::Request).is_some(), "{n}");
            assert!(forbidden(n, Side::Response).is_some(), "{n}");
        }
        assert!(forbidden("host", Side::Request).is_some());
        assert!(forbidden("host", Side::Response).is_none());
        assert!(forbidden("content-encoding", Side::Response).is_some());
        for n in [
            "x-env",
            "server",
            "cache-control",
            "x-forwarded",
            "authorization",
        ] {
            assert!(forbidden(n, Side::Request).is_none(), "{n}");
            assert!(forbidden(n, Side::Response).is_none(), "{n}");
        }
    }
}
