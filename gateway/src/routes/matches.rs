//! What a route matches: hosts, a path, a method, headers and query parameters
//! (the Gateway API's `HTTPRouteMatch`), validated, and how one request is checked
//! against the conditions other than host and path.

use http::{HeaderMap, HeaderName, Method};

/// A route's conditions. A request matches when its host matches one of `hosts` (or
/// `hosts` is empty), its path matches `path`, and every other condition holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Matches {
    /// Empty: any host.
    pub hosts: Vec<HostPattern>,
    pub path: PathMatch,
    pub method: Option<Method>,
    pub headers: Vec<HeaderMatch>,
    pub query: Vec<QueryMatch>,
}

impl Default for Matches {
    fn default() -> Self {
        Self {
            hosts: Vec::new(),
            path: PathMatch::Prefix("/".to_owned()),
            method: None,
            headers: Vec::new(),
            query: Vec::new(),
        }
    }
}

/// How a route matches the request's host (lower case, without port).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    /// `a.example.com`
    Exact(String),
    /// `*.example.com` is kept as `.example.com`: any name ending with it (one or more
    /// labels before it).
    Suffix(String),
}

/// How a route matches the normalized path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathMatch {
    /// A plain string prefix, as nginx's `location /prefix`.
    Prefix(String),
    /// The whole path, as nginx's `location = /path`.
    Exact(String),
    /// A regular expression searched in the path (anchor it with `^` and `$`), as
    /// nginx's `location ~`. Compiled by the route table.
    Regex(String),
}

/// A condition on a request header: some value of `name` matches.
#[derive(Debug, Clone, PartialEq)]
pub struct HeaderMatch {
    pub name: HeaderName,
    pub value: ValueMatch,
}

/// A condition on a query parameter: some occurrence of `name` has a matching value.
/// Names and values are compared as the client sent them (not percent-decoded), as
/// nginx's `$arg_NAME` holds them.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryMatch {
    pub name: String,
    pub value: ValueMatch,
}

/// How a header or query value is compared.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueMatch {
    /// Byte for byte (case-sensitive).
    Exact(Box<[u8]>),
    /// Searched in the value.
    Regex(Pattern),
}

impl ValueMatch {
    /// Whether `value` matches.
    pub fn matches(&self, value: &[u8]) -> bool {
        match self {
            Self::Exact(want) => **want == *value,
            Self::Regex(p) => p.regex.is_match(value),
        }
    }
}

/// A compiled regular expression with its source (configs compare by source).
#[derive(Debug, Clone)]
pub struct Pattern {
    pub source: String,
    pub regex: regex::bytes::Regex,
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// The compiled size a regular expression may take (the `regex` crate's NFA size
/// limit; its default is 10 MiB). Enough for any route pattern; `\w{1000}`-style
/// repetitions are refused instead of growing every lookup's automaton.
pub const REGEX_SIZE_LIMIT: usize = 256 * 1024;
/// How deeply groups and repetitions may nest.
pub const REGEX_NEST_LIMIT: u32 = 64;

/// Compiles `source` as routes match it: bytes, ASCII classes (`\w`, `\d`, `.` match
/// single bytes, as nginx's PCRE without UTF mode), within [`REGEX_SIZE_LIMIT`].
pub fn compile(source: &str) -> Result<Pattern, regex::Error> {
    let regex = regex::bytes::RegexBuilder::new(source)
        .unicode(false)
        .size_limit(REGEX_SIZE_LIMIT)
        .nest_limit(REGEX_NEST_LIMIT)
        .build()?;
    Ok(Pattern {
        source: source.to_owned(),
        regex,
    })
}

impl Matches {
    /// Whether the request's method, headers and query meet this route's conditions
    /// (host and path are the table's part).
    pub(super) fn rest_match(&self, method: &Method, headers: &HeaderMap, query: &str) -> bool {
        self.method.as_ref().is_none_or(|m| m == method)
            && self.headers.iter().all(|h| {
                headers
                    .get_all(&h.name)
                    .iter()
                    .any(|v| h.value.matches(v.as_bytes()))
            })
            && self.query.iter().all(|q| {
                query_pairs(query)
                    .any(|(name, value)| name == q.name.as_bytes() && q.value.matches(value))
            })
    }

    /// The order of routes that share a host and path: a method match first, then the
    /// most header matches, then the most query matches (file order after that).
    pub(super) fn specificity(&self) -> (bool, usize, usize) {
        (self.method.is_some(), self.headers.len(), self.query.len())
    }
}

/// The `name=value` pairs of a query string (`a=1&b&c=`: `b` has an empty value).
pub fn query_pairs(query: &str) -> impl Iterator<Item = (&[u8], &[u8])> {
    query
        .as_bytes()
        .split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &pair[..0]),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn query_pairs_split_on_ampersands() {
        let pairs: Vec<_> = query_pairs("a=1&&b&c=&d=x=y").collect();
        let want: Vec<(&[u8], &[u8])> =
            vec![(b"a", b"1"), (b"b", b""), (b"c", b""), (b"d", b"x=y")];
        assert_eq!(pairs, want);
        assert_eq!(query_pairs("").count(), 0);
    }

    #[test]
    fn every_condition_must_hold() {
        let m = Matches {
            method: Some(Method::POST),
            headers: vec![
                HeaderMatch {
                    name: HeaderName::from_static("x-canary"),
                    value: ValueMatch::Exact(b"always"[..].into()),
                },
                HeaderMatch {
                    name: HeaderName::from_static("x-env"),
                    value: ValueMatch::Regex(compile("^(dev|qa)$").unwrap()),
                },
            ],
            query: vec![QueryMatch {
                name: "debug".into(),
                value: ValueMatch::Exact(b"1"[..].into()),
            }],
            ..Matches::default()
        };
        let good = headers(&[("x-canary", "always"), ("x-env", "qa")]);
        assert!(m.rest_match(&Method::POST, &good, "a=b&debug=1"));
        assert!(!m.rest_match(&Method::GET, &good, "debug=1"), "method");
        assert!(
            !m.rest_match(&Method::POST, &good, "debug=2"),
            "query value"
        );
        assert!(
            !m.rest_match(&Method::POST, &good, "xdebug=1"),
            "query name"
        );
        let other_env = headers(&[("x-canary", "always"), ("x-env", "prod")]);
        assert!(!m.rest_match(&Method::POST, &other_env, "debug=1"), "regex");
        let anchored = headers(&[("x-canary", "always"), ("x-env", "qa2")]);
        assert!(
            !m.rest_match(&Method::POST, &anchored, "debug=1"),
            "anchors"
        );
        let case = headers(&[("x-canary", "Always"), ("x-env", "qa")]);
        assert!(
            !m.rest_match(&Method::POST, &case, "debug=1"),
            "values are case-sensitive"
        );
        let repeated = headers(&[
            ("x-canary", "never"),
            ("x-canary", "always"),
            ("x-env", "dev"),
        ]);
        assert!(
            m.rest_match(&Method::POST, &repeated, "debug=0&debug=1"),
            "any value"
        );
        assert!(Matches::default().rest_match(&Method::DELETE, &HeaderMap::new(), ""));
    }

    #[test]
    fn regexes_are_searched_on_bytes_within_a_size_limit() {
        let p = compile(r"/v[0-9]+/").unwrap();
        assert!(p.regex.is_match(b"/api/v2/items"), "searched, not anchored");
        assert!(compile(r"\w").unwrap().regex.is_match(b"a"));
        assert!(
            !compile(r"^\w$").unwrap().regex.is_match("é".as_bytes()),
            "ASCII classes"
        );
        assert!(compile("a{2000}{2000}").is_err(), "over the size limit");
        assert!(compile("(").is_err());
        assert_eq!(compile("^/a").unwrap(), compile("^/a").unwrap());
    }
}
