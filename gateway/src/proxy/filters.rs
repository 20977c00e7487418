//! The matched route's filter chain on the request path: its request hook before the
//! request goes upstream (answered here instead for a redirect or a CORS preflight),
//! and its response hook on the backend's response head. Routes without filters have
//! no chain and never get here.

use bytes::Bytes;
use http::header::HOST;
use http::HeaderValue;

use super::downstream::{DownError, Downstream, Reply, Request, RequestId};
use crate::http1::OutBody;
use crate::routes::filters::compression::{EncodeError, Encoder};
use crate::routes::filters::redirect::Scheme;
use crate::routes::{Answer, Chain, Forward, OnRequest, RequestHead};

/// What a forwarded request's chain decided (when it decided anything).
#[derive(Debug)]
pub(super) struct Filtered {
    pub forward: Forward,
    /// The response body's encoder, when the response hook chose to compress it.
    pub encoder: Option<Encoder>,
}

/// Runs `chain`'s request hook on `req` (its headers are changed in place).
pub(super) fn on_request(chain: &Chain, req: &mut Request, tls: bool) -> OnRequest {
    // Only a redirect reads it. Cloned (a reference count) so that the headers can be
    // changed meanwhile.
    let host: Option<HeaderValue> = match req.uri.authority() {
        None if chain.redirect.is_some() => req.headers.get(HOST).cloned(),
        _ => None,
    };
    let authority = match req.uri.authority() {
        Some(a) => Some(a.as_str()),
        None => host.as_ref().and_then(|h| h.to_str().ok()),
    };
    let mut head = RequestHead {
        method: &req.method,
        scheme: if tls { Scheme::Https } else { Scheme::Http },
        authority,
        path: req.uri.path(),
        query: req.uri.query().unwrap_or(""),
        headers: &mut req.headers,
    };
    chain.on_request(&mut head)
}

/// Writes a response the chain decided on (a redirect, a CORS preflight's `204`), with
/// no body; returns its status.
pub(super) async fn answer<D: Downstream>(
    down: &mut D,
    answer: Answer,
    request_id: &RequestId,
    hsts: Option<&HeaderValue>,
) -> Result<u16, DownError> {
    let status = answer.status;
    let reply = Reply {
        status,
        reason: None,
        headers: answer.headers,
        relayed: false,
        extra: &[],
        request_id,
        hsts,
        body: OutBody::Length(0),
    };
    down.write_head(reply, Bytes::new(), true).await?;
    Ok(status.as_u16())
}

/// A piece of the response body through `encoder` (the stream's end too when `end`):
/// what the encoder gave out, often nothing until it has a block's worth.
pub(super) fn encode(encoder: &mut Encoder, data: &[u8], end: bool) -> Result<Bytes, EncodeError> {
    let mut out = Vec::new();
    if !data.is_empty() {
        encoder.write(data, &mut out)?;
    }
    if end {
        encoder.finish(&mut out)?;
    }
    Ok(Bytes::from(out))
}
