//! The route table: routes indexed at reload so that a lookup costs about the same
//! with one route or a thousand (sorted arrays and binary searches, one automaton
//! pass for all of a host's regexes, nothing allocated per lookup).

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BTreeMap;

use http::{HeaderMap, Method};
use regex_automata::meta;
use regex_automata::util::syntax;
use regex_automata::{Input, MatchKind, PatternSet};

use super::matches::{HostPattern, Matches, PathMatch, REGEX_NEST_LIMIT};

/// What a lookup reads off a request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The host without its port, in any case.
    pub host: &'a str,
    /// The normalized path.
    pub path: &'a str,
    /// The query as sent, without `?` (empty when there is none).
    pub query: &'a str,
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
}

/// Routes indexed for lookup; built once per config, read per request without locks.
///
/// Precedence: the host's group (exact host, then the longest matching `*.` suffix,
/// then routes without a host; a group where nothing matches passes to the next).
/// Within a group: an exact path, then the first matching regex in file order, then
/// the longest prefix; among routes with the same path, a method match, then the most
/// header matches, then the most query matches, then file order.
#[derive(Debug)]
pub struct Table {
    /// Each route's conditions, by its index in the config.
    routes: Box<[Matches]>,
    /// Whether each route has no method, header or query condition (nothing to check
    /// once host and path match).
    plain: Box<[bool]>,
    /// Sorted by host.
    exact: Sorted<Group>,
    /// Sorted by suffix (`.example.com`).
    suffix: Sorted<Group>,
    any: Group,
}

/// The routes of one host entry (or of no host).
#[derive(Debug, Default)]
struct Group {
    /// Sorted by path; candidates in precedence order.
    exact: Sorted<Candidates>,
    regex: Option<Regexes>,
    /// Sorted by prefix (byte order).
    prefix: Box<[Prefix]>,
}

/// Route indices in precedence order.
type Candidates = Box<[u32]>;

#[derive(Debug)]
struct Prefix {
    prefix: Box<str>,
    /// The longest other prefix in the group that this one starts with.
    parent: Option<u32>,
    routes: Candidates,
}

/// A group's distinct regexes, in file order, searched together.
#[derive(Debug)]
struct Regexes {
    searcher: Searcher,
    /// Candidates of each regex.
    routes: Box<[Candidates]>,
}

#[derive(Debug)]
enum Searcher {
    /// One automaton for all of them; pattern `i` is regex `i`.
    Set(meta::Regex),
    /// Only if the set could not be built: each on its own (`None`: never matches).
    Each(Box<[Option<meta::Regex>]>),
}

/// The longest host name a lookup lower-cases on the stack (DNS allows 253).
pub(crate) const MAX_HOST: usize = 255;

thread_local! {
    /// The patterns a regex search found: one per thread, grown when a table has more
    /// regexes than it holds, so searches allocate nothing.
    static FOUND: RefCell<PatternSet> = RefCell::new(PatternSet::new(0));
}

impl Table {
    /// Indexes `routes` (in config order: the index of each is what lookups return).
    pub fn new<'a>(routes: impl IntoIterator<Item = &'a Matches>) -> Self {
        let routes: Box<[Matches]> = routes.into_iter().cloned().collect();
        let mut exact: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        let mut suffix: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        let mut any = Vec::new();
        for (i, m) in routes.iter().enumerate() {
            let i = i as u32;
            if m.hosts.is_empty() {
                any.push(i);
            }
            for host in &m.hosts {
                let (map, key) = match host {
                    HostPattern::Exact(h) => (&mut exact, h),
                    HostPattern::Suffix(s) => (&mut suffix, s),
                };
                map.entry(key.as_str()).or_default().push(i);
            }
        }
        // BTreeMap order is byte order: the slices come out sorted for `find`.
        let build = |map: BTreeMap<&str, Vec<u32>>| -> Sorted<Group> {
            Sorted::new(
                map.into_iter()
                    .map(|(k, members)| (k.into(), Group::new(&routes, &members)))
                    .collect(),
            )
        };
        let (exact, suffix) = (build(exact), build(suffix));
        let any = Group::new(&routes, &any);
        let plain = routes
            .iter()
            .map(|m| m.method.is_none() && m.headers.is_empty() && m.query.is_empty())
            .collect();
        Self {
            routes,
            plain,
            exact,
            suffix,
            any,
        }
    }

    /// The index of the route for `req`, or `None` when no route matches.
    pub fn lookup(&self, req: &Request<'_>) -> Option<usize> {
        // Without host routes the host is not even lower-cased.
        if !self.exact.is_empty() || !self.suffix.is_empty() {
            if let Some(found) = self.by_host(req) {
                return Some(found);
            }
        }
        self.in_group(&self.any, req)
    }

    /// The route from the groups of the request's host: its exact entry, then the
    /// longest matching suffix.
    fn by_host(&self, req: &Request<'_>) -> Option<usize> {
        let mut buf = [0u8; MAX_HOST];
        let host = lowercase(req.host, &mut buf)?;
        if let Some(group) = self.exact.get(host) {
            if let Some(found) = self.in_group(group, req) {
                return Some(found);
            }
        }
        if !self.suffix.is_empty() {
            // Longest suffix first: each '.' after the first label starts one.
            for (at, _) in host.match_indices('.').filter(|(at, _)| *at > 0) {
                if let Some(group) = self.suffix.get(&host[at..]) {
                    if let Some(found) = self.in_group(group, req) {
                        return Some(found);
                    }
                }
            }
        }
        None
    }

    fn in_group(&self, group: &Group, req: &Request<'_>) -> Option<usize> {
        let path = req.path;
        if !group.exact.is_empty() {
            if let Some(found) = group.exact.get(path).and_then(|c| self.first(c, req)) {
                return Some(found);
            }
        }
        if let Some(regexes) = &group.regex {
            if let Some(found) = regexes.first(path, |c| self.first(c, req)) {
                return Some(found);
            }
        }
        // Every prefix of `path` sorts at or before it, and is a prefix of the last
        // entry that does: walk up that entry's parents.
        let below = group
            .prefix
            .partition_point(|p| p.prefix.as_bytes() <= path.as_bytes());
        let mut at = below.checked_sub(1);
        while let Some(i) = at {
            let entry = &group.prefix[i];
            if path.starts_with(&*entry.prefix) {
                if let Some(found) = self.first(&entry.routes, req) {
                    return Some(found);
                }
            }
            at = entry.parent.map(|p| p as usize);
        }
        None
    }

    /// The first of `candidates` whose other conditions hold.
    fn first(&self, candidates: &[u32], req: &Request<'_>) -> Option<usize> {
        candidates.iter().map(|&i| i as usize).find(|&i| {
            self.plain.get(i) == Some(&true)
                || self
                    .routes
                    .get(i)
                    .is_some_and(|m| m.rest_match(req.method, req.headers, req.query))
        })
    }
}

impl Group {
    fn new(routes: &[Matches], members: &[u32]) -> Self {
        let mut exact: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        let mut prefix: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        // Distinct regexes in the order they first appear.
        let mut regex: Vec<(&str, Vec<u32>)> = Vec::new();
        for &i in members {
            let Some(m) = routes.get(i as usize) else {
                continue;
            };
            match &m.path {
                PathMatch::Exact(p) => exact.entry(p).or_default().push(i),
                PathMatch::Prefix(p) => prefix.entry(p).or_default().push(i),
                PathMatch::Regex(r) => match regex.iter_mut().find(|(k, _)| *k == r) {
                    Some((_, c)) => c.push(i),
                    None => regex.push((r, vec![i])),
                },
            }
        }
        let order = |mut c: Vec<u32>| -> Candidates {
            c.sort_by_key(|&i| (Reverse(routes.get(i as usize).map(Matches::specificity)), i));
            c.into_boxed_slice()
        };
        // In byte order, the prefixes an entry starts with are on the stack below it.
        let mut entries: Vec<Prefix> = Vec::with_capacity(prefix.len());
        let mut chain: Vec<u32> = Vec::new();
        for (p, c) in prefix {
            while let Some(&top) = chain.last() {
                if entries
                    .get(top as usize)
                    .is_some_and(|e| p.starts_with(&*e.prefix))
                {
                    break;
                }
                chain.pop();
            }
            entries.push(Prefix {
                prefix: p.into(),
                parent: chain.last().copied(),
                routes: order(c),
            });
            chain.push(entries.len() as u32 - 1);
        }
        let regex = (!regex.is_empty()).then(|| {
            let sources: Vec<&str> = regex.iter().map(|(r, _)| *r).collect();
            Regexes {
                searcher: Searcher::new(&sources),
                routes: regex.into_iter().map(|(_, c)| order(c)).collect(),
            }
        });
        Self {
            exact: Sorted::new(
                exact
                    .into_iter()
                    .map(|(p, c)| (p.into(), order(c)))
                    .collect(),
            ),
            regex,
            prefix: entries.into_boxed_slice(),
        }
    }
}

impl Regexes {
    /// The first regex (in file order) that matches `path` and whose candidates
    /// `pick` accepts.
    fn first(&self, path: &str, mut pick: impl FnMut(&[u32]) -> Option<usize>) -> Option<usize> {
        let set = match &self.searcher {
            Searcher::Set(set) => set,
            Searcher::Each(each) => {
                return each.iter().zip(&*self.routes).find_map(|(re, c)| {
                    re.as_ref()
                        .filter(|re| re.is_match(path))
                        .and_then(|_| pick(c))
                })
            }
        };
        let input = Input::new(path);
        // Most paths match none of them: one search that stops at the first match is
        // cheaper than collecting every match.
        if !set.is_match(input.clone()) {
            return None;
        }
        let mut search = |found: &mut PatternSet| {
            found.clear();
            set.which_overlapping_matches(&input, found);
            found
                .iter()
                .find_map(|id| self.routes.get(id.as_usize()).and_then(|c| pick(c)))
        };
        FOUND.with(|cell| match cell.try_borrow_mut() {
            Ok(mut found) => {
                if found.capacity() < set.pattern_len() {
                    *found = PatternSet::new(set.pattern_len());
                }
                search(&mut found)
            }
            // Not reached (nothing searches from inside `pick`); allocating is safe.
            Err(_) => search(&mut PatternSet::new(set.pattern_len())),
        })
    }
}

impl Searcher {
    /// `sources` were each compiled by [`super::matches::compile`] when the config
    /// was read, with the same syntax; the set has no size limit of its own.
    fn new(sources: &[&str]) -> Self {
        let build = |p: &[&str]| {
            meta::Regex::builder()
                .configure(
                    meta::Regex::config()
                        .match_kind(MatchKind::All)
                        .utf8_empty(false)
                        .nfa_size_limit(None),
                )
                .syntax(
                    syntax::Config::new()
                        .unicode(false)
                        .utf8(false)
                        .nest_limit(REGEX_NEST_LIMIT),
                )
                .build_many(p)
                .ok()
        };
        match build(sources) {
            Some(set) => Self::Set(set),
            None => Self::Each(
                sources
                    .iter()
                    .map(|s| build(std::slice::from_ref(s)))
                    .collect(),
            ),
        }
    }
}

/// Keys in byte order for binary search, and the set of their lengths (lengths from 255
/// up count as one): a key of a length none of them has is not searched, as most
/// lookups of a host or path that no route names end.
#[derive(Debug, Default)]
struct Sorted<T> {
    entries: Box<[(Box<str>, T)]>,
    lengths: [u64; 4],
}

impl<T> Sorted<T> {
    /// `entries` already sorted by key.
    fn new(entries: Box<[(Box<str>, T)]>) -> Self {
        let mut lengths = [0u64; 4];
        for (key, _) in &entries {
            let n = key.len().min(255);
            if let Some(word) = lengths.get_mut(n / 64) {
                *word |= 1 << (n % 64);
            }
        }
        Self { entries, lengths }
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value of `key`.
    fn get(&self, key: &str) -> Option<&T> {
        let n = key.len().min(255);
        if self
            .lengths
            .get(n / 64)
            .is_none_or(|word| word & (1 << (n % 64)) == 0)
        {
            return None;
        }
        let entries = &self.entries;
        entries
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .and_then(|i| entries.get(i))
            .map(|(_, v)| v)
    }
}

/// `host` in lower case, copied into `buf` only when it has upper-case letters.
/// `None` when it is too long to be a host name (then only host-less routes match).
pub(crate) fn lowercase<'a>(host: &'a str, buf: &'a mut [u8; MAX_HOST]) -> Option<&'a str> {
    if !host.bytes().any(|b| b.is_ascii_uppercase()) {
        return Some(host);
    }
    let dst = buf.get_mut(..host.len())?;
    dst.copy_from_slice(host.as_bytes());
    dst.make_ascii_lowercase();
    std::str::from_utf8(dst).ok()
}

#[cfg(test)]
mod tests;
