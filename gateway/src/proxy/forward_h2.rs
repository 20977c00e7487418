//! The backend leg over HTTP/2 (upstreams with `protocol = "h2c"`, `"h2"`, or `"auto"`
//! when the backend picked `h2`): one stream of a shared connection per request, the
//! request body streamed up while the response streams down (gRPC's bidirectional
//! calls), trailers passed through both ways, flow-control windows given back as the
//! client takes the bytes.

use std::future::poll_fn;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use h2::client::ResponseFuture;
use h2::{RecvStream, SendStream};
use http::header::{HeaderName, CONTENT_LENGTH, TE};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Uri, Version};
use tokio::time::Instant;

use super::downstream::{Downstream, Request};
use super::error::ProxyError;
use super::forward::{encoded, end_response, filter_response, relayed, Exchanged, Leg, Replay};
use super::headers;
use super::outgoing::{outgoing, Sources};
use super::{RequestCtx, REQUEST_ID};
use crate::deadline::Deadline;
use crate::http1::OutBody;
use crate::upstream::Lease;

const X_FORWARDED_CLIENT_CERT: HeaderName = HeaderName::from_static("x-forwarded-client-cert");

/// One request over a stream of `lease`'s connection.
pub(super) async fn exchange<D: Downstream>(
    leg: Leg<'_>,
    down: &mut D,
    lease: &Lease,
    scheme: Scheme,
    ctx: &mut RequestCtx,
    replay: &mut Replay,
) -> Result<Exchanged, ProxyError> {
    let timeouts = leg.timeouts;
    let head = request_head(leg, ctx, scheme, lease)?;
    let body_empty = down.body_empty();
    let mut request_done = body_empty && replay.pieces.is_empty();
    let sender = lease.sender();
    let mut sender = sender
        .ready()
        .await
        .map_err(|e| ProxyError::H2Backend("opening a stream", e))?;
    let (response, mut up) = sender
        .send_request(head, request_done)
        .map_err(|e| ProxyError::H2Backend("opening a stream", e))?;
    // A failed send keeps its error while the response is read: the stream's own
    // error (a refusal past the backend's GOAWAY, a reset) is the one that says
    // whether the request may go elsewhere; a complete answer is still relayed.
    let mut send_error = None;
    // A retry first sends again the body bytes the previous attempt took.
    for piece in &replay.pieces {
        if let Err(e) = send(&mut up, piece.clone(), false, timeouts).await {
            send_error = Some(e);
            break;
        }
    }
    if send_error.is_none() && !request_done && body_empty {
        if let Err(e) = send(&mut up, Bytes::new(), true, timeouts).await {
            send_error = Some(e);
        }
        request_done = true;
    }
    let mut from = Coming::Head(response);
    let silent = tokio::time::sleep(timeouts.read);
    tokio::pin!(silent);
    let mut silent = Deadline::new(silent);
    loop {
        let uploading = !request_done && send_error.is_none();
        tokio::select! {
            biased;
            piece = from.next() => {
                let piece = piece.map_err(|e| ProxyError::H2Backend("reading the response", e))?;
                if to_client(down, &mut from, piece, ctx).await? {
                    break;
                }
            }
            // A client that resets its stream ends the exchange (and the backend's
            // stream with it), even once its request is complete.
            body = down.read_body_or_reset(uploading) => {
                // The last piece carries END_STREAM itself: no empty DATA frame after
                // each message (servers count those as a flood: h2 answers a stream of
                // them with GOAWAY ENHANCE_YOUR_CALM).
                let (piece, end) = match body? {
                    Some(piece) => {
                        replay.push(&piece);
                        let end = down.body_done();
                        (piece, end)
                    }
                    None => (Bytes::new(), true),
                };
                if let Err(e) = send(&mut up, piece, end, timeouts).await {
                    send_error = Some(e);
                }
                request_done |= end;
            }
            () = silent.passed() => {
                return Err(send_error.unwrap_or(ProxyError::BackendTimeout("awaiting the response")));
            }
        }
        // The backend has `read_timeout` from the last thing that moved.
        silent.set(Instant::now() + timeouts.read);
    }
    if !request_done {
        // The backend answered before taking the whole body (the stream is reset as
        // it is dropped): an HTTP/1 client's connection cannot carry another request.
        down.set_close();
    }
    Ok(Exchanged::Done)
}

/// The request head as it goes upstream: `:authority` from the client's host (or the
/// route's rewrite; the backend's address when the client sent none), the client's
/// fields that pass, `te: trailers` when the client asked for trailers (gRPC), and the
/// gateway's fields.
fn request_head(
    leg: Leg<'_>,
    ctx: &RequestCtx,
    scheme: Scheme,
    lease: &Lease,
) -> Result<http::Request<()>, ProxyError> {
    let req: &Request = leg.req;
    let sources = Sources::new(req, ctx, leg.client);
    let out = outgoing(leg.proto, req, ctx, leg.client, &sources);
    let authority = match out.host.and_then(|h| Authority::try_from(h).ok()) {
        Some(authority) => authority,
        None => Authority::try_from(lease.conn().addr.to_string())
            .map_err(|_| ProxyError::BadForBackend("no valid host"))?,
    };
    let target = PathAndQuery::try_from(out.target)
        .map_err(|_| ProxyError::BadForBackend("request target"))?;
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(scheme);
    parts.authority = Some(authority);
    parts.path_and_query = Some(target);
    let uri = Uri::from_parts(parts).map_err(|_| ProxyError::BadForBackend("request target"))?;
    let mut fields = HeaderMap::with_capacity(req.headers.len() + 6);
    for (name, value) in &req.headers {
        if !out.skip.skip(name) {
            fields.append(name.clone(), value.clone());
        }
    }
    if wants_trailers(&req.headers) {
        fields.insert(TE, HeaderValue::from_static("trailers"));
    }
    for &(name, value) in out.extra.as_slice() {
        let name = match name {
            b"x-forwarded-for" => headers::X_FORWARDED_FOR,
            b"x-forwarded-proto" => headers::X_FORWARDED_PROTO,
            b"x-forwarded-host" => headers::X_FORWARDED_HOST,
            b"x-forwarded-client-cert" => X_FORWARDED_CLIENT_CERT,
            b"x-request-id" => {
                fields.insert(REQUEST_ID, ctx.request_id.header_value());
                continue;
            }
            // `:authority` carries the host; HTTP/2 has no `Connection`.
            _ => continue,
        };
        if let Ok(value) = HeaderValue::from_bytes(value) {
            fields.insert(name, value);
        }
    }
    let mut head = http::Request::new(());
    *head.method_mut() = req.method.clone();
    *head.uri_mut() = uri;
    *head.version_mut() = Version::HTTP_2;
    *head.headers_mut() = fields;
    Ok(head)
}

/// Whether the client's `TE` names `trailers`.
fn wants_trailers(headers: &HeaderMap) -> bool {
    headers.get_all(TE).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"trailers"))
    })
}

/// Sends `data` up as the backend's window allows, within `write_timeout`.
async fn send(
    up: &mut SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
    timeouts: &crate::config::Timeouts,
) -> Result<(), ProxyError> {
    let error = |e| ProxyError::H2Backend("sending the request", e);
    if data.is_empty() {
        return up.send_data(data, end).map_err(error);
    }
    while !data.is_empty() {
        up.reserve_capacity(data.len());
        let window = match up.capacity() {
            0 => {
                let waited =
                    tokio::time::timeout(timeouts.write, poll_fn(|cx| up.poll_capacity(cx)));
                match waited.await {
                    Err(_) => return Err(ProxyError::BackendTimeout("sending the request")),
                    Ok(Some(window)) => window.map_err(error)?,
                    Ok(None) => {
                        return Err(error(h2::Error::from(h2::Reason::STREAM_CLOSED)));
                    }
                }
            }
            window => window,
        };
        let piece = data.split_to(window.min(data.len()));
        up.send_data(piece, end && data.is_empty()).map_err(error)?;
    }
    Ok(())
}

/// Where the backend's response is.
enum Coming {
    Head(ResponseFuture),
    Body(RecvStream),
}

/// A piece of the backend's response.
enum Piece {
    Head(http::Response<RecvStream>),
    Data(Bytes),
    Trailers(Option<HeaderMap>),
}

impl Coming {
    /// The next piece (cancel-safe: each is polled in place).
    async fn next(&mut self) -> Result<Piece, h2::Error> {
        poll_fn(|cx| self.poll(cx)).await
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<Piece, h2::Error>> {
        match self {
            Self::Head(response) => std::pin::Pin::new(response).poll(cx).map_ok(Piece::Head),
            Self::Body(body) => match body.poll_data(cx) {
                Poll::Ready(Some(data)) => Poll::Ready(data.map(Piece::Data)),
                Poll::Ready(None) => body.poll_trailers(cx).map_ok(Piece::Trailers),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

use std::future::Future as _;

/// Passes one piece of the response on; true when the response is complete.
async fn to_client<D: Downstream>(
    down: &mut D,
    from: &mut Coming,
    piece: Piece,
    ctx: &mut RequestCtx,
) -> Result<bool, ProxyError> {
    match piece {
        Piece::Head(response) => {
            let (parts, mut body) = response.into_parts();
            let length = parts
                .headers
                .get(CONTENT_LENGTH)
                .and_then(|v| std::str::from_utf8(v.as_bytes()).ok()?.parse().ok());
            let ended = body.is_end_stream();
            let framing = match (length, ended) {
                (Some(n), _) => OutBody::Length(n),
                (None, true) => OutBody::None,
                (None, false) => OutBody::Unknown,
            };
            let mut fields = parts.headers;
            let framing = filter_response(ctx, parts.status, &mut fields, framing);
            // What has come with the head goes out with it: a small body, and
            // whether the stream ended (a gRPC trailers-only answer ends with its head).
            let mut trailers = None;
            let (first, end) = match (ended, now(&mut body)) {
                (true, _) | (false, None) => (Bytes::new(), ended),
                (false, Some((data, Tail::End))) => (data, true),
                (false, Some((data, Tail::More))) => (data, false),
                (false, Some((data, Tail::Trailers(t)))) => {
                    trailers = Some(t);
                    (data, false)
                }
            };
            let first = encoded(ctx, first, end || trailers.is_some())?;
            let reply = relayed(parts.status, None, fields, framing, ctx);
            down.write_head(reply, first, end).await?;
            if let Some(trailers) = trailers {
                down.write_trailers(trailers).await?;
                return Ok(true);
            }
            *from = Coming::Body(body);
            Ok(end)
        }
        Piece::Data(data) => {
            if let Coming::Body(body) = from {
                let _ = body.flow_control().release_capacity(data.len());
            }
            let data = encoded(ctx, data, false)?;
            if !data.is_empty() {
                down.write_body(data, false).await?;
            }
            Ok(false)
        }
        Piece::Trailers(trailers) => {
            let tail = encoded(ctx, Bytes::new(), true)?;
            end_response(down, tail, trailers).await?;
            Ok(true)
        }
    }
}

/// What follows the body bytes taken with the head.
enum Tail {
    /// Nothing: the body is complete.
    End,
    Trailers(HeaderMap),
    /// More body, or not known yet.
    More,
}

/// The body bytes already received, without waiting (`None`: nothing there yet), and
/// what follows them if that has come too.
fn now(body: &mut RecvStream) -> Option<(Bytes, Tail)> {
    let mut cx = Context::from_waker(Waker::noop());
    let Poll::Ready(Some(Ok(data))) = body.poll_data(&mut cx) else {
        return None;
    };
    let _ = body.flow_control().release_capacity(data.len());
    if !body.is_end_stream() {
        return Some((data, Tail::More));
    }
    let tail = match body.poll_trailers(&mut cx) {
        Poll::Ready(Ok(Some(trailers))) => Tail::Trailers(trailers),
        Poll::Ready(Ok(None)) => Tail::End,
        _ => Tail::More,
    };
    Some((data, tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn te_trailers_is_told_among_the_clients_te_values() {
        let te = |values: &[&'static str]| {
            let mut headers = HeaderMap::new();
            for v in values {
                headers.append(TE, HeaderValue::from_static(v));
            }
            wants_trailers(&headers)
        };
        assert!(te(&["trailers"]));
        assert!(te(&["gzip, Trailers"]));
        assert!(te(&["gzip", "trailers"]));
        assert!(!te(&["gzip"]));
        assert!(!te(&[]));
        assert!(!te(&["trailersx"]));
    }
}
