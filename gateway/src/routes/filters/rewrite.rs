//! URL rewrite (the Gateway API's `URLRewrite`; nginx's `proxy_pass` with a URI part
//! and `rewrite ... break`): the path the backend gets, and optionally its Host.

use http::HeaderValue;

/// A validated `rewrite = { ... }`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rewrite {
    pub path: Option<PathRewrite>,
    /// The `Host` sent upstream instead of the client's.
    pub host: Option<HeaderValue>,
}

/// How a path is replaced (by `rewrite` and by `redirect`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathRewrite {
    /// The route's matched prefix `matched` becomes `with`; the rest of the path stays.
    Prefix { matched: String, with: String },
    /// The whole path becomes this.
    Full(String),
}

impl PathRewrite {
    /// Writes the new path for `path` (which the route matched) into `out`.
    ///
    /// A prefix replacement does not double the slash between the parts: with prefix
    /// `/api` replaced by `/`, `/api/x` becomes `/x`, and by `/v2/`, `/v2/x`.
    pub fn write(&self, path: &str, out: &mut String) {
        match self {
            Self::Full(p) => out.push_str(p),
            Self::Prefix { matched, with } => {
                let rest = path.strip_prefix(matched.as_str()).unwrap_or(path);
                let rest = if with.ends_with('/') {
                    rest.strip_prefix('/').unwrap_or(rest)
                } else {
                    rest
                };
                out.push_str(with);
                out.push_str(rest);
            }
        }
    }
}

impl Rewrite {
    /// The request target (path and query) to send upstream for a request to `path`
    /// with `query` (without `?`; empty: none), written into `out`; false when the
    /// path is not rewritten (then `out` is untouched).
    pub fn target(&self, path: &str, query: &str, out: &mut String) -> bool {
        let Some(rewrite) = &self.path else {
            return false;
        };
        out.reserve(path.len() + query.len() + 16);
        rewrite.write(path, out);
        if !query.is_empty() {
            out.push('?');
            out.push_str(query);
        }
        true
    }
}

/// Why `value` cannot be a rewritten path, if it cannot: it must be a path in normal
/// form (what the backend would get for a request it matched), starting with `/`.
pub fn bad_path(value: &str) -> Option<&'static str> {
    if !value.starts_with('/') {
        return Some("must start with '/'");
    }
    let ok = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%".contains(&b);
    if !value.bytes().all(ok) {
        return Some("may hold only RFC 3986 path characters (percent-encode the others)");
    }
    if value.split('/').any(|s| s == "." || s == "..") {
        return Some("may not hold '.' or '..' segments");
    }
    let bytes = value.as_bytes();
    for (i, _) in value.match_indices('%') {
        let hex = bytes.get(i + 1..i + 3);
        if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
            return Some("'%' must be followed by two hex digits");
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(matched: &str, with: &str) -> Rewrite {
        Rewrite {
            path: Some(PathRewrite::Prefix {
                matched: matched.into(),
                with: with.into(),
            }),
            host: None,
        }
    }

    fn target(r: &Rewrite, path: &str, query: &str) -> Option<String> {
        let mut out = String::new();
        r.target(path, query, &mut out).then_some(out)
    }

    #[test]
    fn the_matched_prefix_is_replaced_and_the_query_kept() {
        let r = prefix("/api", "/v2");
        assert_eq!(
            target(&r, "/api/items", "a=1&b").as_deref(),
            Some("/v2/items?a=1&b")
        );
        assert_eq!(target(&r, "/api", "").as_deref(), Some("/v2"));
        assert_eq!(
            target(&r, "/apix", "").as_deref(),
            Some("/v2x"),
            "a string prefix, as nginx"
        );
        let root = prefix("/api", "/");
        assert_eq!(target(&root, "/api/items", "").as_deref(), Some("/items"));
        assert_eq!(target(&root, "/api", "").as_deref(), Some("/"));
        let slash = prefix("/api/", "/v2/");
        assert_eq!(
            target(&slash, "/api/items", "").as_deref(),
            Some("/v2/items")
        );
        let into_slash = prefix("/api", "/v2/");
        assert_eq!(
            target(&into_slash, "/api/items", "").as_deref(),
            Some("/v2/items")
        );
        let from_root = prefix("/", "/app/");
        assert_eq!(
            target(&from_root, "/x/y", "q").as_deref(),
            Some("/app/x/y?q")
        );
    }

    #[test]
    fn a_full_path_replaces_everything_but_the_query() {
        let r = Rewrite {
            path: Some(PathRewrite::Full("/fixed".into())),
            host: None,
        };
        assert_eq!(
            target(&r, "/any/thing", "x=1").as_deref(),
            Some("/fixed?x=1")
        );
        let host_only = Rewrite {
            path: None,
            host: Some(HeaderValue::from_static("internal.example")),
        };
        assert_eq!(
            target(&host_only, "/a", "b"),
            None,
            "the target is left alone"
        );
    }

    #[test]
    fn rewritten_paths_must_be_normal() {
        assert_eq!(bad_path("/v2"), None);
        assert_eq!(bad_path("/a%2Fb/~x"), None);
        assert!(bad_path("v2").is_some());
        assert!(bad_path("/a b").is_some());
        assert!(bad_path("/a/../b").is_some());
        assert!(bad_path("/a/.").is_some());
        assert!(bad_path("/a%zz").is_some());
        assert!(bad_path("/a?b").is_some());
    }
}
