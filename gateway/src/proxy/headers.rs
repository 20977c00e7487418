//! Header rewriting between the legs: hop-by-hop headers dropped both ways, and the
//! `X-Forwarded-*` / `Forwarded` headers set from what the gateway saw.

use std::io::Write;
use std::net::IpAddr;

use bytes::Bytes;

use http::header::{
    HeaderName, CONNECTION, CONTENT_LENGTH, HOST, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, HeaderValue, StatusCode};
use pingora::{ErrorType::InvalidHTTPHeader, OrErr};

use crate::config::Cidr;

// Names as `HeaderName`s: map operations on them parse nothing.
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const FORWARDED: &str = "forwarded";
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Header names a `Connection` header may not remove: the message's framing and host.
fn protected(name: &str) -> bool {
    [
        HOST.as_str(),
        CONTENT_LENGTH.as_str(),
        TRANSFER_ENCODING.as_str(),
    ]
    .iter()
    .any(|p| name.eq_ignore_ascii_case(p))
}

/// The headers `Connection` names (lower case), skipping protected ones.
fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|n| !n.is_empty() && !protected(n))
        .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
        .collect()
}

/// Whether `name` is hop-by-hop in itself (headers a `Connection` header names come on
/// top, and only with a `Connection` header).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == CONNECTION
        || name == TE
        || name == TRAILER
        || name == UPGRADE
        || name == KEEP_ALIVE
        || name == PROXY_CONNECTION
}

/// Drops hop-by-hop headers from a request going upstream. With `upgrade` (a WebSocket
/// upgrade on a route that allows it) `Upgrade` is kept and `Connection: upgrade` sent.
pub(crate) fn strip_request(headers: &mut HeaderMap, upgrade: bool) {
    // Most requests have none: one pass over the names instead of a lookup per name.
    if !upgrade && !headers.keys().any(is_hop_by_hop) {
        return;
    }
    if headers.contains_key(CONNECTION) {
        for name in connection_named(headers) {
            if !(upgrade && name == UPGRADE) {
                headers.remove(&name);
            }
        }
        headers.remove(CONNECTION);
    }
    for name in [KEEP_ALIVE, PROXY_CONNECTION, TE, TRAILER] {
        headers.remove(name);
    }
    if upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(UPGRADE);
    }
}

/// Drops hop-by-hop headers from a response going to the client (pingora writes the
/// client connection's own `Connection`); a `101` keeps its `Upgrade`.
pub(crate) fn strip_response(headers: &mut HeaderMap, status: StatusCode) {
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;
    if headers.contains_key(CONNECTION) {
        for name in connection_named(headers) {
            if !(switching && name == UPGRADE) {
                headers.remove(&name);
            }
        }
        if !switching {
            headers.remove(CONNECTION);
        }
    }
    for name in [KEEP_ALIVE, PROXY_CONNECTION, TE, TRAILER] {
        headers.remove(name);
    }
    if !switching {
        headers.remove(UPGRADE);
    }
}

/// An IP address as text, on the stack: IPv4 (the common case, once per request) is
/// written without the formatting machinery.
struct IpText {
    buf: [u8; 48],
}

impl Default for IpText {
    fn default() -> Self {
        Self { buf: [0; 48] }
    }
}

impl IpText {
    fn write(&mut self, ip: IpAddr) -> &[u8] {
        match ip {
            IpAddr::V4(v4) => {
                let mut len = 0;
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        self.buf[len] = b'.';
                        len += 1;
                    }
                    let digits = [octet / 100, octet / 10 % 10, octet % 10];
                    let skip = if octet >= 100 {
                        0
                    } else if octet >= 10 {
                        1
                    } else {
                        2
                    };
                    for d in &digits[skip..] {
                        self.buf[len] = b'0' + d;
                        len += 1;
                    }
                }
                &self.buf[..len]
            }
            IpAddr::V6(v6) => {
                let mut cursor = std::io::Cursor::new(&mut self.buf[..]);
                // 45 bytes at most: the buffer cannot overflow.
                let _ = write!(cursor, "{v6}");
                let len = cursor.position() as usize;
                &self.buf[..len]
            }
        }
    }
}

/// Whether `peer` is one of the `trusted` proxies.
pub(crate) fn is_trusted(trusted: &[Cidr], peer: Option<IpAddr>) -> bool {
    !trusted.is_empty() && peer.is_some_and(|ip| trusted.iter().any(|c| c.contains(ip)))
}

/// Sets `X-Forwarded-For`, `-Proto` and `-Host` on a request going upstream. From a
/// trusted peer the client's values are kept (`X-Forwarded-For` gets the peer
/// appended); from anyone else every `X-Forwarded-*` and `Forwarded` header is replaced.
pub(crate) fn set_forwarded(
    headers: &mut HeaderMap,
    peer: Option<IpAddr>,
    trusted: bool,
    proto: &'static str,
    host: Option<HeaderValue>,
) -> pingora::Result<()> {
    if !trusted {
        let sent: Vec<HeaderName> = headers
            .keys()
            .filter(|k| k.as_str().starts_with("x-forwarded-") || k.as_str() == FORWARDED)
            .cloned()
            .collect();
        for name in sent {
            headers.remove(&name);
        }
    }
    if let Some(ip) = peer {
        let mut text = IpText::default();
        let ip = text.write(ip);
        let xff = if trusted && headers.contains_key(X_FORWARDED_FOR) {
            let mut xff = Vec::new();
            for prev in headers.get_all(X_FORWARDED_FOR) {
                xff.extend_from_slice(prev.as_bytes());
                xff.extend_from_slice(b", ");
            }
            xff.extend_from_slice(ip);
            HeaderValue::from_maybe_shared(Bytes::from(xff))
        } else {
            HeaderValue::from_bytes(ip)
        };
        let xff = xff.or_err(InvalidHTTPHeader, "X-Forwarded-For")?;
        headers.insert(X_FORWARDED_FOR, xff);
    }
    if !(trusted && headers.contains_key(X_FORWARDED_PROTO)) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
    if let Some(host) = host {
        if !(trusted && headers.contains_key(X_FORWARDED_HOST)) {
            headers.insert(X_FORWARDED_HOST, host);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> HeaderMap {
        let mut r = HeaderMap::new();
        for (k, v) in headers {
            let name = HeaderName::from_bytes(k.as_bytes()).unwrap();
            r.append(name, HeaderValue::from_str(v).unwrap());
        }
        r
    }

    #[test]
    fn hop_by_hop_headers_are_dropped_upstream() {
        let mut r = request(&[
            ("connection", "close, x-secret, content-length"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "x-t"),
            ("upgrade", "websocket"),
            ("proxy-connection", "keep-alive"),
            ("content-length", "0"),
            ("x-kept", "1"),
        ]);
        strip_request(&mut r, false);
        let names: Vec<&str> = r.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["content-length", "x-kept"]);
    }

    #[test]
    fn websocket_upgrade_keeps_upgrade() {
        let mut r = request(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        strip_request(&mut r, true);
        assert_eq!(r["upgrade"], "websocket");
        assert_eq!(r["connection"], "upgrade");
    }

    #[test]
    fn forwarded_headers_from_untrusted_peers_are_replaced() {
        let peer: IpAddr = "192.0.2.7".parse().unwrap();
        let host = HeaderValue::from_static("a.test");
        let sent = [
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-port", "1"),
            ("forwarded", "for=1.2.3.4"),
        ];
        let mut r = request(&sent);
        set_forwarded(&mut r, Some(peer), false, "https", Some(host.clone())).unwrap();
        assert_eq!(r["x-forwarded-for"], "192.0.2.7");
        assert_eq!(r["x-forwarded-proto"], "https");
        assert_eq!(r["x-forwarded-host"], "a.test");
        assert!(r.get("x-forwarded-port").is_none());
        assert!(r.get("forwarded").is_none());

        let mut r = request(&sent);
        set_forwarded(&mut r, Some(peer), true, "https", Some(host)).unwrap();
        assert_eq!(r["x-forwarded-for"], "1.2.3.4, 192.0.2.7");
        assert_eq!(r["x-forwarded-proto"], "http");
        assert_eq!(r["forwarded"], "for=1.2.3.4");
    }

    #[test]
    fn addresses_are_written_as_text() {
        for ip in [
            "0.0.0.0",
            "9.10.99.100",
            "255.255.255.255",
            "192.0.2.7",
            "::1",
            "2001:db8::ff00:42:8329",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(IpText::default().write(ip), ip.to_string().as_bytes());
        }
        let long: IpAddr = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
            .parse()
            .unwrap();
        assert_eq!(IpText::default().write(long), long.to_string().as_bytes());
    }

    #[test]
    fn trust_needs_a_matching_network() {
        let nets: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        assert!(is_trusted(&nets, Some("10.1.2.3".parse().unwrap())));
        assert!(is_trusted(&nets, Some("::ffff:10.1.2.3".parse().unwrap())));
        assert!(!is_trusted(&nets, Some("11.0.0.1".parse().unwrap())));
        assert!(!is_trusted(&[], Some("10.1.2.3".parse().unwrap())));
    }
}
