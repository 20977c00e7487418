//! Route table lookups: precedence by example, and the index against a plain scan.

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use proptest::prelude::*;

use super::{Request, Table};
use crate::routes::matches::{
    compile, HeaderMatch, HostPattern, Matches, PathMatch, QueryMatch, ValueMatch,
};

fn host(h: &str) -> HostPattern {
    match h.strip_prefix('*') {
        Some(suffix) => HostPattern::Suffix(suffix.to_owned()),
        None => HostPattern::Exact(h.to_owned()),
    }
}

fn prefix(hosts: &[&str], p: &str) -> Matches {
    Matches {
        hosts: hosts.iter().map(|h| host(h)).collect(),
        path: PathMatch::Prefix(p.to_owned()),
        ..Matches::default()
    }
}

fn with_path(path: PathMatch) -> Matches {
    Matches {
        path,
        ..Matches::default()
    }
}

fn header(name: &'static str, value: &str) -> HeaderMatch {
    HeaderMatch {
        name: HeaderName::from_static(name),
        value: ValueMatch::Exact(value.as_bytes().into()),
    }
}

/// Looks up `host` + `target` (`path?query`) with `method` and `headers`.
fn get(t: &Table, method: Method, host: &str, target: &str, headers: &HeaderMap) -> Option<usize> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    t.lookup(&Request {
        host,
        path,
        query,
        method: &method,
        headers,
    })
}

fn simple(t: &Table, host: &str, target: &str) -> Option<usize> {
    get(t, Method::GET, host, target, &HeaderMap::new())
}

#[test]
fn host_then_longest_prefix() {
    let t = Table::new(&[
        prefix(&[], "/"),
        prefix(&[], "/api"),
        prefix(&["a.test"], "/"),
        prefix(&["a.test"], "/api/v2"),
        prefix(&["*.w.test"], "/"),
        prefix(&["*.x.w.test"], "/only"),
        prefix(&["b.test"], "/b"),
    ]);
    assert_eq!(simple(&t, "other", "/"), Some(0));
    assert_eq!(simple(&t, "other", "/api/x"), Some(1));
    assert_eq!(simple(&t, "A.TEST", "/api/x"), Some(2));
    assert_eq!(simple(&t, "a.test", "/api/v2/y"), Some(3));
    assert_eq!(simple(&t, "q.w.test", "/api"), Some(4));
    assert_eq!(simple(&t, "q.x.w.test", "/only/1"), Some(5));
    assert_eq!(
        simple(&t, "q.x.w.test", "/else"),
        Some(4),
        "the shorter suffix next"
    );
    assert_eq!(
        simple(&t, "w.test", "/api"),
        Some(1),
        "a suffix needs a label before it"
    );
    assert_eq!(
        simple(&t, "b.test", "/c"),
        Some(0),
        "then routes without a host"
    );
    let long = "A".repeat(300);
    assert_eq!(
        simple(&t, &long, "/api"),
        Some(1),
        "too long for a host: host-less only"
    );
}

#[test]
fn a_host_list_puts_the_route_in_each_group() {
    let t = Table::new(&[
        prefix(&["a.test", "*.b.test"], "/"),
        prefix(&["c.test"], "/"),
    ]);
    assert_eq!(simple(&t, "a.test", "/x"), Some(0));
    assert_eq!(simple(&t, "x.b.test", "/x"), Some(0));
    assert_eq!(simple(&t, "c.test", "/x"), Some(1));
    assert_eq!(simple(&t, "d.test", "/x"), None);
}

#[test]
fn exact_then_first_regex_then_longest_prefix() {
    let t = Table::new(&[
        prefix(&[], "/"),
        prefix(&[], "/v1/items"),
        with_path(PathMatch::Regex("^/v[0-9]+/".into())),
        with_path(PathMatch::Regex("items".into())),
        with_path(PathMatch::Exact("/v1/items".into())),
    ]);
    assert_eq!(simple(&t, "h", "/v1/items"), Some(4), "exact first");
    assert_eq!(
        simple(&t, "h", "/v1/items/"),
        Some(2),
        "a regex before any prefix"
    );
    assert_eq!(
        simple(&t, "h", "/x/items"),
        Some(3),
        "searched, not anchored"
    );
    assert_eq!(
        simple(&t, "h", "/v1/items?items"),
        Some(4),
        "the query is not the path"
    );
    assert_eq!(simple(&t, "h", "/other"), Some(0));
}

#[test]
fn regexes_in_file_order() {
    let t = Table::new(&[
        with_path(PathMatch::Regex("b".into())),
        with_path(PathMatch::Regex("^/a".into())),
    ]);
    assert_eq!(
        simple(&t, "h", "/ab"),
        Some(0),
        "the first in the file, not the leftmost"
    );
    assert_eq!(simple(&t, "h", "/a"), Some(1));
    assert_eq!(simple(&t, "h", "/c"), None);
}

#[test]
fn conditions_break_ties_and_fall_through() {
    let canary = Matches {
        headers: vec![header("x-canary", "1")],
        ..prefix(&[], "/api")
    };
    let two = Matches {
        headers: vec![header("x-canary", "1"), header("x-env", "qa")],
        ..prefix(&[], "/api")
    };
    let post = Matches {
        method: Some(Method::POST),
        ..prefix(&[], "/api")
    };
    let query = Matches {
        query: vec![QueryMatch {
            name: "debug".into(),
            value: ValueMatch::Regex(compile("^[1-9]$").unwrap()),
        }],
        ..prefix(&[], "/api")
    };
    let t = Table::new(&[
        prefix(&[], "/api"),
        query,
        canary,
        two,
        post,
        prefix(&[], "/"),
    ]);
    let mut h = HeaderMap::new();
    assert_eq!(get(&t, Method::GET, "h", "/api", &h), Some(0));
    assert_eq!(get(&t, Method::GET, "h", "/api?debug=1", &h), Some(1));
    assert_eq!(get(&t, Method::GET, "h", "/api?debug=0", &h), Some(0));
    h.insert("x-canary", HeaderValue::from_static("1"));
    assert_eq!(
        get(&t, Method::GET, "h", "/api?debug=1", &h),
        Some(2),
        "headers before query"
    );
    h.insert("x-env", HeaderValue::from_static("qa"));
    assert_eq!(
        get(&t, Method::GET, "h", "/api", &h),
        Some(3),
        "the most header matches"
    );
    assert_eq!(
        get(&t, Method::POST, "h", "/api", &h),
        Some(4),
        "a method match first"
    );
    let post_only = Table::new(&[
        Matches {
            method: Some(Method::POST),
            ..prefix(&[], "/api")
        },
        prefix(&[], "/"),
    ]);
    assert_eq!(
        get(&post_only, Method::GET, "h", "/api", &HeaderMap::new()),
        Some(1),
        "a shorter prefix when the longer one's conditions fail"
    );
}

#[test]
fn same_regex_routes_break_ties_like_same_paths() {
    let t = Table::new(&[
        with_path(PathMatch::Regex("^/x".into())),
        Matches {
            headers: vec![header("x-canary", "1")],
            ..with_path(PathMatch::Regex("^/x".into()))
        },
    ]);
    let mut h = HeaderMap::new();
    assert_eq!(get(&t, Method::GET, "h", "/x", &h), Some(0));
    h.insert("x-canary", HeaderValue::from_static("1"));
    assert_eq!(get(&t, Method::GET, "h", "/x", &h), Some(1));
}

#[test]
fn prefixes_are_found_between_unrelated_neighbours() {
    let t = Table::new(&[
        prefix(&[], "/a"),
        prefix(&[], "/ab"),
        prefix(&[], "/abc"),
        prefix(&[], "/abd"),
        prefix(&[], "/b"),
    ]);
    assert_eq!(simple(&t, "h", "/abz"), Some(1));
    assert_eq!(simple(&t, "h", "/abcz"), Some(2));
    assert_eq!(simple(&t, "h", "/ac"), Some(0));
    assert_eq!(simple(&t, "h", "/abe"), Some(1));
    assert_eq!(simple(&t, "h", "/"), None);
    assert_eq!(simple(&t, "h", "/c"), None);
}

/// The precedence rules as a plain scan over every route, to check the index against.
fn scan(routes: &[Matches], req: &Request<'_>) -> Option<usize> {
    let host = req.host.to_ascii_lowercase();
    let mut suffixes: Vec<&str> = routes
        .iter()
        .flat_map(|m| &m.hosts)
        .filter_map(|h| match h {
            HostPattern::Suffix(s) if host.len() > s.len() && host.ends_with(s.as_str()) => {
                Some(s.as_str())
            }
            _ => None,
        })
        .collect();
    suffixes.sort_by_key(|s| std::cmp::Reverse(s.len()));
    suffixes.dedup();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let in_group =
        |want: &dyn Fn(&Matches) -> bool| (0..routes.len()).filter(|&i| want(&routes[i])).collect();
    groups.push(in_group(&|m| {
        m.hosts.contains(&HostPattern::Exact(host.clone()))
    }));
    for s in suffixes {
        groups.push(in_group(&|m| {
            m.hosts.contains(&HostPattern::Suffix(s.to_owned()))
        }));
    }
    groups.push(in_group(&|m| m.hosts.is_empty()));
    for group in groups {
        let rank = |i: usize| -> Option<(u8, usize)> {
            let m = &routes[i];
            if !m.rest_match(req.method, req.headers, req.query) {
                return None;
            }
            match &m.path {
                PathMatch::Exact(p) => (p == req.path).then_some((0, 0)),
                PathMatch::Regex(r) => {
                    let first = group
                        .iter()
                        .position(|&j| routes[j].path == PathMatch::Regex(r.clone()))?;
                    compile(r)
                        .unwrap()
                        .regex
                        .is_match(req.path.as_bytes())
                        .then_some((1, first))
                }
                PathMatch::Prefix(p) => req
                    .path
                    .starts_with(p.as_str())
                    .then_some((2, usize::MAX - p.len())),
            }
        };
        let best = group
            .iter()
            .filter_map(|&i| rank(i).map(|r| (r, std::cmp::Reverse(routes[i].specificity()), i)))
            .min();
        if let Some((_, _, i)) = best {
            return Some(i);
        }
    }
    None
}

fn arb_route() -> impl Strategy<Value = Matches> {
    let hosts = prop::collection::vec(
        prop::sample::select(vec!["a.t", "b.a.t", "*.t", "*.a.t", "*.b.a.t"]),
        0..3,
    );
    let path = prop_oneof![
        "[/ab]{0,4}".prop_map(|p| PathMatch::Prefix(format!("/{p}"))),
        "[/ab]{0,4}".prop_map(|p| PathMatch::Exact(format!("/{p}"))),
        prop::sample::select(vec!["^/a", "b$", "a.b", "^/$", "/b/"])
            .prop_map(|r| PathMatch::Regex(r.to_owned())),
    ];
    let method = prop::option::of(prop::sample::select(vec![Method::GET, Method::POST]));
    let headers = prop::collection::vec(prop::sample::select(vec!["1", "2"]), 0..2);
    let query = prop::collection::vec(prop::sample::select(vec!["1", "2"]), 0..2);
    (hosts, path, method, headers, query).prop_map(|(hosts, path, method, headers, query)| {
        let names = ["x-h", "x-i"];
        Matches {
            hosts: hosts.into_iter().map(host).collect(),
            path,
            method,
            headers: headers
                .into_iter()
                .zip(names)
                .map(|(v, n)| header(n, v))
                .collect(),
            query: query
                .into_iter()
                .zip(["q", "r"])
                .map(|(v, n)| QueryMatch {
                    name: n.into(),
                    value: ValueMatch::Exact(v.as_bytes().into()),
                })
                .collect(),
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn the_index_agrees_with_a_plain_scan(
        routes in prop::collection::vec(arb_route(), 1..24),
        host in prop::sample::select(vec!["a.t", "B.A.T", "c.b.a.t", "t", "x.t", "other"]),
        path in "[/ab]{0,6}",
        post in any::<bool>(),
        h in prop::option::of(prop::sample::select(vec!["1", "2"])),
        q in prop::sample::select(vec!["", "q=1", "q=2&r=1", "r=2&q=1"]),
    ) {
        let path = format!("/{path}");
        let method = if post { Method::POST } else { Method::GET };
        let mut headers = HeaderMap::new();
        if let Some(v) = h {
            headers.insert("x-h", HeaderValue::from_static(v));
            headers.insert("x-i", HeaderValue::from_static("1"));
        }
        let req = Request { host, path: &path, query: q, method: &method, headers: &headers };
        let table = Table::new(&routes);
        prop_assert_eq!(table.lookup(&req), scan(&routes, &req));
    }
}
