//! What the proxy reads off a request: its authority and host, the hash key, whether it
//! is a WebSocket upgrade, and whether the connection's certificate covers its host.

use http::header::HOST;

use super::downstream::Request;
use super::Client;
use crate::config::HashKey;
use crate::tls::Handshake;
use crate::upstream::hash_of;

/// Whether the certificate this TLS connection was served covers `host`; true on
/// connections without one (plain HTTP).
pub(super) fn served_covers(client: &Client, host: &str) -> bool {
    let served = client
        .ssl
        .as_ref()
        .and_then(|ssl| ssl.extension.get::<Handshake>());
    served.is_none_or(|h| h.served.covers(host))
}

/// A request to switch to the WebSocket protocol.
pub(super) fn is_websocket_upgrade(req: &Request) -> bool {
    req.headers
        .get(http::header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

/// The `consistent_hash` key of the request, if it has one.
pub(super) fn hash_key(req: &Request, key: &HashKey, client: &Client) -> Option<u64> {
    match key {
        HashKey::Header(name) => req
            .headers
            .get(name.as_str())
            .map(|v| hash_of(v.as_bytes())),
        HashKey::Cookie(name) => req
            .headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                (k == name).then(|| hash_of(v.as_bytes()))
            }),
        HashKey::ClientIp => client.ip.map(|ip| hash_of(&ip)),
        HashKey::Path => Some(hash_of(req.uri.path().as_bytes())),
    }
}

/// The request's authority: the URI's (HTTP/2 `:authority`, absolute-form) or the Host header.
pub(super) fn request_authority(req: &Request) -> Option<&str> {
    match req.uri.authority() {
        Some(a) => Some(a.as_str()),
        None => req.headers.get(HOST).and_then(|h| h.to_str().ok()),
    }
}

/// The request's host without its port (IPv6 literals keep their brackets).
pub(crate) fn request_host(req: &Request) -> Option<&str> {
    request_authority(req).map(strip_port)
}

fn strip_port(authority: &str) -> &str {
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    host.split_once(':').map_or(host, |(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_stripped_from_hosts() {
        assert_eq!(strip_port("a.test:8443"), "a.test");
        assert_eq!(strip_port("a.test"), "a.test");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
        assert_eq!(strip_port("u@a.test:1"), "a.test");
    }
}
