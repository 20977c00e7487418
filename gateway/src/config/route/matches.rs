//! Validation of what a route matches: `host`, `path` / `path_prefix`, `method`,
//! `headers` and `query`.

use http::{HeaderName, HeaderValue, Method};
use toml::Spanned;

use super::file::{HostsFile, RouteFile, ValueMatchFile};
use super::{bad_value, push, RouteError};
use crate::config::error::ConfigError;
use crate::config::validate::{parse_host_match, unmatchable_prefix, Checker};
use crate::config::HostMatch;
use crate::routes::filters::is_token;
use crate::routes::{compile, HeaderMatch, HostPattern, PathMatch, QueryMatch, ValueMatch};

/// The route's hosts (empty: any host).
pub(super) fn hosts(
    c: &mut Checker<'_>,
    raw: &Option<Spanned<HostsFile>>,
) -> Option<Vec<HostPattern>> {
    let Some(raw) = raw else {
        return Some(Vec::new());
    };
    let mut out = Vec::new();
    let mut ok = true;
    let entries: Vec<(&str, std::ops::Range<usize>)> = match raw.get_ref() {
        HostsFile::One(h) => vec![(h.as_str(), raw.span())],
        HostsFile::Many(list) if list.is_empty() => {
            let hint = "leave host out to match any host";
            push(
                c,
                raw.span(),
                RouteError::Empty {
                    field: "host",
                    hint,
                },
            );
            return None;
        }
        HostsFile::Many(list) => list
            .iter()
            .map(|h| (h.get_ref().as_str(), h.span()))
            .collect(),
    };
    for (value, span) in entries {
        match parse_host_match(value) {
            Ok(m) => {
                let pattern = match m {
                    HostMatch::Exact(h) => HostPattern::Exact(h),
                    HostMatch::Suffix(s) => HostPattern::Suffix(s),
                };
                if out.contains(&pattern) {
                    let value = value.to_owned();
                    push(
                        c,
                        span,
                        RouteError::Twice {
                            field: "host",
                            value,
                        },
                    );
                    ok = false;
                } else {
                    out.push(pattern);
                }
            }
            Err(reason) => {
                let at = c.at(span);
                let value = value.to_owned();
                c.errors.push(ConfigError::BadHost { at, value, reason });
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// The route's path match (`path_prefix = "/x"` is `path = { prefix = "/x" }`; none: `/`).
pub(super) fn path(c: &mut Checker<'_>, r: &RouteFile, merge_slashes: bool) -> Option<PathMatch> {
    match (&r.path, &r.path_prefix) {
        (Some(path), Some(_)) => {
            let hint = "path_prefix = \"/x\" is short for path = { prefix = \"/x\" }";
            push(
                c,
                path.span(),
                RouteError::Conflict {
                    first: "path",
                    second: "path_prefix",
                    hint,
                },
            );
            None
        }
        (None, Some(p)) => {
            if !p.get_ref().starts_with('/') {
                let at = c.at(p.span());
                let value = p.get_ref().clone();
                c.errors.push(ConfigError::BadPathPrefix { at, value });
                return None;
            }
            if let Some(reason) = unmatchable_prefix(p.get_ref(), merge_slashes) {
                let at = c.at(p.span());
                let value = p.get_ref().clone();
                c.errors
                    .push(ConfigError::UnmatchablePathPrefix { at, value, reason });
                return None;
            }
            Some(PathMatch::Prefix(p.get_ref().clone()))
        }
        (None, None) => Some(PathMatch::Prefix("/".to_owned())),
        (Some(path), None) => {
            let p = path.get_ref();
            match (&p.prefix, &p.exact, &p.regex) {
                (Some(v), None, None) => {
                    literal(c, v, "path.prefix", merge_slashes, false).map(PathMatch::Prefix)
                }
                (None, Some(v), None) => {
                    literal(c, v, "path.exact", merge_slashes, true).map(PathMatch::Exact)
                }
                (None, None, Some(v)) => path_regex(c, v).map(PathMatch::Regex),
                _ => {
                    let choices = "prefix, exact or regex (path = { prefix = \"/api\" })";
                    push(
                        c,
                        path.span(),
                        RouteError::OneOf {
                            what: "path",
                            choices,
                        },
                    );
                    None
                }
            }
        }
    }
}

/// A `path.prefix` or `path.exact` that some normalized path can match.
fn literal(
    c: &mut Checker<'_>,
    v: &Spanned<String>,
    field: &'static str,
    merge_slashes: bool,
    exact: bool,
) -> Option<String> {
    let value = v.get_ref();
    let reason = if !value.starts_with('/') {
        Some("must start with '/'")
    } else if let Some(r) = unmatchable_prefix(value, merge_slashes) {
        Some(r)
    } else if exact && (value.ends_with("/.") || value.ends_with("/..")) {
        Some("can never match: '.' and '..' segments are removed before matching")
    } else if exact && !complete_encodings(value) {
        Some("can never match: '%' must be followed by two hex digits")
    } else {
        None
    };
    match reason {
        Some(reason) => {
            let value = value.clone();
            bad_value(c, v.span(), field, value, reason);
            None
        }
        None => Some(value.clone()),
    }
}

fn complete_encodings(value: &str) -> bool {
    let bytes = value.as_bytes();
    value.match_indices('%').all(|(i, _)| {
        bytes
            .get(i + 1..i + 3)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    })
}

fn path_regex(c: &mut Checker<'_>, v: &Spanned<String>) -> Option<String> {
    let value = v.get_ref();
    if !value.is_ascii() {
        let reason = "may hold only ASCII: paths are matched percent-encoded (write %C3%A9, not é)";
        let value = value.clone();
        bad_value(c, v.span(), "path.regex", value, reason);
        return None;
    }
    regex(c, v, "path.regex").map(|_| value.clone())
}

fn regex(
    c: &mut Checker<'_>,
    v: &Spanned<String>,
    field: &'static str,
) -> Option<crate::routes::Pattern> {
    match compile(v.get_ref()) {
        Ok(p) => Some(p),
        Err(e) => {
            let value = v.get_ref().clone();
            let source = Box::new(e);
            push(
                c,
                v.span(),
                RouteError::BadRegex {
                    field,
                    value,
                    source,
                },
            );
            None
        }
    }
}

/// `method = "POST"`.
pub(super) fn method(c: &mut Checker<'_>, raw: &Option<Spanned<String>>) -> Option<Option<Method>> {
    let Some(m) = raw else {
        return Some(None);
    };
    let parsed = is_token(m.get_ref())
        .then(|| Method::from_bytes(m.get_ref().as_bytes()).ok())
        .flatten();
    if parsed.is_none() {
        let value = m.get_ref().clone();
        let reason =
            "is not a method: a token such as \"GET\" or \"POST\" (methods are case-sensitive)";
        bad_value(c, m.span(), "method", value, reason);
        return None;
    }
    Some(parsed)
}

/// `headers = [{ name, value | regex }, ...]`.
pub(super) fn headers(
    c: &mut Checker<'_>,
    raw: &Option<Spanned<Vec<Spanned<ValueMatchFile>>>>,
) -> Option<Vec<HeaderMatch>> {
    let mut out: Vec<HeaderMatch> = Vec::new();
    let mut ok = true;
    for entry in raw.iter().flat_map(|l| l.get_ref()) {
        let e = entry.get_ref();
        let name = header_name(c, &e.name, "headers.name");
        let value = value_match(c, entry, "headers", true);
        match (name, value) {
            (Some(name), Some(value)) => {
                if out.iter().any(|h| h.name == name) {
                    let value = e.name.get_ref().clone();
                    push(
                        c,
                        e.name.span(),
                        RouteError::Twice {
                            field: "headers name",
                            value,
                        },
                    );
                    ok = false;
                } else {
                    out.push(HeaderMatch { name, value });
                }
            }
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

/// `query = [{ name, value | regex }, ...]`.
pub(super) fn query(
    c: &mut Checker<'_>,
    raw: &Option<Spanned<Vec<Spanned<ValueMatchFile>>>>,
) -> Option<Vec<QueryMatch>> {
    let mut out: Vec<QueryMatch> = Vec::new();
    let mut ok = true;
    for entry in raw.iter().flat_map(|l| l.get_ref()) {
        let e = entry.get_ref();
        let name = e.name.get_ref();
        let name_ok = !name.is_empty() && !name.contains(['&', '=', '#', ' ']);
        if !name_ok {
            let reason =
                "is not a query parameter name (non-empty, without '&', '=', '#' or spaces)";
            let value = name.clone();
            bad_value(c, e.name.span(), "query name", value, reason);
        }
        let value = value_match(c, entry, "query", false);
        match value {
            Some(value) if name_ok => {
                if out.iter().any(|q| q.name == *name) {
                    let value = name.clone();
                    push(
                        c,
                        e.name.span(),
                        RouteError::Twice {
                            field: "query name",
                            value,
                        },
                    );
                    ok = false;
                } else {
                    out.push(QueryMatch {
                        name: name.clone(),
                        value,
                    });
                }
            }
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

/// A header name: an RFC 9110 token, kept in lower case.
pub(super) fn header_name(
    c: &mut Checker<'_>,
    v: &Spanned<String>,
    field: &'static str,
) -> Option<HeaderName> {
    let name = is_token(v.get_ref())
        .then(|| HeaderName::from_bytes(v.get_ref().as_bytes()).ok())
        .flatten();
    if name.is_none() {
        let value = v.get_ref().clone();
        let reason = "is not a header name: a token (letters, digits and !#$%&'*+-.^_`|~)";
        bad_value(c, v.span(), field, value, reason);
    }
    name
}

fn value_match(
    c: &mut Checker<'_>,
    entry: &Spanned<ValueMatchFile>,
    field: &'static str,
    header: bool,
) -> Option<ValueMatch> {
    let e = entry.get_ref();
    match (&e.value, &e.regex) {
        (Some(v), None) => {
            if header && HeaderValue::from_str(v.get_ref()).is_err() {
                let reason = "can never match: not a header value (visible ASCII, spaces, tabs)";
                let value = v.get_ref().clone();
                bad_value(c, v.span(), field, value, reason);
                return None;
            }
            Some(ValueMatch::Exact(v.get_ref().as_bytes().into()))
        }
        (None, Some(r)) => regex(
            c,
            r,
            if header {
                "headers.regex"
            } else {
                "query.regex"
            },
        )
        .map(ValueMatch::Regex),
        _ => {
            let what = if header {
                "a headers entry"
            } else {
                "a query entry"
            };
            push(
                c,
                entry.span(),
                RouteError::OneOf {
                    what,
                    choices: "value or regex",
                },
            );
            None
        }
    }
}
