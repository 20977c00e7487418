//! Redirects answered by the gateway (the Gateway API's `RequestRedirect`; nginx's
//! `return 301 https://...$request_uri` and `rewrite ... permanent`): `Location` is
//! the request's own URL with the configured parts replaced.

use std::fmt::Write as _;

use http::StatusCode;

use super::rewrite::PathRewrite;

/// A validated `redirect = { ... }`.
#[derive(Debug, Clone, PartialEq)]
pub struct Redirect {
    pub scheme: Option<Scheme>,
    /// Lower case, without port.
    pub host: Option<String>,
    pub port: Option<u16>,
    pub path: Option<PathRewrite>,
    /// 301, 302, 303, 307 or 308.
    pub status: StatusCode,
}

/// The redirect statuses a route may answer with.
pub const STATUSES: [u16; 5] = [301, 302, 303, 307, 308];
/// `status` when not given (nginx's `rewrite ... redirect` and the Gateway API's default).
pub const DEFAULT_STATUS: StatusCode = StatusCode::FOUND;

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Self::Http => 80,
            Self::Https => 443,
        }
    }
}

/// The parts of a request a `Location` is built from.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// The scheme the client used (the listener's).
    pub scheme: Scheme,
    /// `Host` (or `:authority`) as sent, port included; `None` when there was none.
    pub authority: Option<&'a str>,
    /// The normalized path the route matched.
    pub path: &'a str,
    /// The query without `?`; empty: none.
    pub query: &'a str,
}

impl Redirect {
    /// Writes the `Location` for `req` into `out`. The port is the configured one;
    /// else, when the scheme changes, none (the new scheme's default); else the one
    /// the client sent. A default port is left out. A request without a host, to a
    /// redirect that names none, gets a path-only (relative) `Location`.
    pub fn location(&self, req: &Origin<'_>, out: &mut String) {
        let (req_host, req_port) = match req.authority {
            Some(a) => split_authority(a),
            None => ("", None),
        };
        let host = self.host.as_deref().unwrap_or(req_host);
        let scheme = self.scheme.unwrap_or(req.scheme);
        let port = match (self.port, self.scheme) {
            (Some(p), _) => Some(p),
            (None, Some(_)) => None,
            (None, None) => req_port,
        }
        .filter(|&p| p != scheme.default_port());
        out.reserve(
            scheme.as_str().len() + 3 + host.len() + 6 + req.path.len() + req.query.len() + 2,
        );
        if !host.is_empty() {
            out.push_str(scheme.as_str());
            out.push_str("://");
            out.push_str(host);
            if let Some(p) = port {
                // Writing to a String cannot fail.
                let _ = write!(out, ":{p}");
            }
        }
        match &self.path {
            Some(rewrite) => rewrite.write(req.path, out),
            None => out.push_str(req.path),
        }
        if !req.query.is_empty() {
            out.push('?');
            out.push_str(req.query);
        }
    }
}

/// `host[:port]` (an IPv6 literal keeps its brackets); a port that is not a number is
/// dropped.
fn split_authority(authority: &str) -> (&str, Option<u16>) {
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let split = if authority.starts_with('[') {
        authority
            .find(']')
            .map(|end| authority.split_at(end + 1))
            .map(|(h, rest)| (h, rest.strip_prefix(':')))
    } else {
        Some(match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        })
    };
    match split {
        Some((host, port)) => (host, port.and_then(|p| p.parse().ok())),
        None => (authority, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirect() -> Redirect {
        Redirect {
            scheme: None,
            host: None,
            port: None,
            path: None,
            status: DEFAULT_STATUS,
        }
    }

    fn location(r: &Redirect, scheme: Scheme, authority: Option<&str>, target: &str) -> String {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let mut out = String::new();
        r.location(
            &Origin {
                scheme,
                authority,
                path,
                query,
            },
            &mut out,
        );
        out
    }

    #[test]
    fn the_request_url_with_parts_replaced() {
        let http = Scheme::Http;
        let to_https = Redirect {
            scheme: Some(Scheme::Https),
            ..redirect()
        };
        assert_eq!(
            location(&to_https, http, Some("a.test:8080"), "/x?y=1"),
            "https://a.test/x?y=1",
            "a new scheme: its default port"
        );
        let with_port = Redirect {
            port: Some(8443),
            ..to_https.clone()
        };
        assert_eq!(
            location(&with_port, http, Some("a.test"), "/"),
            "https://a.test:8443/"
        );
        let default_port = Redirect {
            port: Some(443),
            ..to_https
        };
        assert_eq!(
            location(&default_port, http, Some("a.test"), "/"),
            "https://a.test/"
        );
        let new_host = Redirect {
            host: Some("new.example.com".into()),
            path: Some(PathRewrite::Prefix {
                matched: "/old".into(),
                with: "/new".into(),
            }),
            ..redirect()
        };
        assert_eq!(
            location(
                &new_host,
                Scheme::Https,
                Some("old.example.com:8443"),
                "/old/a?b"
            ),
            "https://new.example.com:8443/new/a?b",
            "the client's port is kept when the scheme stays"
        );
        assert_eq!(
            location(
                &new_host,
                Scheme::Https,
                Some("old.example.com:443"),
                "/old"
            ),
            "https://new.example.com/new"
        );
        let full = Redirect {
            path: Some(PathRewrite::Full("/login".into())),
            ..redirect()
        };
        assert_eq!(
            location(&full, http, Some("[::1]:81"), "/a?r=1"),
            "http://[::1]:81/login?r=1"
        );
        assert_eq!(
            location(&full, http, None, "/a"),
            "/login",
            "no host: a relative Location"
        );
    }

    #[test]
    fn authorities_split() {
        assert_eq!(split_authority("a.test:8080"), ("a.test", Some(8080)));
        assert_eq!(split_authority("a.test"), ("a.test", None));
        assert_eq!(split_authority("[::1]:8080"), ("[::1]", Some(8080)));
        assert_eq!(split_authority("[::1]"), ("[::1]", None));
        assert_eq!(split_authority("u@a.test:1"), ("a.test", Some(1)));
        assert_eq!(split_authority("a.test:x"), ("a.test", None));
    }
}
