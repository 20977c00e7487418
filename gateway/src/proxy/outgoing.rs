//! What goes upstream with a request, whichever protocol the backend speaks: the
//! client's fields that pass (hop-by-hop ones and an untrusted client's forwarding
//! ones left out), and the fields the gateway adds (`Host` or `:authority`,
//! `X-Forwarded-*`, the request id, a verified client certificate), as slices.

use http::header::{HeaderName, HOST};
use http::{HeaderValue, Version};

use super::downstream::Request;
use super::headers::{self, Hops};
use super::{Client, RequestCtx, REQUEST_ID};
use crate::ip_text::IpText;
use crate::telemetry::traces;
use crate::tls::Handshake;

/// Header fields written as slices after a head's own: at most eight (a request adds
/// host, x-forwarded-for, -proto, -host, x-request-id, x-forwarded-client-cert,
/// traceparent and connection at most).
#[derive(Default)]
pub(super) struct Extras<'a> {
    fields: [(&'a [u8], &'a [u8]); 8],
    len: usize,
}

impl<'a> Extras<'a> {
    pub(super) fn push(&mut self, name: &'a [u8], value: &'a [u8]) {
        if let Some(slot) = self.fields.get_mut(self.len) {
            *slot = (name, value);
            self.len += 1;
        }
    }

    pub(super) fn as_slice(&self) -> &[(&'a [u8], &'a [u8])] {
        self.fields.get(..self.len).unwrap_or_default()
    }
}

/// The client's address as text and its `X-Forwarded-For` chain (from a trusted
/// proxy that sent one): what the added fields are cut from.
pub(super) struct Sources {
    ip: Option<IpText>,
    chain: Option<Vec<u8>>,
}

impl Sources {
    pub(super) fn new(req: &Request, ctx: &RequestCtx, client: &Client) -> Self {
        let ip = client.ip.map(IpText::new);
        let chain = match &ip {
            Some(ip) if ctx.trusted && req.headers.contains_key(headers::X_FORWARDED_FOR) => {
                Some(headers::forwarded_chain(&req.headers, ip.as_bytes()))
            }
            _ => None,
        };
        Self { ip, chain }
    }
}

/// Which of the client's fields are left out.
pub(super) struct Skip<'a> {
    hops: Hops<'a>,
    replace_host: bool,
    trusted: bool,
    peer_known: bool,
    /// `traceparent` (and `tracestate` of a trace restarted) replaced by the gateway's.
    traced: Option<bool>,
}

impl Skip<'_> {
    pub(super) fn skip(&self, name: &HeaderName) -> bool {
        self.hops.skip(name)
            || name == REQUEST_ID
            || self.traced.is_some_and(|continued| {
                name == traces::TRACEPARENT || (!continued && name == traces::TRACESTATE)
            })
            || (self.replace_host && name == HOST)
            || (!self.trusted && headers::is_forwarding(name))
            || (self.peer_known && name == headers::X_FORWARDED_FOR)
    }
}

/// A request as it goes upstream.
pub(super) struct Outgoing<'a> {
    /// The request target: the route's rewrite, or the client's path and query.
    pub(super) target: &'a str,
    /// The host: the route's rewrite, else the client's `:authority` or `Host`.
    pub(super) host: Option<&'a [u8]>,
    pub(super) extra: Extras<'a>,
    pub(super) skip: Skip<'a>,
}

/// The client's fields but hop-by-hop ones (and the forwarding ones of an untrusted
/// client), then `Host` (HTTP/2's `:authority`, or a rewrite's), `X-Forwarded-*`, the
/// request id and a verified client certificate.
pub(super) fn outgoing<'a>(
    proto: &'static str,
    req: &'a Request,
    ctx: &'a RequestCtx,
    client: &'a Client,
    sources: &'a Sources,
) -> Outgoing<'a> {
    let headers = &req.headers;
    let trusted = ctx.trusted;
    let authority = req.uri.authority().map(|a| a.as_str().as_bytes());
    let host = authority.or_else(|| headers.get(HOST).map(HeaderValue::as_bytes));
    // HTTP/2 has `:authority` where HTTP/1 has Host; a rewrite may set another one.
    let forward = ctx.filtered.as_ref().map(|f| &f.forward);
    let rewritten = forward
        .and_then(|f| f.host.as_ref())
        .map(HeaderValue::as_bytes);
    let replace_host =
        rewritten.is_some() || (req.version == Version::HTTP_2 && authority.is_some());
    let mut extra = Extras::default();
    if let Some(new_host) = rewritten.or(authority).filter(|_| replace_host) {
        extra.push(b"host", new_host);
    }
    match (&sources.chain, &sources.ip) {
        (Some(chain), _) => extra.push(b"x-forwarded-for", chain),
        (None, Some(ip)) => extra.push(b"x-forwarded-for", ip.as_bytes()),
        (None, None) => {}
    }
    if !(trusted && headers.contains_key(headers::X_FORWARDED_PROTO)) {
        extra.push(b"x-forwarded-proto", proto.as_bytes());
    }
    if let Some(host) = host {
        if !(trusted && headers.contains_key(headers::X_FORWARDED_HOST)) {
            extra.push(b"x-forwarded-host", host);
        }
    }
    extra.push(b"x-request-id", ctx.request_id.as_bytes());
    // A verified client certificate (the client's own field goes on only from a
    // trusted proxy, as the other forwarding fields).
    let handshake = client
        .ssl
        .as_ref()
        .and_then(|s| s.extension.get::<Handshake>());
    if let Some(cert) = handshake.and_then(|h| h.client_cert.as_ref()) {
        extra.push(b"x-forwarded-client-cert", cert.as_bytes());
    }
    if let Some(trace) = &ctx.trace {
        extra.push(b"traceparent", trace.header.as_bytes());
    }
    if ctx.upgrade {
        extra.push(b"connection", b"upgrade");
    }
    let skip = Skip {
        hops: Hops::request(headers, ctx.upgrade),
        replace_host,
        trusted,
        peer_known: sources.ip.is_some(),
        traced: ctx.trace.as_ref().map(|t| t.parent.is_some()),
    };
    let target = match forward.and_then(|f| f.target.as_ref()) {
        Some(rewritten) => rewritten.as_str(),
        None => req.uri.path_and_query().map_or("/", |pq| pq.as_str()),
    };
    Outgoing {
        target,
        host: rewritten.or(host),
        extra,
        skip,
    }
}
