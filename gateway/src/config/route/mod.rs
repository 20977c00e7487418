//! `[[route]]` validation: matches, destination (upstreams by weight, or a redirect)
//! and filters, into the model's `Route`; and `[compression]`.

mod auth;
mod auth_jwt;
pub(in crate::config) use auth::implicit_upstreams;
mod compression;
mod cors;
mod error;
mod file;
mod filters;
mod matches;
mod policy;

use std::collections::HashMap;
use std::ops::Range;

use toml::Spanned;

pub(in crate::config) use compression::compression;
pub use error::RouteError;
pub(crate) use file::{CompressionFile, RouteFile};

use super::error::ConfigError;
use super::model::{HostMatch, Route, RouteRule, Upstream};
use super::validate::Checker;
use crate::routes::filters::compression::Compression;
use crate::routes::filters::headers::Side;
use crate::routes::filters::weights::{Backends, DEFAULT_WEIGHT, MAX_WEIGHT};
use crate::routes::{Chain, HostPattern, Matches, PathMatch};

/// Routes already read, by host entry and path: (index, line).
type Seen = HashMap<(Option<HostPattern>, PathMatch), Vec<(usize, usize)>>;

/// Records `error` at `span`.
fn push(c: &mut Checker<'_>, span: Range<usize>, error: RouteError) {
    let at = c.at(span);
    c.errors.push(ConfigError::Route { at, source: error });
}

/// Records that `field`'s `value` (at `span`) is refused, and why.
fn bad_value(
    c: &mut Checker<'_>,
    span: Range<usize>,
    field: &'static str,
    value: String,
    reason: &'static str,
) {
    push(
        c,
        span,
        RouteError::BadValue {
            field,
            value,
            reason,
        },
    );
}

/// Every valid route of `raw`, in file order, and its whole definition; the errors of
/// the others are recorded.
pub(in crate::config) fn routes(
    c: &mut Checker<'_>,
    raw: Vec<Spanned<RouteFile>>,
    upstreams: &[Upstream],
    merge_slashes: bool,
    compression: &Compression,
) -> (Vec<Route>, Vec<RouteRule>) {
    let mut seen = Seen::new();
    let mut out: Vec<Route> = Vec::new();
    let mut rules: Vec<RouteRule> = Vec::new();
    for r in raw {
        let span = r.span();
        let at = c.at(span.clone());
        let r = r.into_inner();
        // Every part is checked, so that all of a route's errors are reported.
        let hosts = matches::hosts(c, &r.host);
        let path = matches::path(c, &r, merge_slashes);
        let method = matches::method(c, &r.method);
        let headers = matches::headers(c, &r.headers);
        let query = matches::query(c, &r.query);
        let backends = backends(c, &r, span.clone(), upstreams);
        let route_path = path.clone().unwrap_or(PathMatch::Prefix("/".to_owned()));
        let request_headers = filters::modifier(c, &r.request_headers, Side::Request);
        let response_headers = filters::modifier(c, &r.response_headers, Side::Response);
        let rewrite = filters::rewrite(c, &r.rewrite, &route_path);
        let redirect = filters::redirect(c, &r.redirect, &route_path);
        let cors = cors::cors(c, &r.cors);
        let edge = policy::route(c, &r, upstreams);
        let (
            Some(hosts),
            Some(path),
            Some(method),
            Some(headers),
            Some(query),
            Some(backends),
            Some(request_headers),
            Some(response_headers),
            Some(rewrite),
            Some(redirect),
            Some(cors),
        ) = (
            hosts,
            path,
            method,
            headers,
            query,
            backends,
            request_headers,
            response_headers,
            rewrite,
            redirect,
            cors,
        )
        else {
            continue;
        };
        let compresses = r
            .compression
            .as_ref()
            .map_or(compression.enabled, |v| *v.get_ref());
        let matches = Matches {
            hosts,
            path,
            method,
            headers,
            query,
        };
        if let Some(first_line) = duplicate(&mut seen, &rules, &matches, rules.len(), at.line) {
            c.errors
                .push(ConfigError::DuplicateRoute { at, first_line });
            continue;
        }
        out.push(Route {
            host: matches.hosts.first().map(|h| match h {
                HostPattern::Exact(e) => HostMatch::Exact(e.clone()),
                HostPattern::Suffix(s) => HostMatch::Suffix(s.clone()),
            }),
            path_prefix: match &matches.path {
                PathMatch::Prefix(p) => p.clone(),
                _ => "/".to_owned(),
            },
            upstream: backends.as_ref().map_or(0, |b| b.entries()[0].0),
            max_body_size: edge.max_body_size,
            websocket: edge.websocket,
            access: edge.access,
            max_in_flight: edge.max_in_flight,
            rate_limit: edge.rate_limit,
            auth: edge.auth,
        });
        rules.push(RouteRule {
            matches,
            backends,
            chain: Chain {
                request_headers,
                response_headers,
                rewrite,
                redirect,
                cors,
                compression: compresses.then(|| compression.clone()),
            },
            at,
        });
    }
    (out, rules)
}

/// The line of an earlier route with the same host entry and the same conditions, if
/// any; else `matches` (route `index`, at `line`) is recorded.
fn duplicate(
    seen: &mut Seen,
    rules: &[RouteRule],
    matches: &Matches,
    index: usize,
    line: usize,
) -> Option<usize> {
    let hosts: Vec<Option<HostPattern>> = if matches.hosts.is_empty() {
        vec![None]
    } else {
        matches.hosts.iter().cloned().map(Some).collect()
    };
    let same = |other: &Matches| {
        other.method == matches.method
            && other.headers == matches.headers
            && other.query == matches.query
    };
    for host in &hosts {
        let earlier = seen.get(&(host.clone(), matches.path.clone()));
        for &(i, first_line) in earlier.into_iter().flatten() {
            if rules.get(i).is_some_and(|r| same(&r.matches)) {
                return Some(first_line);
            }
        }
    }
    for host in hosts {
        seen.entry((host, matches.path.clone()))
            .or_default()
            .push((index, line));
    }
    None
}

/// Where the route sends requests: `Some(None)` for a redirect, which has none.
fn backends(
    c: &mut Checker<'_>,
    r: &RouteFile,
    route_span: Range<usize>,
    upstreams: &[Upstream],
) -> Option<Option<Backends>> {
    let conflict = |c: &mut Checker<'_>, span, first, second, hint| {
        push(
            c,
            span,
            RouteError::Conflict {
                first,
                second,
                hint,
            },
        );
    };
    match (&r.upstream, &r.backends, &r.redirect) {
        (Some(_), Some(b), _) => {
            let hint = "upstream = \"v1\" is short for backends = [{ upstream = \"v1\" }]";
            conflict(c, b.span(), "upstream", "backends", hint);
            None
        }
        (Some(u), None, Some(_)) => {
            let hint = "a redirect is answered by the gateway and sent nowhere";
            conflict(c, u.span(), "redirect", "upstream", hint);
            None
        }
        (None, Some(b), Some(_)) => {
            let hint = "a redirect is answered by the gateway and sent nowhere";
            conflict(c, b.span(), "redirect", "backends", hint);
            None
        }
        (None, None, Some(_)) => Some(None),
        (None, None, None) => {
            push(c, route_span, RouteError::NoDestination);
            None
        }
        (Some(u), None, None) => upstream_index(c, u, upstreams).map(|i| Some(Backends::one(i))),
        (None, Some(list), None) => {
            if list.get_ref().is_empty() {
                let hint = "list at least one { upstream = \"NAME\", weight = N }";
                push(
                    c,
                    list.span(),
                    RouteError::Empty {
                        field: "backends",
                        hint,
                    },
                );
                return None;
            }
            let mut entries = Vec::new();
            let mut ok = true;
            for b in list.get_ref() {
                let b = b.get_ref();
                let weight = match &b.weight {
                    Some(w) if *w.get_ref() > MAX_WEIGHT => {
                        push(
                            c,
                            w.span(),
                            RouteError::OutOfRange {
                                field: "weight",
                                range: "at most 1000000",
                            },
                        );
                        ok = false;
                        0
                    }
                    Some(w) => *w.get_ref(),
                    None => DEFAULT_WEIGHT,
                };
                match upstream_index(c, &b.upstream, upstreams) {
                    Some(i) if entries.iter().any(|&(e, _)| e == i) => {
                        let value = b.upstream.get_ref().clone();
                        push(
                            c,
                            b.upstream.span(),
                            RouteError::Twice {
                                field: "backends upstream",
                                value,
                            },
                        );
                        ok = false;
                    }
                    Some(i) => entries.push((i, weight)),
                    None => ok = false,
                }
            }
            if !ok {
                return None;
            }
            match Backends::new(entries) {
                Some(b) => Some(Some(b)),
                None => {
                    push(c, list.span(), RouteError::AllWeightsZero);
                    None
                }
            }
        }
    }
}

/// The index of the upstream `name` names.
fn upstream_index(
    c: &mut Checker<'_>,
    name: &Spanned<String>,
    upstreams: &[Upstream],
) -> Option<usize> {
    let found = upstreams.iter().position(|u| u.name == *name.get_ref());
    if found.is_none() {
        let at = c.at(name.span());
        let defined = if upstreams.is_empty() {
            "none".to_owned()
        } else {
            let names: Vec<&str> = upstreams.iter().map(|u| u.name.as_str()).collect();
            names.join(", ")
        };
        let name = name.get_ref().clone();
        c.errors
            .push(ConfigError::UnknownUpstream { at, name, defined });
    }
    found
}

#[cfg(test)]
mod tests;
