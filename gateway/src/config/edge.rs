//! Validation of a listener's client-facing settings (limits, timeouts, TLS policy,
//! PROXY protocol, `allow`/`deny`) and the size and network helpers route policy shares.

use std::sync::Arc;

use toml::Spanned;

use super::error::ConfigError;
use super::file::ListenerFile;
use super::model::{AccessList, Cidr, CidrSet, Edge};
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
        proxy_protocol: None,
        access: d.access,
    };
    edge.trusted_proxies = networks(c, l.trusted_proxies.iter().flatten(), "trusted_proxies");
    if let Some(pp) = &l.proxy_protocol {
        let trusted = networks(c, &pp.get_ref().trusted, "proxy_protocol.trusted");
        if pp.get_ref().trusted.is_empty() {
            bad_value(
                c,
                pp,
                "proxy_protocol",
                "needs trusted = [...]: the load balancers' addresses, the only peers admitted",
            );
        }
        edge.proxy_protocol = Some(Arc::new(trusted));
    }
    edge.access = Arc::new(access_list(c, &l.allow, &l.deny));
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

/// The `allow` and `deny` lists of a listener or a route.
pub(super) fn access_list(
    c: &mut Checker<'_>,
    allow: &Option<Spanned<Vec<Spanned<String>>>>,
    deny: &Option<Vec<Spanned<String>>>,
) -> AccessList {
    let allow = allow.as_ref().map(|list| {
        if list.get_ref().is_empty() {
            bad_value(
                c,
                list,
                "allow",
                "is empty, which admits no one: leave it out to admit every address",
            );
        }
        networks(c, list.get_ref(), "allow")
    });
    AccessList {
        allow,
        deny: networks(c, deny.iter().flatten(), "deny"),
    }
}

pub(super) fn bad_value<T>(
    c: &mut Checker<'_>,
    v: &Spanned<T>,
    field: &'static str,
    reason: &'static str,
) {
    let at = c.at(v.span());
    c.errors.push(ConfigError::BadValue { at, field, reason });
}

/// Smallest sizes, with what the error says when a value is below.
const MIN_HEADER: (u64, &str) = (1024, "must be at least 1KiB");
const MIN_URI: (u64, &str) = (16, "must be at least 16B");

pub(super) fn opt_size(
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
    fn edge_policy_fields() {
        let src = format!(
            "[[listener]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\nproxy_protocol = {{ trusted = [\"10.0.0.0/8\"] }}\nallow = [\"0.0.0.0/0\"]\ndeny = [\"203.0.113.0/24\"]\n{ROUTE}allow = [\"10.1.0.0/16\"]\nmax_in_flight = 7\n\n[[route]]\npath_prefix = \"/b\"\nupstream = \"u\"\n"
        );
        let cfg = from_str(Path::new("/gw.toml"), &src).unwrap();
        let edge = &cfg.listeners[0].edge;
        let trusted = edge.proxy_protocol.as_ref().expect("proxy_protocol");
        assert!(trusted.contains("10.2.3.4".parse().unwrap()));
        assert!(edge.access.admits("198.51.100.1".parse().unwrap()));
        assert!(!edge.access.admits("203.0.113.1".parse().unwrap()));
        let route = &cfg.routes[0];
        let access = route.access.as_ref().expect("route access");
        assert!(access.admits("10.1.2.3".parse().unwrap()));
        assert!(!access.admits("10.2.2.3".parse().unwrap()));
        assert_eq!(route.max_in_flight, Some(7));
        // Without the fields: nothing to check.
        assert!(cfg.routes[1].access.is_none() && cfg.routes[1].max_in_flight.is_none());
        assert_eq!(Edge::default().proxy_protocol, None);
        assert!(Edge::default().access.admits_all());
    }

    #[test]
    fn bad_edge_policy_fields_are_located() {
        let errs = errors(&format!(
            "[[listener]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\nproxy_protocol = {{ trusted = [] }}\nallow = []\ndeny = [\"10.0.0.0/33\"]\n\n[[listener]]\nname = \"b\"\nlisten = \"127.0.0.1:2\"\nproxy_protocol = {{ trusted = [\"ten\"] }}\n{ROUTE}allow = [\"10.0.0.1/8\"]\ndeny = [\"x\"]\nmax_in_flight = 0\n"
        ));
        let expect = [
            ":4:18: proxy_protocol needs trusted = [...]",
            ":5:9: allow is empty, which admits no one",
            ":6:9: deny entry \"10.0.0.0/33\" has a prefix length out of range",
            ":11:31: proxy_protocol.trusted entry \"ten\" is not a network",
            ":18:10: allow entry \"10.0.0.1/8\" has host bits set",
            ":19:9: deny entry \"x\" is not a network",
            ":20:17: max_in_flight must be at least 1",
        ];
        assert_eq!(errs.len(), expect.len(), "{errs:#?}");
        for (err, want) in errs.iter().zip(expect) {
            assert!(err.contains(want), "{want:?} not in {err:?}");
        }
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
