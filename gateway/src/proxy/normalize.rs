//! Path normalization (RFC 3986 §6.2.2): the path routes match and backends receive.
//! Only called for a path the grammar pass found not normal; most paths are, and cost
//! nothing here.

use bytes::Bytes;
use http::uri::{PathAndQuery, Uri};

/// Replaces the path of `uri` (checked by the grammar pass) with its normal form; the
/// query, and for HTTP/2 the scheme and authority, stay as they came.
pub(crate) fn normalize_uri(uri: &mut Uri, merge_slashes: bool) -> Result<(), &'static str> {
    let normal = normalize(uri.path(), uri.query(), merge_slashes)?;
    let mut parts = std::mem::take(uri).into_parts();
    parts.path_and_query = Some(
        PathAndQuery::from_maybe_shared(Bytes::from(normal))
            .map_err(|_| "normalized path is not a URI path")?,
    );
    *uri = Uri::from_parts(parts).map_err(|_| "normalized path is not a URI path")?;
    Ok(())
}

/// The normal form of `path` (an absolute path the grammar pass accepted), followed by
/// `?query` unchanged: percent-encoded unreserved characters decoded and other
/// percent-encodings in upper case (§6.2.2.1, §6.2.2.2), `.` and `..` segments removed
/// (§6.2.2.3, §5.2.4), and with `merge_slashes` empty segments dropped (as nginx's
/// `merge_slashes` and Envoy's `merge_slashes` do). `%2F` and `%5C` stay encoded: they
/// are data, never separators. A `..` that would climb above the root is an error
/// rather than being dropped, as §5.2.4 would: the client asked for something outside
/// the tree.
pub(crate) fn normalize(
    path: &str,
    query: Option<&str>,
    merge_slashes: bool,
) -> Result<String, &'static str> {
    let capacity = path.len() + query.map_or(0, |q| q.len() + 1);
    let mut out = String::with_capacity(capacity);
    // Whether the output so far ends with a removed `.` or `..` segment, which leaves
    // a trailing slash (`/a/b/..` is `/a/`).
    let mut trailing_slash = false;
    let mut segments = path.strip_prefix('/').unwrap_or(path).split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        let start = out.len();
        out.push('/');
        push_decoded(&mut out, segment);
        match &out[start + 1..] {
            "." => {
                out.truncate(start);
                trailing_slash = true;
            }
            ".." => {
                out.truncate(start);
                let Some(parent) = out.rfind('/') else {
                    return Err("\"..\" above the root of the path");
                };
                out.truncate(parent);
                trailing_slash = true;
            }
            "" if merge_slashes && !last => out.truncate(start),
            _ => trailing_slash = false,
        }
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    Ok(out)
}

/// Appends `segment` with its percent-encoded unreserved characters decoded and the
/// hex digits of the other encodings in upper case. The grammar pass has checked every
/// `%` is followed by two hex digits and every other byte is ASCII.
fn push_decoded(out: &mut String, segment: &str) {
    let bytes = segment.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let encoded = (b == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u8::from_str_radix(digits, 16).ok());
        match encoded {
            Some(value) if value.is_ascii_alphanumeric() || b"-._~".contains(&value) => {
                out.push(char::from(value));
            }
            Some(_) => {
                out.push('%');
                out.push(char::from(bytes[i + 1].to_ascii_uppercase()));
                out.push(char::from(bytes[i + 2].to_ascii_uppercase()));
            }
            None => {
                out.push(char::from(b));
                i += 1;
                continue;
            }
        }
        i += 3;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::uri;

    fn norm(path: &str) -> Result<String, &'static str> {
        normalize(path, None, true)
    }

    /// RFC 3986 §5.4's reference resolution examples against base `/b/c/d;p`, as
    /// merged paths (§5.2.3) before their dot segments are removed. The abnormal
    /// examples that climb above the root (`../../../g`, `/../g`) resolve to `/g` in
    /// the RFC; here they are refused.
    #[test]
    fn rfc_3986_examples() {
        for (merged, expected) in [
            ("/b/c/g", Ok("/b/c/g")),
            ("/b/c/./g", Ok("/b/c/g")),
            ("/b/c/g/", Ok("/b/c/g/")),
            ("/g", Ok("/g")),
            ("/b/c/;x", Ok("/b/c/;x")),
            ("/b/c/g;x", Ok("/b/c/g;x")),
            ("/b/c/d;p", Ok("/b/c/d;p")),
            ("/b/c/.", Ok("/b/c/")),
            ("/b/c/./", Ok("/b/c/")),
            ("/b/c/..", Ok("/b/")),
            ("/b/c/../", Ok("/b/")),
            ("/b/c/../g", Ok("/b/g")),
            ("/b/c/../..", Ok("/")),
            ("/b/c/../../", Ok("/")),
            ("/b/c/../../g", Ok("/g")),
            ("/b/c/../../../g", Err(())),
            ("/b/c/../../../../g", Err(())),
            ("/./g", Ok("/g")),
            ("/../g", Err(())),
            ("/b/c/g.", Ok("/b/c/g.")),
            ("/b/c/.g", Ok("/b/c/.g")),
            ("/b/c/g..", Ok("/b/c/g..")),
            ("/b/c/..g", Ok("/b/c/..g")),
            ("/b/c/./../g", Ok("/b/g")),
            ("/b/c/./g/.", Ok("/b/c/g/")),
            ("/b/c/g/./h", Ok("/b/c/g/h")),
            ("/b/c/g/../h", Ok("/b/c/h")),
            ("/b/c/g;x=1/./y", Ok("/b/c/g;x=1/y")),
            ("/b/c/g;x=1/../y", Ok("/b/c/y")),
            // §5.2.4's own example.
            ("/a/b/c/./../../g", Ok("/a/g")),
        ] {
            assert_eq!(
                norm(merged).map_err(|_| ()),
                expected.map(str::to_owned),
                "{merged}"
            );
        }
    }

    #[test]
    fn percent_encodings() {
        for (path, expected) in [
            ("/%7Euser", "/~user"),
            ("/%7euser", "/~user"),
            ("/%41%62%2D%2e%5f", "/Ab-._"),
            ("/a%2Fb", "/a%2Fb"),
            ("/a%2fb", "/a%2Fb"),
            ("/a%5cb", "/a%5Cb"),
            ("/a%5C..%5Cb", "/a%5C..%5Cb"),
            ("/%c3%a9", "/%C3%A9"),
            ("/%20", "/%20"),
            ("/%25", "/%25"),
            ("/%2541", "/%2541"),
            ("/a/%2e/b", "/a/b"),
            ("/a/%2E%2e/b", "/b"),
            ("/a/.%2e/b", "/b"),
            ("/a/%2e%2e%2fb", "/a/..%2Fb"),
        ] {
            assert_eq!(norm(path).as_deref(), Ok(expected), "{path}");
        }
        assert!(norm("/%2e%2e/admin").is_err());
        assert!(norm("/a/%2e%2e/%2E%2E/x").is_err());
    }

    #[test]
    fn slashes() {
        for (path, merged, kept) in [
            ("//", "/", "//"),
            ("/a//b", "/a/b", "/a//b"),
            ("/a///b/", "/a/b/", "/a///b/"),
            ("/a//", "/a/", "/a//"),
            ("//a", "/a", "//a"),
            ("/a//../b", "/b", "/a/b"),
            ("/a//..", "/", "/a/"),
            ("/a/.//b", "/a/b", "/a//b"),
        ] {
            assert_eq!(normalize(path, None, true).as_deref(), Ok(merged), "{path}");
            assert_eq!(normalize(path, None, false).as_deref(), Ok(kept), "{path}");
        }
    }

    #[test]
    fn the_query_is_kept_as_it_came() {
        assert_eq!(
            normalize("/a/../b", Some("x=/../y//%7e&z"), true).as_deref(),
            Ok("/b?x=/../y//%7e&z")
        );
        assert_eq!(normalize("/a/..", Some(""), true).as_deref(), Ok("/?"));
    }

    /// Whatever comes out is normal (the grammar pass finds nothing to change) and
    /// normalizes to itself.
    #[test]
    fn the_result_is_normal() {
        let parts = [
            "a", ".", "..", "", "%2e", "%2E%2e", "%7e", "%2f", "b.", "%41",
        ];
        for a in parts {
            for b in parts {
                for c in parts {
                    for merge in [true, false] {
                        let path = format!("/x/y/{a}/{b}/{c}");
                        let Ok(once) = normalize(&path, None, merge) else {
                            continue;
                        };
                        let shape = uri::target(b"GET", once.as_bytes(), false);
                        assert!(
                            shape.is_ok_and(|s| s.is_normal(merge)),
                            "{path} -> {once} ({merge})"
                        );
                        assert_eq!(normalize(&once, None, merge).as_deref(), Ok(&*once));
                    }
                }
            }
        }
    }
}
