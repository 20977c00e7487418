//! Routes and lookups generated from the input, through the config text.
//!
//! The routes are rendered into a `gateway.toml` and loaded with
//! `gateway::config::from_str` (not built as `Route` structs), so the target keeps
//! compiling when fields are added to `Route`. Each lookup's answer must be a valid
//! route index, and must agree with the route table's documented contract:
//! - a returned route's host matches (exact, `*.suffix` with a label before it, or none)
//!   and its path_prefix is a prefix of the path;
//! - when some route matches (and the host is short enough to be a host name),
//!   the lookup returns one.
#![no_main]

use std::fmt::Write as _;
use std::path::Path;

use arbitrary::Arbitrary;
use gateway::config::{Config, HostMatch};
use gateway::routes::{Request, Table};
use http::{HeaderMap, Method};
use libfuzzer_sys::fuzz_target;

/// Labels that routes and lookups share, so that they often collide.
const LABELS: &[&str] = &[
    "a",
    "b",
    "example",
    "com",
    "api",
    "EXAMPLE",
    "A",
    "x-1",
    "_srv",
    "b2",
    "xn--bcher-kva",
];
/// Path segments, same idea.
const SEGMENTS: &[&str] = &["", "api", "v2", "API", "a", "a%2F", "x.y", "..", "b c"];
/// The longest host a lookup lower-cases (`routes/table.rs`'s MAX_HOST): past it only
/// host-less routes may match.
const MAX_HOST: usize = 255;

#[derive(Arbitrary, Debug)]
enum RouteHost {
    None,
    Exact(Vec<u8>),
    Wildcard(Vec<u8>),
    /// Anything: mostly an invalid host, for the validator.
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum PathGen {
    /// `/` + segments joined with `/`, optionally with a trailing `/`.
    Segments(Vec<u8>, bool),
    /// Anything: as a path_prefix, one not starting with `/` is invalid.
    Raw(String),
}

#[derive(Arbitrary, Debug)]
struct RouteGen {
    host: RouteHost,
    /// `None`: no `path_prefix` key (the default `/`).
    path: Option<PathGen>,
}

#[derive(Arbitrary, Debug)]
enum LookupHost {
    Labels(Vec<u8>),
    Raw(String),
    /// A long name (lookup's stack buffer), upper-case or not.
    Long(u16, bool),
}

#[derive(Arbitrary, Debug)]
struct Input {
    routes: Vec<RouteGen>,
    lookups: Vec<(LookupHost, PathGen)>,
}

fn labels(picks: &[u8]) -> String {
    let picks = &picks[..picks.len().min(6)];
    let names: Vec<&str> = picks
        .iter()
        .map(|&i| LABELS[usize::from(i) % LABELS.len()])
        .collect();
    if names.is_empty() {
        "example.com".to_owned()
    } else {
        names.join(".")
    }
}

fn path(gen: &PathGen) -> String {
    match gen {
        PathGen::Segments(picks, trailing) => {
            let picks = &picks[..picks.len().min(6)];
            let mut out = String::new();
            for &i in picks {
                out.push('/');
                out.push_str(SEGMENTS[usize::from(i) % SEGMENTS.len()]);
            }
            if out.is_empty() || *trailing {
                out.push('/');
            }
            out
        }
        PathGen::Raw(s) => s.clone(),
    }
}

impl RouteGen {
    /// `(host, path_prefix)` as written in the file; `structured` when built from the
    /// lists above (valid by construction), not from raw strings.
    fn render(&self) -> (Option<String>, Option<String>, bool) {
        let (host, host_ok) = match &self.host {
            RouteHost::None => (None, true),
            RouteHost::Exact(p) => (Some(labels(p)), true),
            RouteHost::Wildcard(p) => (Some(format!("*.{}", labels(p))), true),
            RouteHost::Raw(s) => (Some(s.clone()), false),
        };
        let (path_prefix, path_ok) = match &self.path {
            None => (None, true),
            Some(p @ PathGen::Segments(..)) => (Some(path(p)), true),
            Some(p @ PathGen::Raw(_)) => (Some(path(p)), false),
        };
        (host, path_prefix, host_ok && path_ok)
    }
}

/// `s` as a TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' ' | '!'..='~' => out.push(ch),
            ch if (ch as u32) <= 0xFFFF => {
                let _ = write!(out, "\\u{:04X}", ch as u32);
            }
            ch => {
                let _ = write!(out, "\\U{:08X}", ch as u32);
            }
        }
    }
    out.push('"');
    out
}

fn config_text(routes: &[(Option<String>, Option<String>)]) -> String {
    let mut text = String::from(
        "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\n\
         [upstream.u]\nservers = [\"127.0.0.1:1\"]\n",
    );
    for (host, path_prefix) in routes {
        text.push_str("\n[[route]]\n");
        if let Some(h) = host {
            let _ = writeln!(text, "host = {}", toml_str(h));
        }
        if let Some(p) = path_prefix {
            let _ = writeln!(text, "path_prefix = {}", toml_str(p));
        }
        text.push_str("upstream = \"u\"\n");
    }
    text
}

/// `ROUTER_FUZZ_DEBUG=1`: print what each run loaded (to check the generator).
fn debug() -> bool {
    std::env::var_os("ROUTER_FUZZ_DEBUG").is_some()
}

fn load(text: &str) -> Option<Config> {
    match gateway::config::from_str(Path::new("fuzz.toml"), text) {
        Ok(config) => Some(config),
        Err(errors) => {
            for e in &errors {
                let _ = e.to_string();
            }
            None
        }
    }
}

/// Whether `route_host` accepts a request for `host` (already lower-cased).
#[allow(unreachable_patterns)] // a future HostMatch variant: unknown, accept
fn host_matches(route_host: Option<&HostMatch>, host: &str) -> bool {
    match route_host {
        None => true,
        Some(HostMatch::Exact(h)) => h == host,
        Some(HostMatch::Suffix(s)) => host.len() > s.len() && host.ends_with(s.as_str()),
        Some(_) => true,
    }
}

fn check(config: &Config, lookups: &[(String, String)]) {
    let routes = &config.routes;
    if debug() {
        eprintln!("loaded: {} routes, {} lookups", routes.len(), lookups.len());
    }
    let table = Table::new(config.rules.iter().map(|r| &r.matches));
    let headers = HeaderMap::new();
    for (host, path) in lookups {
        let found = table.lookup(&Request {
            host,
            path,
            query: "",
            method: &Method::GET,
            headers: &headers,
        });
        let lower = host.to_ascii_lowercase();
        if let Some(i) = found {
            assert!(
                i < routes.len(),
                "lookup({host:?}, {path:?}) = {i}, but there are {} routes",
                routes.len()
            );
            let r = &routes[i];
            assert!(
                path.starts_with(r.path_prefix.as_str()),
                "lookup({host:?}, {path:?}) = route {i} whose path_prefix {:?} does not match",
                r.path_prefix
            );
            assert!(
                host_matches(r.host.as_ref(), &lower),
                "lookup({host:?}, {path:?}) = route {i} whose host {:?} does not match",
                r.host
            );
        } else if host.len() <= MAX_HOST {
            let matching = routes.iter().position(|r| {
                host_matches(r.host.as_ref(), &lower) && path.starts_with(r.path_prefix.as_str())
            });
            assert!(
                matching.is_none(),
                "lookup({host:?}, {path:?}) = None, but route {matching:?} matches"
            );
        }
    }
}

fuzz_target!(|input: Input| {
    let routes: Vec<_> = input.routes.iter().take(16).map(RouteGen::render).collect();
    let lookups: Vec<(String, String)> = input
        .lookups
        .iter()
        .take(16)
        .map(|(h, p)| {
            let host = match h {
                LookupHost::Labels(picks) => labels(picks),
                LookupHost::Raw(s) => s.clone(),
                LookupHost::Long(n, upper) => {
                    let mut s = "a.".repeat(usize::from(*n % 200)) + "example.com";
                    if *upper {
                        s.make_ascii_uppercase();
                    }
                    s
                }
            };
            (host, path(p))
        })
        .collect();

    // Everything as generated: raw hosts and paths exercise the validator's errors.
    let all: Vec<_> = routes
        .iter()
        .map(|(h, p, _)| (h.clone(), p.clone()))
        .collect();
    if let Some(config) = load(&config_text(&all)) {
        check(&config, &lookups);
        return;
    }
    // Rejected: retry with the structured routes only, minus duplicates (same host in
    // any case, same path_prefix), which the validator also rejects; this config is
    // expected to load.
    let mut seen = std::collections::HashSet::new();
    let valid: Vec<_> = routes
        .iter()
        .filter(|(_, _, structured)| *structured)
        .filter(|(h, p, _)| {
            seen.insert((
                h.as_ref().map(|h| h.to_ascii_lowercase()),
                p.clone().unwrap_or_else(|| "/".to_owned()),
            ))
        })
        .map(|(h, p, _)| (h.clone(), p.clone()))
        .collect();
    let text = config_text(&valid);
    let config = load(&text);
    if let Some(config) = config {
        check(&config, &lookups);
    } else if debug() {
        eprintln!("structured routes rejected:\n{text}");
    }
});
