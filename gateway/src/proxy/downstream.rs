//! What the request path needs of the client's side, whichever protocol it speaks: the
//! request head, its body, and the response written back (`Downstream`); HTTP/1
//! connections and HTTP/2 streams each implement it.

use std::future::Future;

use bytes::Bytes;
use http::header::HeaderName;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, Version};

use crate::http1::{Http1Error, OutBody};

/// A request head as the request path reads it (moved out of the protocol's own).
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) method: Method,
    /// Origin-form path and query (HTTP/1), or with scheme and authority (HTTP/2, an
    /// HTTP/1 absolute-form target).
    pub(crate) uri: Uri,
    pub(crate) version: Version,
    pub(crate) headers: HeaderMap,
}

/// The request's `X-Request-Id`: the client's valid one, or 32 random hex digits.
#[derive(Debug, Clone)]
pub(crate) enum RequestId {
    Client(HeaderValue),
    Generated([u8; 32]),
}

impl RequestId {
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Client(value) => value.as_bytes(),
            Self::Generated(text) => text,
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("-")
    }

    /// As a header value for a map (HTTP/2): marked sensitive, so HPACK sends it as a
    /// literal never indexed instead of filling the connection's table with ids that
    /// evict the fields that do repeat.
    pub(crate) fn header_value(&self) -> HeaderValue {
        let mut value = match self {
            Self::Client(value) => value.clone(),
            Self::Generated(text) => {
                HeaderValue::from_bytes(text).unwrap_or_else(|_| HeaderValue::from_static("-"))
            }
        };
        value.set_sensitive(true);
        value
    }
}

/// A response head to write.
pub(crate) struct Reply<'a> {
    pub(crate) status: StatusCode,
    /// A backend's reason phrase (HTTP/1 clients get it).
    pub(crate) reason: Option<&'a [u8]>,
    /// The backend's fields (moved; hop-by-hop ones are left out as it is written), or
    /// none for the gateway's own answers.
    pub(crate) headers: HeaderMap,
    /// Whether `headers` came from a backend (its hop-by-hop fields are left out).
    pub(crate) relayed: bool,
    /// The gateway's own fields (a JSON error's type, a redirect's location).
    pub(crate) extra: &'a [(HeaderName, HeaderValue)],
    pub(crate) request_id: &'a RequestId,
    pub(crate) hsts: Option<&'a HeaderValue>,
    pub(crate) body: OutBody,
}

/// What failed on the client's side.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DownError {
    #[error("HTTP/1 client connection")]
    H1(#[source] Http1Error),
    /// A body that grew past the route's `max_body_size`.
    #[error("request body over the route's max_body_size")]
    BodyTooLarge,
    #[error("HTTP/2 stream")]
    H2(#[source] h2::Error),
    /// The stream failed (was reset, say) while the response waited for window.
    #[error("cannot reserve capacity for the response body")]
    Capacity(#[source] h2::Error),
    /// The request path broke the protocol's rules (a bug: logged, not answered).
    #[error("invalid use of the client stream: {0}")]
    Misuse(&'static str),
}

impl DownError {
    /// The status to answer with; 0 when the client is gone (or the stream broken).
    pub(crate) fn status(&self) -> u16 {
        match self {
            Self::H1(e) if e.is_connection() => 0,
            Self::H1(Http1Error::BodyTooLarge { .. }) | Self::BodyTooLarge => 413,
            Self::H1(e) => match e.request_status() {
                0 => 0,
                _ => 400,
            },
            Self::H2(_) | Self::Capacity(_) | Self::Misuse(_) => 0,
        }
    }
}

impl From<Http1Error> for DownError {
    fn from(e: Http1Error) -> Self {
        match e {
            Http1Error::BodyTooLarge { .. } => Self::BodyTooLarge,
            e => Self::H1(e),
        }
    }
}

/// The client's side of one request (an HTTP/1 connection's current request, or an
/// HTTP/2 stream).
pub(crate) trait Downstream {
    /// At most `limit` bytes of request body: past it, reading fails with
    /// [`DownError::BodyTooLarge`].
    fn set_max_body(&mut self, limit: u64);

    /// Whether the request has no body at all.
    fn body_empty(&self) -> bool;

    /// Whether the request body has been read to its end.
    fn body_done(&self) -> bool;

    /// The next piece of the request body; `None` at its end. Cancel-safe.
    fn read_body(&mut self) -> impl Future<Output = Result<Option<Bytes>, DownError>> + Send;

    /// While `body`, the next piece of the request body as [`Downstream::read_body`];
    /// either way, fails when the client abandons the request (resets its HTTP/2
    /// stream), so that a response streaming from the backend stops with it.
    /// Cancel-safe.
    fn read_body_or_reset(
        &mut self,
        body: bool,
    ) -> impl Future<Output = Result<Option<Bytes>, DownError>> + Send;

    /// A piece of the request body the connection holds already (to go up with the
    /// request head); never waits. `None`: nothing buffered.
    fn buffered_body(&mut self) -> Result<Option<Bytes>, DownError>;

    /// Passes on an interim response (100 Continue, 103 Early Hints).
    fn write_interim(
        &mut self,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> impl Future<Output = Result<(), DownError>> + Send;

    /// Writes the response head, then `body` (its first bytes, or all of it with `end`).
    fn write_head(
        &mut self,
        reply: Reply<'_>,
        body: Bytes,
        end: bool,
    ) -> impl Future<Output = Result<(), DownError>> + Send;

    /// Writes response body bytes; `end`: they are the last.
    fn write_body(
        &mut self,
        data: Bytes,
        end: bool,
    ) -> impl Future<Output = Result<(), DownError>> + Send;

    /// Ends the response with trailer fields.
    fn write_trailers(
        &mut self,
        trailers: HeaderMap,
    ) -> impl Future<Output = Result<(), DownError>> + Send;

    /// Whether the request is a gRPC call answered over HTTP/2 (the gateway's own
    /// answers to it are then gRPC statuses).
    fn grpc(&self) -> bool {
        false
    }

    /// The status of the response head written, if one was.
    fn status(&self) -> Option<StatusCode>;

    /// Response body bytes written (the access log's `bytes`).
    fn body_bytes_sent(&self) -> u64;

    /// Request body bytes read (the access log's `bytes_received`).
    fn body_bytes_received(&self) -> u64;

    /// This response is the connection's last (HTTP/1: `Connection: close`).
    fn set_close(&mut self);

    /// After a `101`: bytes both ways between the client and `backend` (with the
    /// bytes already read from it) until either side closes.
    fn tunnel(
        &mut self,
        backend: pingora::protocols::Stream,
        early: bytes::BytesMut,
    ) -> impl Future<Output = Result<(), super::error::ProxyError>> + Send;
}
