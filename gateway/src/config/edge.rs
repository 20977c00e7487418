//! Validation of the client-facing settings: listener limits, timeouts, TLS policy and route limits.

use std::time::Duration;

use toml::Spanned;

use super::error::ConfigError;
use super::file::{ListenerFile, RouteFile};
use super::model::{Cidr, Edge, DEFAULT_MAX_BODY_SIZE};
use super::validate::{duration, Checker};

/// The largest size any setting takes (pingora never reads a request head past 1 MiB,
/// and 1 TiB of body is past any sane limit).
const MAX_SIZE: u64 = 1 << 40;

/// The `Edge` settings of listener `l`; `tls` says whether it has certificates.
pub(super) fn listener(c: &mut Checker<'_>, l: &ListenerFile, tls: bool) -> Edge {
    let d = Edge::default();
    let mut edge = Edge {
        max_connections: match &l.max_connections {
            Some(v) if *v.get_ref() == 0 => {
                bad_value(c, v, "max_connections", "must be at least 1");
                d.max_connections
            }
            Some(v) => *v.get_ref(),
            None => d.max_connections,
        },
        max_header_size: opt_size(c, &l.max_header_size, MIN_HEADER, d.max_header_size as u64)
            as usize,
        max_uri_length: opt_size(c, &l.max_uri_length, MIN_URI, d.max_uri_length as u64) as usize,
        header_timeout: opt_timeout(c, &l.header_timeout, d.header_timeout),
        keepalive_timeout: opt_timeout(c, &l.keepalive_timeout, d.keepalive_timeout),
        tls_handshake_timeout: opt_timeout(c, &l.tls_handshake_timeout, d.tls_handshake_timeout),
        h2_max_concurrent_streams: match &l.h2_max_concurrent_streams {
            Some(v) if *v.get_ref() == 0 => {
                bad_value(c, v, "h2_max_concurrent_streams", "must be at least 1");
                d.h2_max_concurrent_streams
            }
            Some(v) => *v.get_ref(),
            None => d.h2_max_concurrent_streams,
        },
        trusted_proxies: Vec::new(),
        hsts: None,
        strict_sni: l.strict_sni.as_ref().is_some_and(|v| *v.get_ref()),
    };
    for entry in l.trusted_proxies.iter().flatten() {
        match entry.get_ref().parse::<Cidr>() {
            Ok(cidr) => edge.trusted_proxies.push(cidr),
            Err(reason) => {
                let at = c.at(entry.span());
                let value = entry.get_ref().clone();
                c.errors.push(ConfigError::BadNetwork { at, value, reason });
            }
        }
    }
    if let Some(hsts) = &l.hsts {
        if !tls {
            bad_value(
                c,
                hsts,
                "hsts",
                "is only sent over HTTPS: this listener has no tls",
            );
        } else if http::HeaderValue::from_str(hsts.get_ref()).is_err() || hsts.get_ref().is_empty()
        {
            bad_value(
                c,
                hsts,
                "hsts",
                "must be a non-empty header value (visible ASCII)",
            );
        } else {
            edge.hsts = Some(hsts.get_ref().clone());
        }
    }
    if let Some(strict) = &l.strict_sni {
        if !tls && *strict.get_ref() {
            bad_value(c, strict, "strict_sni", "needs a listener with tls");
        }
    }
    edge
}

/// A route's `max_body_size` and `websocket`.
pub(super) fn route(c: &mut Checker<'_>, r: &RouteFile) -> (u64, bool) {
    let max_body = opt_size(c, &r.max_body_size, (0, ""), DEFAULT_MAX_BODY_SIZE);
    (max_body, r.websocket.unwrap_or(false))
}

fn bad_value<T>(c: &mut Checker<'_>, v: &Spanned<T>, field: &'static str, reason: &'static str) {
    let at = c.at(v.span());
    c.errors.push(ConfigError::BadValue { at, field, reason });
}

fn opt_timeout(c: &mut Checker<'_>, v: &Option<Spanned<String>>, default: Duration) -> Duration {
    v.as_ref()
        .and_then(|v| duration(c, v, Duration::from_millis(1)))
        .unwrap_or(default)
}

/// Smallest sizes, with what the error says when a value is below.
const MIN_HEADER: (u64, &str) = (1024, "must be at least 1KiB");
const MIN_URI: (u64, &str) = (16, "must be at least 16B");

fn opt_size(
    c: &mut Checker<'_>,
    v: &Option<Spanned<String>>,
    (min, below_min): (u64, &'static str),
    default: u64,
) -> u64 {
    let Some(v) = v else {
        return default;
    };
    match parse_size(v.get_ref()) {
        Ok(n) if n < min => {
            size_error(c, v, below_min);
            default
        }
        Ok(n) if n > MAX_SIZE => {
            size_error(c, v, "must be at most 1TiB");
            default
        }
        Ok(n) => n,
        Err(reason) => {
            size_error(c, v, reason);
            default
        }
    }
}

fn size_error(c: &mut Checker<'_>, v: &Spanned<String>, reason: &'static str) {
    let at = c.at(v.span());
    let value = v.get_ref().clone();
    c.errors.push(ConfigError::BadSize { at, value, reason });
}

/// Parses a size such as "512B", "32KiB", "1MiB" or "2GiB" into bytes.
pub(crate) fn parse_size(value: &str) -> Result<u64, &'static str> {
    const HOW: &str = "write a whole number with a unit: B, KiB, MiB or GiB (e.g. \"32KiB\")";
    let value = value.trim();
    let split = value
        .find(|ch: char| !ch.is_ascii_digit())
        .unwrap_or(value.len());
    let (digits, unit) = value.split_at(split);
    let unit_bytes: u64 = match unit.trim() {
        "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(HOW),
    };
    let n: u64 = digits.parse().map_err(|_| HOW)?;
    n.checked_mul(unit_bytes).ok_or("is too large")
}
