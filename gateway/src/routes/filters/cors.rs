//! CORS (the Gateway API's `CORS` filter; nginx's `add_header Access-Control-...`
//! blocks): preflights that match the policy are answered by the gateway, actual
//! requests from an allowed origin get the `Access-Control-*` response headers.

use std::time::Duration;

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN,
};
use http::{HeaderMap, HeaderValue, Method};

/// A validated `cors = { ... }`.
#[derive(Debug, Clone, PartialEq)]
pub struct Cors {
    origins: Vec<OriginPattern>,
    /// `None`: `"*"` (the requested method is echoed).
    methods: Option<HeaderValue>,
    /// `None`: `"*"` (the requested headers are echoed); empty lists are left out.
    headers: Option<HeaderValue>,
    expose: Option<HeaderValue>,
    credentials: bool,
    max_age: Option<HeaderValue>,
}

/// The methods allowed when `allow_methods` is not given: the CORS-safelisted ones.
pub const DEFAULT_METHODS: [&str; 3] = ["GET", "HEAD", "POST"];

/// One `allow_origins` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPattern {
    /// `"*"`: any origin.
    Any,
    /// `https://app.example.com` (lower case).
    Exact(String),
    /// `https://*.example.com:8443`: `scheme://`, then one or more labels, then
    /// `suffix` (`.example.com:8443`, lower case).
    Wildcard { scheme: String, suffix: String },
}

/// Why `"*"` may not be used with `allow_credentials`.
pub const STAR_WITH_CREDENTIALS: &str =
    "cannot be used with allow_credentials = true (browsers refuse it or take it literally): list them";

impl OriginPattern {
    /// Parses an `allow_origins` entry: `*`, or `scheme://host[:port]` where the host
    /// may start with `*.`.
    pub fn parse(value: &str) -> Result<Self, &'static str> {
        if value == "*" {
            return Ok(Self::Any);
        }
        let lower = value.to_ascii_lowercase();
        let Some((scheme, rest)) = lower.split_once("://") else {
            return Err(
                "must be \"*\" or scheme://host[:port], such as \"https://app.example.com\"",
            );
        };
        let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
        if !scheme_ok {
            return Err("has no valid scheme (such as https)");
        }
        if rest.contains(['/', '?', '#', '@']) {
            return Err("is an origin: scheme://host[:port], with no path, query or user");
        }
        let (host, port) = if rest.starts_with('[') {
            match rest.find(']') {
                Some(end) if rest[end + 1..].is_empty() || rest[end + 1..].starts_with(':') => {
                    (&rest[..=end], rest[end + 1..].strip_prefix(':'))
                }
                _ => return Err("has an IPv6 address without its closing ']', or text after it"),
            }
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        if port.is_some_and(|p| !p.parse::<u16>().is_ok_and(|n| n > 0) || p.starts_with('+')) {
            return Err("has a port that is not a number from 1 to 65535");
        }
        let name_ok = |h: &str| {
            !h.is_empty()
                && h.split('.').all(|label| {
                    !label.is_empty()
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                })
        };
        let ipv6_ok = |h: &str| {
            h.len() > 2
                && h[1..h.len() - 1]
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b":.".contains(&b))
        };
        if let Some(parent) = host.strip_prefix("*.") {
            if !name_ok(parent) {
                return Err("has a wildcard that is not followed by a host name (\"https://*.example.com\")");
            }
            let mut suffix = format!(".{parent}");
            if let Some(p) = port {
                suffix.push(':');
                suffix.push_str(p);
            }
            return Ok(Self::Wildcard {
                scheme: format!("{scheme}://"),
                suffix,
            });
        }
        if host.contains('*') {
            return Err(
                "may only have a wildcard as its whole first label (\"https://*.example.com\")",
            );
        }
        if !(name_ok(host) || host.starts_with('[') && ipv6_ok(host)) {
            return Err("has a host that is not a host name or IP address");
        }
        Ok(Self::Exact(lower))
    }

    /// Whether the request's `Origin` value is covered.
    pub fn covers(&self, origin: &[u8]) -> bool {
        match self {
            Self::Any => origin != b"null",
            Self::Exact(o) => origin.eq_ignore_ascii_case(o.as_bytes()),
            Self::Wildcard { scheme, suffix } => {
                let (scheme, suffix) = (scheme.as_bytes(), suffix.as_bytes());
                if origin.len() <= scheme.len() + suffix.len()
                    || !origin[..scheme.len()].eq_ignore_ascii_case(scheme)
                    || !origin[origin.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                {
                    return false;
                }
                let labels = &origin[scheme.len()..origin.len() - suffix.len()];
                !labels.starts_with(b".")
                    && !labels.ends_with(b".")
                    && labels
                        .iter()
                        .all(|&b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            }
        }
    }
}

/// What a request to a CORS route is.
#[derive(Debug)]
pub enum CorsRequest {
    /// No `Origin`, or one outside the policy: nothing to do (a preflight from such an
    /// origin goes to the backend like any request).
    Pass,
    /// A request from an allowed origin: its response gets the CORS headers.
    Actual(HeaderValue),
    /// A preflight from an allowed origin: answer `204` with these headers.
    Preflight(HeaderMap),
}

impl Cors {
    /// The policy. `methods`, `headers`, `expose`: lists of tokens, `"*"` among them
    /// meaning any (the config layer refuses `"*"` with `credentials`).
    pub fn new(
        origins: Vec<OriginPattern>,
        methods: &[String],
        headers: &[String],
        expose: &[String],
        credentials: bool,
        max_age: Option<Duration>,
    ) -> Self {
        let list = |items: &[String]| -> Option<HeaderValue> {
            (!items.is_empty())
                .then(|| HeaderValue::from_str(&items.join(", ")).ok())
                .flatten()
        };
        let star = |items: &[String]| items.iter().any(|m| m == "*");
        Self {
            origins,
            methods: if star(methods) { None } else { list(methods) },
            headers: if star(headers) {
                None
            } else {
                Some(list(headers).unwrap_or(HeaderValue::from_static("")))
            },
            expose: list(expose),
            credentials,
            max_age: max_age.map(|d| HeaderValue::from(d.as_secs())),
        }
    }

    fn allows(&self, origin: &HeaderValue) -> bool {
        self.origins.iter().any(|o| o.covers(origin.as_bytes()))
    }

    /// Classifies a request by its method and headers.
    pub fn request(&self, method: &Method, headers: &HeaderMap) -> CorsRequest {
        let Some(origin) = headers.get(ORIGIN).filter(|o| self.allows(o)) else {
            return CorsRequest::Pass;
        };
        let requested = headers.get(ACCESS_CONTROL_REQUEST_METHOD);
        let (&Method::OPTIONS, Some(requested)) = (method, requested) else {
            return CorsRequest::Actual(origin.clone());
        };
        let mut answer = HeaderMap::with_capacity(8);
        answer.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        let methods = self.methods.as_ref().unwrap_or(requested);
        answer.insert(ACCESS_CONTROL_ALLOW_METHODS, methods.clone());
        let allow_headers = match &self.headers {
            Some(list) => Some(list).filter(|l| !l.is_empty()),
            None => headers.get(ACCESS_CONTROL_REQUEST_HEADERS),
        };
        if let Some(list) = allow_headers {
            answer.insert(ACCESS_CONTROL_ALLOW_HEADERS, list.clone());
        }
        if self.credentials {
            answer.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if let Some(age) = &self.max_age {
            answer.insert(ACCESS_CONTROL_MAX_AGE, age.clone());
        }
        answer.insert(
            http::header::VARY,
            HeaderValue::from_static(
                "origin, access-control-request-method, access-control-request-headers",
            ),
        );
        CorsRequest::Preflight(answer)
    }

    /// Adds the CORS headers to the response of an actual request from `origin` (an
    /// allowed one; `None`: the request had none or one outside the policy). Every
    /// response of the route varies by `Origin`.
    pub fn response(&self, origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
        super::vary(headers, "origin");
        let Some(origin) = origin else {
            return;
        };
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        if self.credentials {
            headers.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if let Some(expose) = &self.expose {
            headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
        }
    }
}

#[cfg(test)]
mod tests;
