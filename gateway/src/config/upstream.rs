//! Validation of `[upstream.NAME]` tables: servers or Kubernetes discovery, balancing, health checks.

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;

use toml::Spanned;

use super::error::ConfigError;
use super::file::{BalanceFile, HealthFile, KubernetesFile, PortFile, UpstreamFile};
use super::model::*;
use super::validate::{opt_duration, positive, Checker};

pub(super) fn upstream(
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
    let speech = super::upstream_tls::speech(c, &raw, &discovery, table_span.clone());
    let balance = balance(c, &raw, table_span)?;
    let (health, passive) = health(c, raw.health.as_ref());
    if let (Some(grpc), Protocol::Http1) = (raw_grpc_span(&raw), speech.protocol) {
        let at = c.at(grpc);
        let reason = "gRPC runs over HTTP/2: set protocol = \"h2c\", \"h2\" or \"auto\"";
        let field = "health.grpc";
        c.errors.push(ConfigError::BadValue { at, field, reason });
    }
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
        protocol: speech.protocol,
        tls: speech.tls,
        max_streams: speech.max_streams,
    })
}

/// Where `health.grpc = true` is, if it is.
fn raw_grpc_span(raw: &UpstreamFile) -> Option<Range<usize>> {
    let grpc = raw.health.as_ref()?.get_ref().grpc.as_ref()?;
    grpc.get_ref().then(|| grpc.span())
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
        grpc: match h.grpc.as_ref().map(Spanned::get_ref) {
            Some(true) => Some(
                h.service
                    .as_ref()
                    .map_or_else(String::new, |s| s.get_ref().clone()),
            ),
            _ => None,
        },
    };
    let passive = PassiveHealth {
        unhealthy_after,
        cooldown: opt_duration(c, &h.cooldown, DEFAULT_COOLDOWN),
    };
    (Some(active), passive)
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
pub(super) fn check_dns_name(host: &str) -> Result<(), &'static str> {
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
