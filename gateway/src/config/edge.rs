//! Validation of the client-facing settings: listener limits, timeouts, TLS policy and route limits.

use toml::Spanned;

use super::error::ConfigError;
use super::file::{ListenerFile, RouteFile};
use super::model::{Cidr, CidrSet, Edge, DEFAULT_MAX_BODY_SIZE};
use super::validate::{opt_duration, positive, Checker};

/// The largest size any setting takes (pingora never reads a request head past 1 MiB,
/// and 1 TiB of body is past any sane limit).
const MAX_SIZE: u64 = 1 << 40;

/// The `Edge` settings of listener `l`; `tls` says whether it has certificates.
pub(super) fn listener(c: &mut Checker<'_>, l: &ListenerFile, tls: bool) -> Edge {
    let d = Edge::default();
    let mut edge = Edge {
        max_connections: positive(c, &l.max_connections, "max_connections", d.max_connections),
        max_header_size: opt_size(c, &l.max_header_size, MIN_HEADER, d.max_header_size as u64)
            as usize,
        max_uri_length: opt_size(c, &l.max_uri_length, MIN_URI, d.max_uri_length as u64) as usize,
        header_timeout: opt_duration(c, &l.header_timeout, d.header_timeout),
        keepalive_timeout: opt_duration(c, &l.keepalive_timeout, d.keepalive_timeout),
        tls_handshake_timeout: opt_duration(c, &l.tls_handshake_timeout, d.tls_handshake_timeout),
        h2_max_concurrent_streams: positive(
            c,
            &l.h2_max_concurrent_streams,
            "h2_max_concurrent_streams",
            d.h2_max_concurrent_streams,
        ),
        trusted_proxies: CidrSet::default(),
        hsts: None,
        strict_sni: l.strict_sni.as_ref().is_some_and(|v| *v.get_ref()),
        // A `[server]` setting: set on every listener once they are all read.
        merge_slashes: d.merge_slashes,
    };
    edge.trusted_proxies = networks(c, l.trusted_proxies.iter().flatten(), "trusted_proxies");
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

/// The networks of a list such as `trusted_proxies`; each bad entry is an error.
pub(super) fn networks<'a>(
    c: &mut Checker<'_>,
    entries: impl IntoIterator<Item = &'a Spanned<String>>,
    field: &'static str,
) -> CidrSet {
    let mut nets = Vec::new();
    for entry in entries {
        match entry.get_ref().parse::<Cidr>() {
            Ok(cidr) => nets.push(cidr),
            Err(reason) => {
                let at = c.at(entry.span());
                let value = entry.get_ref().clone();
                c.errors.push(ConfigError::BadNetwork {
                    at,
                    field,
                    value,
                    reason,
                });
            }
        }
    }
    CidrSet::new(nets)
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

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::parse_size;
    use crate::config::tests::errors;
    use crate::config::{from_str, Edge};

    const ROUTE: &str =
        "\n[upstream.u]\nservers = [\"127.0.0.1:1\"]\n\n[[route]]\nupstream = \"u\"\n";

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("32KiB"), Ok(32 * 1024));
        assert_eq!(parse_size("1 MiB"), Ok(1 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        for bad in [
            "",
            "1",
            "1KB",
            "1.5MiB",
            "-1B",
            "KiB",
            "99999999999999999999GiB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_and_overrides() {
        let src = format!(
            "[[listener]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\n{ROUTE}\n[[listener]]\nname = \"b\"\nlisten = \"127.0.0.1:2\"\ntls = {{ certs = [\"c\"] }}\nmax_connections = 5\nmax_header_size = \"16KiB\"\nmax_uri_length = \"2KiB\"\nheader_timeout = \"3s\"\nkeepalive_timeout = \"30s\"\ntls_handshake_timeout = \"2s\"\nh2_max_concurrent_streams = 50\ntrusted_proxies = [\"10.0.0.0/8\"]\nhsts = \"max-age=60\"\nstrict_sni = true\n"
        );
        let cfg = from_str(Path::new("/gw.toml"), &src).unwrap();
        assert_eq!(cfg.listeners[0].edge, Edge::default());
        let b = &cfg.listeners[1].edge;
        assert_eq!(b.max_connections, 5);
        assert_eq!(b.max_header_size, 16 * 1024);
        assert_eq!(b.max_uri_length, 2 * 1024);
        assert_eq!(b.header_timeout, Duration::from_secs(3));
        assert_eq!(b.keepalive_timeout, Duration::from_secs(30));
        assert_eq!(b.tls_handshake_timeout, Duration::from_secs(2));
        assert_eq!(b.h2_max_concurrent_streams, 50);
        assert_eq!(b.trusted_proxies.networks().len(), 1);
        assert_eq!(b.hsts.as_deref(), Some("max-age=60"));
        assert!(b.strict_sni);
        assert_eq!(cfg.routes[0].max_body_size, 1 << 20);
        assert!(!cfg.routes[0].websocket);
    }

    #[test]
    fn bad_values_are_located() {
        let errs = errors(&format!(
            "[[listener]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\nmax_header_size = \"32KB\"\nmax_uri_length = \"8B\"\nmax_connections = 0\ntrusted_proxies = [\"10.0.0.1/8\"]\nhsts = \"max-age=1\"\nstrict_sni = true\nheader_timeout = \"soon\"\n{ROUTE}max_body_size = \"lots\"\n"
        ));
        let expect = [
            ":4:19: \"32KB\" is not a size: write a whole number with a unit",
            ":5:18: \"8B\" is not a size: must be at least 16B",
            ":6:19: max_connections must be at least 1",
            ":7:20: trusted_proxies entry \"10.0.0.1/8\" has host bits set",
            ":8:8: hsts is only sent over HTTPS",
            ":9:14: strict_sni needs a listener with tls",
            ":10:18: \"soon\" is not a duration",
            ":17:17: \"lots\" is not a size",
        ];
        assert_eq!(errs.len(), expect.len(), "{errs:#?}");
        for (err, want) in errs.iter().zip(expect) {
            assert!(err.contains(want), "{want:?} not in {err:?}");
        }
    }
}
