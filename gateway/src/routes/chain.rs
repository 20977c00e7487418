//! A route's filter chain: the filters it configures, run at three fixed points (the
//! request head, the response head, the response body through an encoder), as
//! Envoy's HTTP filters and pingora's `HttpModule`s run. A filter that is not
//! configured is not in the chain; a route with none runs nothing.

use http::{HeaderMap, HeaderValue, Method, StatusCode};

use super::filters::compression::{Algorithm, Compression, Encoder};
use super::filters::cors::{Cors, CorsRequest};
use super::filters::headers::HeaderModifier;
use super::filters::redirect::{Origin, Redirect, Scheme};
use super::filters::rewrite::Rewrite;

/// A route's validated filters, each `None` when not configured.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Chain {
    pub request_headers: Option<HeaderModifier>,
    pub response_headers: Option<HeaderModifier>,
    pub rewrite: Option<Rewrite>,
    /// Answered by the gateway: such a route has no backends.
    pub redirect: Option<Redirect>,
    pub cors: Option<Cors>,
    /// The `[compression]` policy, when the route compresses.
    pub compression: Option<Compression>,
}

/// The request head as the chain sees it.
#[derive(Debug)]
pub struct RequestHead<'a> {
    pub method: &'a Method,
    /// The scheme the client used (the listener's).
    pub scheme: Scheme,
    /// `Host` or `:authority` as sent (port included), if any.
    pub authority: Option<&'a str>,
    /// The normalized path the route matched.
    pub path: &'a str,
    /// The query without `?`; empty: none.
    pub query: &'a str,
    /// Changed in place by `request_headers`.
    pub headers: &'a mut HeaderMap,
}

/// What the request head hook decided.
#[derive(Debug)]
pub enum OnRequest {
    /// Send it upstream, changed as [`Forward`] says.
    Forward(Forward),
    /// Answer it here, with no body (a redirect, a CORS preflight).
    Answer(Answer),
}

/// How a forwarded request differs from what the client sent (besides its headers,
/// already changed), and what the response hooks need to know about it.
#[derive(Debug, Default)]
pub struct Forward {
    /// The new request target (path and query), when rewritten.
    pub target: Option<String>,
    /// The `Host` to send instead of the client's.
    pub host: Option<HeaderValue>,
    pub exchange: Exchange,
}

/// Per request, what the response hooks need from the request (nothing is kept for a
/// route without CORS or compression).
#[derive(Debug, Default, Clone)]
pub struct Exchange {
    /// The request's `Origin`, when the CORS policy allows it.
    origin: Option<HeaderValue>,
    /// The negotiated content coding.
    coding: Option<Algorithm>,
}

impl Exchange {
    /// Whether the response hooks need nothing from the request.
    pub fn is_empty(&self) -> bool {
        self.origin.is_none() && self.coding.is_none()
    }
}

impl Forward {
    /// Whether the request goes upstream as the client sent it (headers aside) and
    /// the response hooks need nothing from it.
    pub fn is_empty(&self) -> bool {
        self.target.is_none() && self.host.is_none() && self.exchange.is_empty()
    }
}

/// A response the gateway writes itself (with `Content-Length: 0`).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
}

impl Chain {
    /// Whether the route configures no filter at all.
    pub fn is_empty(&self) -> bool {
        self.request_headers.is_none()
            && self.response_headers.is_none()
            && self.rewrite.is_none()
            && self.redirect.is_none()
            && self.cors.is_none()
            && self.compression.is_none()
    }

    /// The request head hook, in this order: a CORS preflight is answered (`204`), a
    /// redirect is answered, the coding is negotiated (from the client's
    /// `Accept-Encoding`), `request_headers` apply, and the path and Host are rewritten.
    pub fn on_request(&self, req: &mut RequestHead<'_>) -> OnRequest {
        let mut exchange = Exchange::default();
        if let Some(cors) = &self.cors {
            match cors.request(req.method, req.headers) {
                CorsRequest::Pass => {}
                CorsRequest::Actual(origin) => exchange.origin = Some(origin),
                CorsRequest::Preflight(headers) => {
                    return OnRequest::Answer(self.answer(
                        &exchange,
                        StatusCode::NO_CONTENT,
                        headers,
                    ));
                }
            }
        }
        if let Some(redirect) = &self.redirect {
            return OnRequest::Answer(self.redirect(redirect, req, &exchange));
        }
        if let Some(compression) = &self.compression {
            exchange.coding = compression.request(req.method, req.headers);
        }
        if let Some(modifier) = &self.request_headers {
            modifier.apply(req.headers);
        }
        let mut forward = Forward {
            exchange,
            ..Forward::default()
        };
        if let Some(rewrite) = &self.rewrite {
            let mut target = String::new();
            if rewrite.target(req.path, req.query, &mut target) {
                forward.target = Some(target);
            }
            forward.host = rewrite.host.clone();
        }
        OnRequest::Forward(forward)
    }

    /// The response head hook (for the backend's response): the CORS headers, then
    /// `response_headers`, then compression's edits. Returns the encoder the body is
    /// to go through, when it is compressed. Informational (1xx) responses are left
    /// alone.
    pub fn on_response(
        &self,
        exchange: &Exchange,
        status: StatusCode,
        headers: &mut HeaderMap,
    ) -> Option<Encoder> {
        if status.is_informational() {
            return None;
        }
        self.response_head(exchange, headers);
        self.compression
            .as_ref()
            .and_then(|c| c.response(exchange.coding, status, headers))
    }

    fn response_head(&self, exchange: &Exchange, headers: &mut HeaderMap) {
        if let Some(cors) = &self.cors {
            cors.response(exchange.origin.as_ref(), headers);
        }
        if let Some(modifier) = &self.response_headers {
            modifier.apply(headers);
        }
    }

    /// A local answer gets the route's response headers too (a redirect followed by a
    /// cross-origin fetch needs its CORS headers).
    fn answer(&self, exchange: &Exchange, status: StatusCode, mut headers: HeaderMap) -> Answer {
        self.response_head(exchange, &mut headers);
        Answer { status, headers }
    }

    fn redirect(&self, redirect: &Redirect, req: &RequestHead<'_>, exchange: &Exchange) -> Answer {
        let mut location = String::new();
        redirect.location(
            &Origin {
                scheme: req.scheme,
                authority: req.authority,
                path: req.path,
                query: req.query,
            },
            &mut location,
        );
        let mut headers = HeaderMap::with_capacity(4);
        // Built from a validated config and a checked request target and host.
        if let Ok(value) = HeaderValue::try_from(location) {
            headers.insert(http::header::LOCATION, value);
        }
        self.answer(exchange, redirect.status, headers)
    }
}

#[cfg(test)]
mod tests;
