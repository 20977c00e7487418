//! Turns the raw file into the validated model, collecting every error it finds.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::error::{ConfigError, DurationProblem, Location};
use super::file::{
    BalanceFile, DnsFile, FileConfig, HealthFile, KubernetesFile, ListenerFile, PortFile,
    UpstreamFile,
};
use super::model::*;

/// Validation context: where errors point and where they are collected.
pub(super) struct Checker<'a> {
    file: &'a Path,
    source: &'a str,
    base_dir: &'a Path,
    pub(super) errors: Vec<ConfigError>,
}

impl Checker<'_> {
    pub(super) fn at(&self, span: Range<usize>) -> Location {
        Location::from_span(self.file, self.source, span)
    }

    fn line(&self, span: Range<usize>) -> usize {
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
    let upstreams: Vec<Upstream> = raw
        .upstreams
        .into_iter()
        .filter_map(|(name, u)| upstream(&mut c, name, u))
        .collect();
    let compression = match &raw.compression {
        Some(section) => super::route::compression(&mut c, section.get_ref()),
        None => Default::default(),
    };
    let (routes, rules) =
        super::route::routes(&mut c, raw.routes, &upstreams, merge_slashes, &compression);

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

fn listen_addr(c: &mut Checker<'_>, value: &Spanned<String>) -> Option<SocketAddr> {
    match value.get_ref().parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            let at = c.at(value.span());
            let value = value.get_ref().clone();
            c.errors.push(ConfigError::BadListenAddress { at, value });
            None
        }
    }
}

fn listeners(c: &mut Checker<'_>, raw: Vec<Spanned<ListenerFile>>) -> Vec<Listener> {
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut out: Vec<Listener> = Vec::new();
    for l in raw {
        let at = c.at(l.span());
        let l = l.into_inner();
        let name = l.name.get_ref().clone();
        if let Some(&first_line) = names.get(&name) {
            let at = c.at(l.name.span());
            c.errors.push(ConfigError::DuplicateListenerName {
                at,
                name: name.clone(),
                first_line,
            });
        } else {
            names.insert(name.clone(), c.line(l.name.span()));
        }
        let Some(addr) = listen_addr(c, &l.listen) else {
            continue;
        };
        if let Some(other) = out.iter().find(|o| addrs_overlap(o.addr, addr)) {
            let at = c.at(l.listen.span());
            let other = other.name.clone();
            c.errors
                .push(ConfigError::DuplicateListenAddress { at, addr, other });
            continue;
        }
        let Some(kind) = listener_kind(c, &l) else {
            continue;
        };
        let edge = super::edge::listener(c, &l, matches!(kind, ListenerKind::Https { .. }));
        out.push(Listener {
            name,
            addr,
            kind,
            edge,
            at,
        });
    }
    out
}

/// Two listen addresses conflict when they share a port and one IP covers the other.
fn addrs_overlap(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

fn listener_kind(c: &mut Checker<'_>, l: &ListenerFile) -> Option<ListenerKind> {
    let redirect = l.redirect_to_https.as_ref().is_some_and(|r| *r.get_ref());
    if let Some(port) = &l.redirect_port {
        if !redirect {
            let at = c.at(port.span());
            c.errors.push(ConfigError::RedirectPortUnused { at });
        } else if *port.get_ref() == 0 {
            let at = c.at(port.span());
            c.errors.push(ConfigError::BadRedirectPort { at });
        }
    }
    match (&l.tls, redirect) {
        (Some(tls), _) => {
            if let (Some(r), true) = (&l.redirect_to_https, redirect) {
                let at = c.at(r.span());
                c.errors.push(ConfigError::RedirectOnTls { at });
            }
            if tls.get_ref().certs.is_empty() {
                let at = c.at(tls.span());
                c.errors.push(ConfigError::NoCerts { at });
                return None;
            }
            let certs = tls
                .get_ref()
                .certs
                .iter()
                .map(|dir| CertDir {
                    path: c.base_dir.join(dir.get_ref()),
                    at: c.at(dir.span()),
                })
                .collect();
            Some(ListenerKind::Https { certs })
        }
        (None, true) => Some(ListenerKind::RedirectToHttps {
            port: l.redirect_port.as_ref().map(|p| *p.get_ref()),
        }),
        (None, false) => Some(ListenerKind::Http),
    }
}

fn upstream(
    c: &mut Checker<'_>,
    name: Spanned<String>,
    raw: Spanned<UpstreamFile>,
) -> Option<Upstream> {
    let valid_name = !name.get_ref().is_empty()
        && name
            .get_ref()
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'));
    if !valid_name {
        let at = c.at(name.span());
        let name = name.into_inner();
        c.errors.push(ConfigError::BadUpstreamName { at, name });
        return None;
    }
    let name = name.into_inner();
    let table_span = raw.span();
    let raw = raw.into_inner();
    let discovery = match (&raw.servers, &raw.kubernetes) {
        (Some(servers), None) => Discovery::Servers(servers_list(c, &name, servers)?),
        (None, Some(k)) => Discovery::Kubernetes(kubernetes(c, k)?),
        _ => {
            let at = c.at(table_span);
            c.errors
                .push(ConfigError::UpstreamSource { at, upstream: name });
            return None;
        }
    };
    let balance = balance(c, &raw, table_span)?;
    let (health, passive) = health(c, raw.health.as_ref());
    let timeouts = Timeouts {
        connect: opt_duration(c, &raw.connect_timeout, DEFAULT_CONNECT_TIMEOUT),
        read: opt_duration(c, &raw.read_timeout, DEFAULT_READ_TIMEOUT),
        write: opt_duration(c, &raw.write_timeout, DEFAULT_WRITE_TIMEOUT),
        idle: opt_duration(c, &raw.idle_timeout, DEFAULT_IDLE_TIMEOUT),
    };
    Some(Upstream {
        name,
        discovery,
        balance,
        health,
        passive,
        retries: raw.retries.unwrap_or(DEFAULT_RETRIES),
        timeouts,
    })
}

fn servers_list(
    c: &mut Checker<'_>,
    upstream: &str,
    servers: &Spanned<Vec<Spanned<String>>>,
) -> Option<Vec<ServerAddr>> {
    if servers.get_ref().is_empty() {
        let at = c.at(servers.span());
        let upstream = upstream.to_owned();
        c.errors.push(ConfigError::EmptyServers { at, upstream });
        return None;
    }
    let mut out = Vec::new();
    for s in servers.get_ref() {
        match parse_server(s.get_ref()) {
            Ok(addr) => out.push(addr),
            Err(reason) => {
                let at = c.at(s.span());
                let value = s.get_ref().clone();
                c.errors.push(ConfigError::BadServer { at, value, reason });
            }
        }
    }
    Some(out)
}

fn kubernetes(c: &mut Checker<'_>, k: &Spanned<KubernetesFile>) -> Option<KubernetesService> {
    let k = k.get_ref();
    let mut ok = true;
    // Kubernetes object names are RFC 1123 labels in lower case.
    let lower = |ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-';
    let mut label = |c: &mut Checker<'_>, v: &Spanned<String>, field: &'static str| {
        if !is_label(v.get_ref(), lower) {
            let at = c.at(v.span());
            let reason = "must be a lower-case DNS label (letters, digits, '-'; at most 63)";
            c.errors.push(ConfigError::BadValue { at, field, reason });
            ok = false;
        }
    };
    label(c, &k.service, "kubernetes.service");
    if let Some(ns) = &k.namespace {
        label(c, ns, "kubernetes.namespace");
    }
    let port = match k.port.get_ref() {
        PortFile::Number(0) => None,
        PortFile::Number(n) => Some(ServicePort::Number(*n)),
        PortFile::Name(n) if !n.is_empty() && n.len() <= 15 => Some(ServicePort::Name(n.clone())),
        PortFile::Name(_) => None,
    };
    let Some(port) = port else {
        let at = c.at(k.port.span());
        let reason = "must be a port name (at most 15 characters) or a number from 1 to 65535";
        c.errors.push(ConfigError::BadValue {
            at,
            field: "kubernetes.port",
            reason,
        });
        return None;
    };
    ok.then(|| KubernetesService {
        service: k.service.get_ref().clone(),
        namespace: k.namespace.as_ref().map(|n| n.get_ref().clone()),
        port,
    })
}

/// Whether `label` is a DNS label (RFC 1123 2.1): 1 to 63 characters, each `allowed`,
/// neither first nor last a '-'.
fn is_label(label: &str, allowed: impl Fn(char) -> bool) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label.chars().all(allowed)
}

fn balance(c: &mut Checker<'_>, raw: &UpstreamFile, table_span: Range<usize>) -> Option<Balance> {
    let kind = raw
        .balance
        .as_ref()
        .map_or(BalanceFile::RoundRobin, |b| *b.get_ref());
    match (kind, &raw.hash_key) {
        (BalanceFile::ConsistentHash, Some(key)) => match parse_hash_key(key.get_ref()) {
            Some(k) => Some(Balance::ConsistentHash(k)),
            None => {
                let at = c.at(key.span());
                let value = key.get_ref().clone();
                c.errors.push(ConfigError::BadHashKey { at, value });
                None
            }
        },
        (BalanceFile::ConsistentHash, None) => {
            let span = raw.balance.as_ref().map_or(table_span, |b| b.span());
            let at = c.at(span);
            c.errors.push(ConfigError::HashKeyMissing { at });
            None
        }
        (_, Some(key)) => {
            let at = c.at(key.span());
            c.errors.push(ConfigError::HashKeyUnused { at });
            None
        }
        (BalanceFile::RoundRobin, None) => Some(Balance::RoundRobin),
        (BalanceFile::Random, None) => Some(Balance::Random),
        (BalanceFile::LeastRequests, None) => Some(Balance::LeastRequests),
    }
}

fn parse_hash_key(value: &str) -> Option<HashKey> {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    match value.split_once(':') {
        Some(("header", name)) if token(name) => Some(HashKey::Header(name.to_ascii_lowercase())),
        Some(("cookie", name)) if token(name) => Some(HashKey::Cookie(name.to_owned())),
        None if value == "client_ip" => Some(HashKey::ClientIp),
        None if value == "path" => Some(HashKey::Path),
        _ => None,
    }
}

fn health(
    c: &mut Checker<'_>,
    raw: Option<&Spanned<HealthFile>>,
) -> (Option<ActiveHealth>, PassiveHealth) {
    let Some(raw) = raw else {
        let passive = PassiveHealth {
            unhealthy_after: DEFAULT_UNHEALTHY_AFTER,
            cooldown: DEFAULT_COOLDOWN,
        };
        return (None, passive);
    };
    let h = raw.get_ref();
    let path = match &h.path {
        Some(p) if !p.get_ref().starts_with('/') => {
            let at = c.at(p.span());
            let reason = "must start with '/'";
            c.errors.push(ConfigError::BadValue {
                at,
                field: "health.path",
                reason,
            });
            DEFAULT_HEALTH_PATH.to_owned()
        }
        Some(p) => p.get_ref().clone(),
        None => DEFAULT_HEALTH_PATH.to_owned(),
    };
    let healthy_after = positive(
        c,
        &h.healthy_after,
        "health.healthy_after",
        DEFAULT_HEALTHY_AFTER,
    );
    let unhealthy_after = positive(
        c,
        &h.unhealthy_after,
        "health.unhealthy_after",
        DEFAULT_UNHEALTHY_AFTER,
    );
    let active = ActiveHealth {
        path,
        interval: opt_duration(c, &h.interval, DEFAULT_HEALTH_INTERVAL),
        timeout: opt_duration(c, &h.timeout, DEFAULT_HEALTH_TIMEOUT),
        healthy_after,
        unhealthy_after,
    };
    let passive = PassiveHealth {
        unhealthy_after,
        cooldown: opt_duration(c, &h.cooldown, DEFAULT_COOLDOWN),
    };
    (Some(active), passive)
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

/// Parses a `host:port` server entry: `10.0.0.1:80`, `[::1]:80` or `hello:80`.
pub(crate) fn parse_server(value: &str) -> Result<ServerAddr, &'static str> {
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Ok(ServerAddr::Ip(addr));
    }
    let (host, port) = value
        .rsplit_once(':')
        .ok_or("expected host:port, such as \"hello:80\"")?;
    let port: u16 = port
        .parse()
        .map_err(|_| "the port must be a number from 1 to 65535")?;
    if port == 0 {
        return Err("the port must be a number from 1 to 65535");
    }
    if host.parse::<IpAddr>().is_ok() || host.starts_with('[') {
        return Err("an IPv6 address must be written in brackets, such as \"[::1]:80\"");
    }
    check_dns_name(host)?;
    Ok(ServerAddr::Name {
        host: host.to_ascii_lowercase(),
        port,
    })
}

/// Checks the syntax of a DNS name (letters, digits, hyphens; dot-separated labels).
fn check_dns_name(host: &str) -> Result<(), &'static str> {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.len() > 253 {
        return Err("the host name is empty or longer than 253 characters");
    }
    let allowed = |ch: char| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_';
    if host.split('.').all(|label| is_label(label, allowed)) {
        Ok(())
    } else {
        Err("the host name may only hold letters, digits and '-' in dot-separated labels")
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
