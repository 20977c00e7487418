//! Turns the raw file into the validated model, collecting every error it finds.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::error::{ConfigError, DurationProblem, Location};
use super::file::{DnsFile, FileConfig};
use super::listener::{addrs_overlap, listen_addr, listeners};
use super::model::*;
use super::upstream::{check_dns_name, upstream};

/// Validation context: where errors point and where they are collected.
pub(super) struct Checker<'a> {
    file: &'a Path,
    source: &'a str,
    pub(super) base_dir: &'a Path,
    pub(super) errors: Vec<ConfigError>,
}

impl Checker<'_> {
    pub(super) fn at(&self, span: Range<usize>) -> Location {
        Location::from_span(self.file, self.source, span)
    }

    /// The file's text at `span`.
    pub(super) fn source_of(&self, span: Range<usize>) -> &str {
        self.source.get(span).unwrap_or("")
    }

    pub(super) fn line(&self, span: Range<usize>) -> usize {
        self.at(span).line
    }
}

/// Validates `raw`, read from `file` whose text is `source`.
pub(crate) fn validate(
    file: &Path,
    source: &str,
    raw: FileConfig,
) -> Result<Config, Vec<ConfigError>> {
    let base_dir = file.parent().unwrap_or(Path::new("."));
    let mut c = Checker {
        file,
        source,
        base_dir,
        errors: Vec::new(),
    };

    let admin = raw.admin.and_then(|a| {
        let addr = listen_addr(&mut c, &a.listen)?;
        let at = c.at(a.listen.span());
        Some(Admin { addr, at })
    });
    let threads = match raw.server.threads {
        Some(t) if *t.get_ref() == 0 => {
            let at = c.at(t.span());
            c.errors.push(ConfigError::BadThreads { at });
            1
        }
        Some(t) => t.into_inner(),
        None => default_threads(),
    };
    let poll_interval = match &raw.reload.poll_interval {
        Some(v) => duration(&mut c, v, Duration::from_millis(100)).unwrap_or(DEFAULT_POLL_INTERVAL),
        None => DEFAULT_POLL_INTERVAL,
    };
    let shutdown_delay = match &raw.server.shutdown_delay {
        Some(v) => duration(&mut c, v, Duration::ZERO).unwrap_or(DEFAULT_SHUTDOWN_DELAY),
        None => DEFAULT_SHUTDOWN_DELAY,
    };
    let drain_timeout = opt_duration(&mut c, &raw.server.drain_timeout, DEFAULT_DRAIN_TIMEOUT);
    let dns = dns(&mut c, &raw.dns);
    let merge_slashes = raw.server.merge_slashes.unwrap_or(DEFAULT_MERGE_SLASHES);
    let mut listeners = listeners(&mut c, raw.listeners);
    for l in &mut listeners {
        l.edge.merge_slashes = merge_slashes;
    }
    if let Some(a) = &admin {
        if let Some(l) = listeners.iter().find(|l| addrs_overlap(l.addr, a.addr)) {
            let (at, addr, other) = (a.at.clone(), a.addr, l.name.clone());
            c.errors
                .push(ConfigError::DuplicateListenAddress { at, addr, other });
        }
    }
    let mut upstreams: Vec<Upstream> = raw
        .upstreams
        .into_iter()
        .filter_map(|(name, u)| upstream(&mut c, name, u))
        .collect();
    upstreams.extend(super::route::implicit_upstreams(&c, &raw.routes));
    let compression = match &raw.compression {
        Some(section) => super::route::compression(&mut c, section.get_ref()),
        None => Default::default(),
    };
    let (routes, rules) =
        super::route::routes(&mut c, raw.routes, &upstreams, merge_slashes, &compression);
    let rate_limit = raw
        .rate_limit
        .as_ref()
        .and_then(|r| super::rate_limit::rate_limit(&mut c, r));
    let access_log = match &raw.access_log {
        Some(a) => super::access_log::access_log(&mut c, a),
        None => crate::telemetry::access_format::AccessFormat::default(),
    };
    let tracing = raw
        .tracing
        .as_ref()
        .and_then(|t| super::traces::tracing(&mut c, t));

    if c.errors.is_empty() {
        Ok(Config {
            source: file.to_path_buf(),
            admin,
            server: Server {
                threads,
                shutdown_delay,
                drain_timeout,
            },
            reload: Reload { poll_interval },
            dns,
            listeners,
            upstreams,
            routes,
            rules,
            compression,
            rate_limit,
            access_log,
            tracing,
        })
    } else {
        let mut errors = c.errors;
        errors.sort_by_key(|e| e.location().map(|l| (l.line, l.column)));
        Err(errors)
    }
}

/// Parses a duration such as "10s", "500ms" or "1m 30s"; at least `min`.
pub(super) fn duration(
    c: &mut Checker<'_>,
    value: &Spanned<String>,
    min: Duration,
) -> Option<Duration> {
    let problem = match humantime::parse_duration(value.get_ref()) {
        Ok(d) if d >= min && d <= MAX_DURATION => return Some(d),
        Ok(d) if d > MAX_DURATION => DurationProblem::TooLong { max: MAX_DURATION },
        Ok(_) => DurationProblem::TooShort { min },
        Err(e) => DurationProblem::Unparsable(e),
    };
    let at = c.at(value.span());
    let value = value.get_ref().clone();
    c.errors
        .push(ConfigError::BadDuration { at, value, problem });
    None
}

/// A duration field (at least 1 ms) or its default.
pub(super) fn opt_duration(
    c: &mut Checker<'_>,
    v: &Option<Spanned<String>>,
    default: Duration,
) -> Duration {
    v.as_ref()
        .and_then(|v| duration(c, v, Duration::from_millis(1)))
        .unwrap_or(default)
}

/// A count field (at least 1) or its default.
pub(super) fn positive(
    c: &mut Checker<'_>,
    v: &Option<Spanned<u32>>,
    field: &'static str,
    default: u32,
) -> u32 {
    match v {
        Some(n) if *n.get_ref() == 0 => {
            let at = c.at(n.span());
            let reason = "must be at least 1";
            c.errors.push(ConfigError::BadValue { at, field, reason });
            default
        }
        Some(n) => *n.get_ref(),
        None => default,
    }
}

fn dns(c: &mut Checker<'_>, raw: &DnsFile) -> Dns {
    let mut nameservers = Vec::new();
    for ns in raw.nameservers.iter().flatten() {
        match ns.get_ref().parse::<SocketAddr>() {
            Ok(addr) => nameservers.push(addr),
            Err(_) => {
                let at = c.at(ns.span());
                let value = ns.get_ref().clone();
                c.errors.push(ConfigError::BadNameserver { at, value });
            }
        }
    }
    let min_ttl = opt_duration(c, &raw.min_ttl, DEFAULT_MIN_TTL);
    let max_ttl = opt_duration(c, &raw.max_ttl, DEFAULT_MAX_TTL);
    if min_ttl > max_ttl {
        let span = raw
            .max_ttl
            .as_ref()
            .or(raw.min_ttl.as_ref())
            .map_or(0..0, |v| v.span());
        let at = c.at(span);
        let reason = "must not be below min_ttl";
        c.errors.push(ConfigError::BadValue {
            at,
            field: "dns.max_ttl",
            reason,
        });
    }
    Dns {
        nameservers,
        min_ttl,
        max_ttl,
    }
}

/// Why a `path_prefix` (which starts with `/`) could never match: requests are matched
/// on their normalized path (RFC 3986 §6.2.2, repeated slashes merged with
/// `merge_slashes`), which has no complete `.` or `..` segment, no percent-encoded
/// unreserved character, upper-case hex in other percent-encodings, and only RFC 3986
/// path characters. A prefix may end inside a segment or an encoding (`/a/.`, `/a%2`):
/// it is matched as a plain string prefix.
pub(super) fn unmatchable_prefix(prefix: &str, merge_slashes: bool) -> Option<&'static str> {
    let bytes = prefix.as_bytes();
    let path_char = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%".contains(&b);
    if !bytes.iter().all(|&b| path_char(b)) {
        return Some("only RFC 3986 path characters can match (percent-encode the others)");
    }
    if merge_slashes && prefix.contains("//") {
        return Some("repeated slashes are merged before matching ([server] merge_slashes)");
    }
    if prefix.contains("/./") || prefix.contains("/../") {
        return Some("'.' and '..' segments are removed before matching");
    }
    for (i, _) in prefix.match_indices('%') {
        let Some(digits) = bytes.get(i + 1..i + 3) else {
            continue;
        };
        let value = std::str::from_utf8(digits)
            .ok()
            .and_then(|d| u8::from_str_radix(d, 16).ok());
        match value {
            None => return Some("'%' must be followed by two hex digits"),
            Some(v) if v.is_ascii_alphanumeric() || b"-._~".contains(&v) => {
                return Some("percent-encoded letters, digits, '-', '.', '_' and '~' are decoded before matching: write them as they are")
            }
            Some(_) if digits.iter().any(u8::is_ascii_lowercase) => {
                return Some("percent-encodings are matched in upper case (%2F, not %2f)")
            }
            Some(_) => {}
        }
    }
    None
}

/// Parses a route's `host`: `a.example.com` or `*.example.com`.
pub(crate) fn parse_host_match(value: &str) -> Result<HostMatch, &'static str> {
    let lower = value.to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix("*.") {
        check_dns_name(rest)?;
        return Ok(HostMatch::Suffix(format!(".{rest}")));
    }
    if lower.contains('*') {
        return Err("a wildcard is only allowed as the whole first label, as in \"*.example.com\"");
    }
    if lower.contains(':') {
        return Err("give the host without a port");
    }
    check_dns_name(&lower)?;
    Ok(HostMatch::Exact(lower))
}
