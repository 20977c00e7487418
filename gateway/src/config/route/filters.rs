//! Validation of a route's filters: `request_headers`, `response_headers`, `rewrite`
//! and `redirect` (the rules each filter states live beside its type in
//! `routes::filters`; `cors` is in cors.rs).

use std::collections::BTreeMap;

use http::{HeaderName, HeaderValue, StatusCode};
use toml::Spanned;

use super::file::{ModifierFile, RedirectFile, RewriteFile, SchemeFile};
use super::matches::header_name;
use super::{bad_value, push, RouteError};
use crate::config::validate::{parse_host_match, Checker};
use crate::config::HostMatch;
use crate::routes::filters::headers::{forbidden, HeaderModifier, Side};
use crate::routes::filters::redirect::{Redirect, Scheme, DEFAULT_STATUS, STATUSES};
use crate::routes::filters::rewrite::{bad_path, PathRewrite, Rewrite};
use crate::routes::PathMatch;

/// `request_headers` (`side` Request) or `response_headers` (Response); `None` inside
/// when the table changes nothing.
pub(super) fn modifier(
    c: &mut Checker<'_>,
    raw: &Option<Spanned<ModifierFile>>,
    side: Side,
) -> Option<Option<HeaderModifier>> {
    let Some(raw) = raw else {
        return Some(None);
    };
    let field = match side {
        Side::Request => "request_headers",
        Side::Response => "response_headers",
    };
    let m = raw.get_ref();
    let mut ok = true;
    let mut seen: Vec<HeaderName> = Vec::new();
    let mut name = |c: &mut Checker<'_>, v: &Spanned<String>| -> Option<HeaderName> {
        let n = header_name(c, v, field)?;
        if let Some(reason) = forbidden(n.as_str(), side) {
            let name = v.get_ref().clone();
            push(
                c,
                v.span(),
                RouteError::ForbiddenHeader {
                    field,
                    name,
                    reason,
                },
            );
            return None;
        }
        if seen.contains(&n) {
            let value = v.get_ref().clone();
            push(
                c,
                v.span(),
                RouteError::Twice {
                    field: "header",
                    value,
                },
            );
            return None;
        }
        seen.push(n.clone());
        Some(n)
    };
    let mut out = HeaderModifier::default();
    for v in m.remove.iter().flatten() {
        match name(c, v) {
            Some(n) => out.remove.push(n),
            None => ok = false,
        }
    }
    let mut pairs = |c: &mut Checker<'_>,
                     map: &Option<BTreeMap<Spanned<String>, Spanned<String>>>| {
        let mut list = Vec::new();
        for (k, v) in map.iter().flatten() {
            let n = name(c, k);
            let value = header_value(c, v, field);
            match (n, value) {
                (Some(n), Some(value)) => list.push((n, value)),
                _ => ok = false,
            }
        }
        list
    };
    out.set = pairs(c, &m.set);
    out.add = pairs(c, &m.add);
    ok.then(|| (!out.is_empty()).then_some(out))
}

/// A header value to send: visible ASCII, spaces and tabs, none at either end.
fn header_value(
    c: &mut Checker<'_>,
    v: &Spanned<String>,
    field: &'static str,
) -> Option<HeaderValue> {
    let s = v.get_ref();
    match HeaderValue::from_str(s) {
        Ok(value) if s.trim_matches([' ', '\t']) == s => Some(value),
        _ => {
            let reason =
                "is not a header value (visible ASCII, spaces and tabs, none at either end)";
            let value = s.clone();
            bad_value(c, v.span(), field, value, reason);
            None
        }
    }
}

/// A `path_prefix` / `path` replacement (of `rewrite` or `redirect`) for a route that
/// matches `path`.
fn path_rewrite(
    c: &mut Checker<'_>,
    prefix: &Option<Spanned<String>>,
    full: &Option<Spanned<String>>,
    route_path: &PathMatch,
    field: &'static str,
) -> Option<Option<PathRewrite>> {
    let check = |c: &mut Checker<'_>, v: &Spanned<String>| -> bool {
        match bad_path(v.get_ref()) {
            Some(reason) => {
                let value = v.get_ref().clone();
                bad_value(c, v.span(), field, value, reason);
                false
            }
            None => true,
        }
    };
    match (prefix, full) {
        (Some(_), Some(f)) => {
            let hint = "path_prefix replaces the matched prefix, path the whole path";
            push(
                c,
                f.span(),
                RouteError::Conflict {
                    first: "path_prefix",
                    second: "path",
                    hint,
                },
            );
            None
        }
        (Some(p), None) => {
            let (PathMatch::Prefix(matched) | PathMatch::Exact(matched)) = route_path else {
                let reason = "replaces the matched prefix: a regex path has none (use path)";
                let value = p.get_ref().clone();
                bad_value(c, p.span(), field, value, reason);
                return None;
            };
            check(c, p).then(|| {
                Some(PathRewrite::Prefix {
                    matched: matched.clone(),
                    with: p.get_ref().clone(),
                })
            })
        }
        (None, Some(f)) => check(c, f).then(|| Some(PathRewrite::Full(f.get_ref().clone()))),
        (None, None) => Some(None),
    }
}

/// An exact host name (lower case), for `rewrite.host` and `redirect.host`.
fn host_name(c: &mut Checker<'_>, v: &Spanned<String>) -> Option<String> {
    match parse_host_match(v.get_ref()) {
        Ok(HostMatch::Exact(h)) => Some(h),
        Ok(HostMatch::Suffix(_)) => {
            let reason = "is a wildcard: give one host name";
            let value = v.get_ref().clone();
            bad_value(c, v.span(), "host", value, reason);
            None
        }
        Err(reason) => {
            let at = c.at(v.span());
            let value = v.get_ref().clone();
            c.errors
                .push(crate::config::ConfigError::BadHost { at, value, reason });
            None
        }
    }
}

/// `rewrite = { path_prefix | path, host }`.
pub(super) fn rewrite(
    c: &mut Checker<'_>,
    raw: &Option<Spanned<RewriteFile>>,
    route_path: &PathMatch,
) -> Option<Option<Rewrite>> {
    let Some(raw) = raw else {
        return Some(None);
    };
    let r = raw.get_ref();
    if r.path_prefix.is_none() && r.path.is_none() && r.host.is_none() {
        let choices = "path_prefix, path or host";
        push(
            c,
            raw.span(),
            RouteError::OneOf {
                what: "rewrite changes nothing",
                choices,
            },
        );
        return None;
    }
    let path = path_rewrite(c, &r.path_prefix, &r.path, route_path, "rewrite.path");
    let host = match &r.host {
        None => Some(None),
        Some(h) => {
            // `name` or `name:port`, as a Host header holds it.
            let (name, port) = match h.get_ref().rsplit_once(':') {
                Some((n, p)) => (n, Some(p)),
                None => (h.get_ref().as_str(), None),
            };
            let port_ok =
                port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0) && !p.starts_with('+'));
            if !port_ok {
                let reason = "has a port that is not a number from 1 to 65535";
                let value = h.get_ref().clone();
                bad_value(c, h.span(), "rewrite.host", value, reason);
                None
            } else {
                let named = Spanned::new(h.span(), name.to_owned());
                host_name(c, &named).and_then(|lower| {
                    let value = match port {
                        Some(p) => format!("{lower}:{p}"),
                        None => lower,
                    };
                    HeaderValue::try_from(value).ok().map(Some)
                })
            }
        }
    };
    Some(Some(Rewrite {
        path: path?,
        host: host?,
    }))
}

/// `redirect = { scheme, host, port, path_prefix | path, status }`.
pub(super) fn redirect(
    c: &mut Checker<'_>,
    raw: &Option<Spanned<RedirectFile>>,
    route_path: &PathMatch,
) -> Option<Option<Redirect>> {
    let Some(raw) = raw else {
        return Some(None);
    };
    let r = raw.get_ref();
    let changes = r.scheme.is_some()
        || r.host.is_some()
        || r.port.is_some()
        || r.path_prefix.is_some()
        || r.path.is_some();
    if !changes {
        let choices = "scheme, host, port, path_prefix or path";
        push(
            c,
            raw.span(),
            RouteError::OneOf {
                what: "redirect would send the client back to the same URL",
                choices,
            },
        );
        return None;
    }
    let path = path_rewrite(c, &r.path_prefix, &r.path, route_path, "redirect.path");
    let host = match &r.host {
        Some(h) => host_name(c, h).map(Some),
        None => Some(None),
    };
    let port = match &r.port {
        Some(p) if *p.get_ref() == 0 => {
            push(
                c,
                p.span(),
                RouteError::OutOfRange {
                    field: "redirect.port",
                    range: "from 1 to 65535",
                },
            );
            None
        }
        Some(p) => Some(Some(*p.get_ref())),
        None => Some(None),
    };
    let status = match &r.status {
        None => Some(DEFAULT_STATUS),
        Some(s) if STATUSES.contains(s.get_ref()) => StatusCode::from_u16(*s.get_ref()).ok(),
        Some(s) => {
            push(
                c,
                s.span(),
                RouteError::OutOfRange {
                    field: "redirect.status",
                    range: "301, 302, 303, 307 or 308",
                },
            );
            None
        }
    };
    let scheme = r.scheme.map(|s| match s {
        SchemeFile::Http => Scheme::Http,
        SchemeFile::Https => Scheme::Https,
    });
    Some(Some(Redirect {
        scheme,
        host: host?,
        port: port?,
        path: path?,
        status: status?,
    }))
}
