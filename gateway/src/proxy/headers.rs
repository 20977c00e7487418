//! Header rewriting between the legs, without editing or copying the maps: which fields
//! are left out as a head is written (hop-by-hop ones both ways, the client's
//! `X-Forwarded-*` and `Forwarded` from an untrusted peer), and the `X-Forwarded-*`
//! fields the gateway adds, as slices. An HTTP/2 response, which is written from a
//! map, has its hop-by-hop fields removed in place.

use std::net::IpAddr;

use http::header::{
    HeaderName, CONNECTION, CONTENT_LENGTH, HOST, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, StatusCode};

use crate::cidr::CidrSet;

// Names as `HeaderName`s: comparisons and map operations on them parse nothing.
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const FORWARDED: &str = "forwarded";
pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Header names a `Connection` header may not remove: the message's framing and host.
fn protected(name: &[u8]) -> bool {
    [
        HOST.as_str(),
        CONTENT_LENGTH.as_str(),
        TRANSFER_ENCODING.as_str(),
    ]
    .iter()
    .any(|p| name.eq_ignore_ascii_case(p.as_bytes()))
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

/// Whether a `Connection` field of `headers` names `name` (never a protected one).
fn named_by_connection(headers: &HeaderMap, name: &HeaderName) -> bool {
    headers.get_all(CONNECTION).iter().any(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .map(<[u8]>::trim_ascii)
            .any(|option| {
                option.eq_ignore_ascii_case(name.as_str().as_bytes()) && !protected(option)
            })
    })
}

/// The fields of a message left out when it goes on to the other leg.
#[derive(Clone, Copy)]
pub(crate) struct Hops<'a> {
    headers: &'a HeaderMap,
    /// Whether the message has a `Connection` field (which may name more fields).
    connection: bool,
    /// A WebSocket upgrade: `Upgrade` (and, on a 101, `Connection`) go on.
    upgrade: bool,
    /// `Upgrade` is passed on, and so is `Connection` (a 101's, written as it came).
    keep_connection: bool,
}

impl<'a> Hops<'a> {
    /// A request going upstream; `upgrade`: a WebSocket upgrade the route allows (its
    /// `Upgrade` goes on; the gateway writes `Connection: upgrade` itself).
    pub(crate) fn request(headers: &'a HeaderMap, upgrade: bool) -> Self {
        Self {
            headers,
            connection: headers.contains_key(CONNECTION),
            upgrade,
            keep_connection: false,
        }
    }

    /// A response going to the client: a `101` keeps its `Upgrade` and `Connection`.
    pub(crate) fn response(headers: &'a HeaderMap, status: StatusCode) -> Self {
        let switching = status == StatusCode::SWITCHING_PROTOCOLS;
        Self {
            headers,
            connection: headers.contains_key(CONNECTION),
            upgrade: switching,
            keep_connection: switching,
        }
    }

    /// Whether the field `name` is left out.
    pub(crate) fn skip(&self, name: &HeaderName) -> bool {
        if is_hop_by_hop(name) {
            return !(self.upgrade && name == UPGRADE
                || self.keep_connection && name == CONNECTION);
        }
        self.connection && named_by_connection(self.headers, name)
    }
}

/// Removes from a response's `headers` the fields [`Hops::response`] leaves out: for a
/// head written from its map (HTTP/2). Most heads have none, and cost one pass over
/// their names.
pub(crate) fn strip_response(headers: &mut HeaderMap, status: StatusCode) {
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;
    if headers.contains_key(CONNECTION) {
        let named: Vec<HeaderName> = headers
            .keys()
            .filter(|name| !is_hop_by_hop(name) && named_by_connection(headers, name))
            .cloned()
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in [
        CONNECTION,
        KEEP_ALIVE,
        PROXY_CONNECTION,
        TE,
        TRAILER,
        UPGRADE,
    ] {
        if !(switching && (name == UPGRADE || name == CONNECTION)) {
            headers.remove(name);
        }
    }
}

/// Whether `name` is one of the forwarding fields a client may only send through a
/// trusted proxy.
pub(crate) fn is_forwarding(name: &HeaderName) -> bool {
    let name = name.as_str();
    name.starts_with("x-forwarded-") || name == FORWARDED
}

/// Whether `peer` is one of the `trusted` proxies.
pub(crate) fn is_trusted(trusted: &CidrSet, peer: Option<IpAddr>) -> bool {
    peer.is_some_and(|ip| trusted.contains(ip))
}

/// `X-Forwarded-For` of a request from a trusted proxy: the chain it sent, then the
/// peer (a copy: only trusted proxies' requests need one).
pub(crate) fn forwarded_chain(headers: &HeaderMap, peer: &[u8]) -> Vec<u8> {
    let mut chain = Vec::new();
    for prev in headers.get_all(X_FORWARDED_FOR) {
        chain.extend_from_slice(prev.as_bytes());
        chain.extend_from_slice(b", ");
    }
    chain.extend_from_slice(peer);
    chain
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn map(headers: &[(&str, &str)]) -> HeaderMap {
        let mut r = HeaderMap::new();
        for (k, v) in headers {
            let name = HeaderName::from_bytes(k.as_bytes()).unwrap();
            r.append(name, HeaderValue::from_str(v).unwrap());
        }
        r
    }

    fn kept(hops: Hops<'_>, headers: &HeaderMap) -> Vec<String> {
        headers
            .keys()
            .filter(|k| !hops.skip(k))
            .map(|k| k.as_str().to_owned())
            .collect()
    }

    #[test]
    fn hop_by_hop_headers_are_left_out_both_ways() {
        let r = map(&[
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
        assert_eq!(
            kept(Hops::request(&r, false), &r),
            ["content-length", "x-kept"]
        );
        assert_eq!(
            kept(Hops::response(&r, StatusCode::OK), &r),
            ["content-length", "x-kept"]
        );
        let mut moved = r.clone();
        strip_response(&mut moved, StatusCode::OK);
        let names: Vec<&str> = moved.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["content-length", "x-kept"]);
    }

    #[test]
    fn websocket_upgrades_keep_upgrade() {
        let r = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert_eq!(kept(Hops::request(&r, true), &r), ["upgrade"]);
        let switching = StatusCode::SWITCHING_PROTOCOLS;
        assert_eq!(
            kept(Hops::response(&r, switching), &r),
            ["connection", "upgrade"]
        );
        let mut moved = r.clone();
        strip_response(&mut moved, switching);
        assert_eq!(moved.len(), 2);
    }

    #[test]
    fn forwarding_fields_are_recognised() {
        for name in ["x-forwarded-for", "x-forwarded-port", "forwarded"] {
            assert!(is_forwarding(&HeaderName::from_static(name)), "{name}");
        }
        assert!(!is_forwarding(&HOST));
        let chain = forwarded_chain(&map(&[("x-forwarded-for", "1.2.3.4")]), b"192.0.2.7");
        assert_eq!(chain, b"1.2.3.4, 192.0.2.7");
    }

    #[test]
    fn trust_needs_a_matching_network() {
        let nets: CidrSet = ["10.0.0.0/8".parse().unwrap()].into_iter().collect();
        assert!(is_trusted(&nets, Some("10.1.2.3".parse().unwrap())));
        assert!(is_trusted(&nets, Some("::ffff:10.1.2.3".parse().unwrap())));
        assert!(!is_trusted(&nets, Some("11.0.0.1".parse().unwrap())));
        assert!(!is_trusted(
            &CidrSet::default(),
            Some("10.1.2.3".parse().unwrap())
        ));
    }
}
