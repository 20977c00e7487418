//! Route lookup by host, then longest path prefix.

use std::cmp::Reverse;
use std::collections::HashMap;

use crate::config::{HostMatch, Route};
use crate::routes::{lowercase, MAX_HOST};

/// Routes indexed for lookup. Built once per config; read per request without locks.
///
/// A request's host picks a group: an exact host first, then the longest matching
/// `*.suffix`, then routes without a host. Within a group the longest matching path
/// prefix wins; when none of a group's prefixes match, the next group is tried.
#[derive(Debug, Default)]
pub struct Router {
    exact: HashMap<Box<str>, Vec<Entry>>,
    /// Sorted by suffix length, longest first.
    suffix: Vec<(Box<str>, Vec<Entry>)>,
    any: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    prefix: Box<str>,
    /// Index of the route in the config.
    route: usize,
}

impl Router {
    pub fn new(routes: &[Route]) -> Self {
        let mut router = Router::default();
        for (route, r) in routes.iter().enumerate() {
            let entry = Entry {
                prefix: r.path_prefix.as_str().into(),
                route,
            };
            let group = match &r.host {
                None => &mut router.any,
                Some(HostMatch::Exact(h)) => router.exact.entry(h.as_str().into()).or_default(),
                Some(HostMatch::Suffix(s)) => {
                    match router.suffix.iter().position(|(k, _)| **k == **s) {
                        Some(i) => &mut router.suffix[i].1,
                        None => {
                            router.suffix.push((s.as_str().into(), Vec::new()));
                            let last = router.suffix.len() - 1;
                            &mut router.suffix[last].1
                        }
                    }
                }
            };
            group.push(entry);
        }
        let by_prefix_len = |v: &mut Vec<Entry>| v.sort_by_key(|e| Reverse(e.prefix.len()));
        router.exact.values_mut().for_each(by_prefix_len);
        router.suffix.iter_mut().for_each(|(_, v)| by_prefix_len(v));
        by_prefix_len(&mut router.any);
        router
            .suffix
            .sort_by_key(|(suffix, _)| Reverse(suffix.len()));
        router
    }

    /// The index of the route for a request to `host` (any case, port already removed)
    /// and `path`, or `None` when no route matches.
    pub fn lookup(&self, host: &str, path: &str) -> Option<usize> {
        let mut buf = [0u8; MAX_HOST];
        let host = lowercase(host, &mut buf);
        let longest = |entries: &[Entry]| {
            entries
                .iter()
                .find(|e| path.starts_with(&*e.prefix))
                .map(|e| e.route)
        };
        if let Some(host) = host {
            if let Some(found) = self.exact.get(host).and_then(|g| longest(g)) {
                return Some(found);
            }
            for (suffix, group) in &self.suffix {
                if host.len() > suffix.len() && host.ends_with(&**suffix) {
                    if let Some(found) = longest(group) {
                        return Some(found);
                    }
                }
            }
        }
        longest(&self.any)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HostMatch::{Exact, Suffix};

    fn route(host: Option<HostMatch>, prefix: &str, upstream: usize) -> Route {
        Route {
            host,
            path_prefix: prefix.into(),
            upstream,
            max_body_size: 0,
            websocket: false,
        }
    }

    #[test]
    fn host_then_longest_prefix() {
        let router = Router::new(&[
            route(None, "/", 0),
            route(None, "/api", 1),
            route(Some(Exact("a.test".into())), "/", 2),
            route(Some(Exact("a.test".into())), "/api/v2", 3),
            route(Some(Suffix(".w.test".into())), "/", 4),
            route(Some(Suffix(".x.w.test".into())), "/only", 5),
            route(Some(Exact("b.test".into())), "/b", 6),
        ]);
        assert_eq!(router.lookup("other", "/"), Some(0));
        assert_eq!(router.lookup("other", "/api/x"), Some(1));
        assert_eq!(router.lookup("A.TEST", "/api/x"), Some(2));
        assert_eq!(router.lookup("a.test", "/api/v2/y"), Some(3));
        assert_eq!(router.lookup("q.w.test", "/api"), Some(4));
        assert_eq!(router.lookup("q.x.w.test", "/only/1"), Some(5));
        assert_eq!(
            router.lookup("q.x.w.test", "/else"),
            Some(4),
            "falls back to the shorter suffix"
        );
        assert_eq!(
            router.lookup("w.test", "/api"),
            Some(1),
            "suffix needs a label before it"
        );
        assert_eq!(
            router.lookup("b.test", "/c"),
            Some(0),
            "falls back to host-less routes"
        );
    }

    #[test]
    fn no_match_is_none() {
        let router = Router::new(&[route(Some(Exact("a.test".into())), "/api", 0)]);
        assert_eq!(router.lookup("a.test", "/"), None);
        assert_eq!(router.lookup("b.test", "/api"), None);
        let long = "a".repeat(300);
        assert_eq!(router.lookup(&long.to_uppercase(), "/api"), None);
    }
}
