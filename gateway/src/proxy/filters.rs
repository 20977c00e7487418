//! The matched route's filter chain on the request path: its request hook before the
//! request goes upstream (answered here instead for a redirect or a CORS preflight),
//! and its response hook on the backend's response head. Routes without filters have
//! no chain and never get here.

use std::sync::Arc;

use bytes::Bytes;
use http::header::HOST;
use http::HeaderValue;

use super::downstream::{DownError, Downstream, Reply, Request, RequestId};
use crate::http1::OutBody;
use crate::routes::filters::redirect::Scheme;
use crate::routes::{Answer, Chain, Forward, OnRequest, RequestHead};

/// A forwarded request's filters: the route's chain, for the response hook, and what
/// the request hook decided.
#[derive(Debug)]
pub(super) struct Filtered {
    pub chain: Arc<Chain>,
    pub forward: Forward,
}

/// Runs `chain`'s request hook on `req` (its headers are changed in place).
pub(super) fn on_request(chain: &Chain, req: &mut Request, tls: bool) -> OnRequest {
    // Cloned (a reference count) so that the headers can be changed meanwhile.
    let host: Option<HeaderValue> = match req.uri.authority() {
        Some(_) => None,
        None => req.headers.get(HOST).cloned(),
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
