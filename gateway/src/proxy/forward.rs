//! The backend leg of a request: choosing a backend, connecting through the pool,
//! retrying where it is safe, and the exchange over the gateway's own HTTP/1 codec
//! (`crate::http1`): the request body streamed up while the response comes down,
//! WebSocket upgrades tunnelled.

use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, CONTENT_LENGTH, HOST};
use http::{HeaderValue, StatusCode, Version};
use pingora::protocols::Stream;
use pingora::upstreams::peer::HttpPeer;
use tokio::time::Instant;

use super::downstream::{Downstream, Reply, Request};
use super::error::ProxyError;
use super::filters;
use super::headers::{self, Hops};
use super::request::hash_key;
use super::{Client, Gateway, RequestCtx, REQUEST_ID};
use crate::config::{Balance, Timeouts};
use crate::deadline::Deadline;
use crate::http1::{
    Buffered, ClientConn, HeadLimits, Http1Error, OutBody, OutRequest, ResponseHead,
    MAX_HEADER_SLOTS,
};
use crate::ip_text::IpText;
use crate::routes::filters::compression::Encoder;
use crate::routes::Exchange;
use crate::tls::Handshake;
use crate::upstream::{InFlight, Outcome};

/// Backend connections as the codec drives them.
type Backend = ClientConn<Stream>;

/// Limits on a backend's response heads: pingora's (1 MiB, 256 fields), with room for
/// the fields the gateway adds (request id, HSTS) and a few of the route's
/// (`response_headers`, CORS, `Vary`), so that they do not grow the map.
const RESPONSE_LIMITS: HeadLimits = HeadLimits {
    max_head: 1 << 20,
    max_headers: MAX_HEADER_SLOTS,
    max_target: 0,
    reserve: 6,
};

/// Request body bytes kept for a retry at most (pingora's retry buffer was as large): a
/// request that sent more cannot be sent again.
const REPLAY_LIMIT: usize = 64 * 1024;

/// The request body pieces sent to the backend, kept to send again on a retry; kept
/// only when the upstream retries at all.
#[derive(Default)]
struct Replay {
    keep: bool,
    pieces: Vec<Bytes>,
    len: usize,
    truncated: bool,
}

impl Replay {
    fn new(keep: bool) -> Self {
        Self {
            keep,
            ..Self::default()
        }
    }

    fn push(&mut self, piece: &Bytes) {
        if !self.keep || self.truncated {
            return;
        }
        self.len += piece.len();
        if self.len > REPLAY_LIMIT {
            self.truncated = true;
            self.pieces = Vec::new();
        } else {
            self.pieces.push(piece.clone());
        }
    }
}

/// What an exchange reads of its request, whichever backend it goes to.
#[derive(Clone, Copy)]
struct Leg<'a> {
    /// `X-Forwarded-Proto`.
    proto: &'static str,
    req: &'a Request,
    client: &'a Client,
    timeouts: &'a Timeouts,
}

/// How an exchange ended without error.
enum Exchanged {
    /// Both messages complete: the connection may serve another request.
    Done,
    /// A `101`: both connections are now the new protocol's.
    Upgraded,
}

impl Gateway {
    /// Proxies the request to a backend of `ctx.route`, retrying on another backend
    /// when nothing reached the first one (or, for a request that can be sent again,
    /// when its connection closed before any response byte).
    pub(super) async fn proxy<D: Downstream>(
        &self,
        down: &mut D,
        req: &Request,
        ctx: &mut RequestCtx,
        client: &Client,
    ) -> Result<(), ProxyError> {
        let Some(route) = ctx.route.take() else {
            return Err(ProxyError::NoBackend);
        };
        let result = match route.targets.get(ctx.target) {
            Some(target) => {
                self.attempts(down, req, ctx, client, &target.upstream)
                    .await
            }
            None => Err(ProxyError::NoBackend),
        };
        ctx.route = Some(route);
        result
    }

    async fn attempts<D: Downstream>(
        &self,
        down: &mut D,
        req: &Request,
        ctx: &mut RequestCtx,
        client: &Client,
        upstream: &crate::upstream::Upstream,
    ) -> Result<(), ProxyError> {
        let config = &upstream.config;
        // A request without the hash key is balanced round robin, not pinned.
        let key = match &config.balance {
            Balance::ConsistentHash(key) => hash_key(req, key, client),
            _ => None,
        };
        let mut replay = Replay::new(config.retries > 0);
        loop {
            if let Some(previous) = ctx.backend.take() {
                ctx.tried.push(previous.backend().addr);
            }
            ctx.attempts += 1;
            let Some(chosen) = upstream.select(key, &ctx.tried) else {
                return Err(ProxyError::NoBackend);
            };
            let attempt = self
                .attempt(down, req, ctx, client, &chosen, config, &mut replay)
                .await;
            ctx.backend = Some(chosen);
            match attempt {
                Attempt::Done(result) => return result,
                Attempt::Retry => {}
            }
        }
    }
}

/// How one attempt ended: the request's result, or another attempt to make.
enum Attempt {
    Done(Result<(), ProxyError>),
    Retry,
}

impl Gateway {
    /// One attempt on the backend `chosen`: connect (or take a pooled connection), then
    /// the exchange. Retries while attempts and connect time remain: after a failed
    /// connect (nothing reached the backend), or when the backend closed before any
    /// response byte and the request can be sent again.
    #[allow(clippy::too_many_arguments)] // the parts of one attempt
    async fn attempt<D: Downstream>(
        &self,
        down: &mut D,
        req: &Request,
        ctx: &mut RequestCtx,
        client: &Client,
        chosen: &InFlight,
        config: &crate::config::Upstream,
        replay: &mut Replay,
    ) -> Attempt {
        let backend = chosen.backend();
        let connected = match backend.pool.take(config.timeouts.idle) {
            Some(stream) => Ok(stream),
            // Boxed: connecting (TLS included) is an ~8 KB future, rare with the pool,
            // that would otherwise size every request's (and connection's) future.
            None => {
                let connect = self.connect(backend.peer(), config.timeouts.connect, ctx.connecting);
                let (connected, took) = Box::pin(connect).await;
                ctx.connecting += took;
                connected
            }
        };
        let retry_left = ctx.attempts <= config.retries;
        let stream = match connected {
            Ok(stream) => stream,
            Err(e) => {
                backend.count(Outcome::ConnectFailure);
                backend.connect_failed(&config.passive);
                // Nothing reached the backend: any request may go to another one,
                // while attempts and connect time remain (all backends down: 502
                // within one connect timeout).
                if retry_left && ctx.connecting < config.timeouts.connect {
                    return Attempt::Retry;
                }
                return Attempt::Done(Err(ProxyError::Connect(e.into_up())));
            }
        };
        backend.connect_succeeded();
        let mut up = ClientConn::new(stream);
        let leg = Leg {
            proto: self.proto,
            req,
            client,
            timeouts: &config.timeouts,
        };
        let exchanged = exchange(leg, down, &mut up, ctx, replay).await;
        backend.count(outcome(&exchanged, ctx.responded));
        match exchanged {
            Ok(Exchanged::Done) => {
                if let Some(stream) = up.into_reusable() {
                    backend.pool.put(stream);
                }
                Attempt::Done(Ok(()))
            }
            Ok(Exchanged::Upgraded) => {
                let (stream, early) = up.into_parts();
                Attempt::Done(down.tunnel(stream, early).await)
            }
            Err(e) => {
                let connect_left = ctx.connecting < config.timeouts.connect;
                let replayable =
                    (req.method.is_idempotent() || down.body_empty()) && !replay.truncated;
                // Closed before any response byte: nothing of it was answered.
                let closed_early = !up.response_started() && e.is_backend_connection();
                if retry_left && connect_left && closed_early && replayable {
                    return Attempt::Retry;
                }
                Attempt::Done(Err(e))
            }
        }
    }

    /// A new connection to `peer`, and how long making it took. The first attempt has
    /// the peer's own `connect_timeout` (`budget`); a retry has what earlier attempts
    /// left of it (`spent`), so that every connect of the request together stays within
    /// one `connect_timeout`.
    async fn connect(
        &self,
        peer: &HttpPeer,
        budget: Duration,
        spent: Duration,
    ) -> (pingora::Result<Stream>, Duration) {
        let started = std::time::Instant::now();
        let connect = self.connector.new_stream(peer);
        let result = if spent.is_zero() {
            connect.await
        } else {
            let left = budget.saturating_sub(spent);
            match tokio::time::timeout(left, connect).await {
                Ok(result) => result,
                Err(_) => pingora::Error::e_explain(
                    pingora::ErrorType::ConnectTimedout,
                    "connect_timeout used up by earlier attempts",
                ),
            }
        };
        (result, started.elapsed())
    }
}

/// A backend failure of `what` (timeouts of the stream itself included).
fn backend_error(what: &'static str) -> impl Fn(Http1Error) -> ProxyError {
    move |e| match e.is_timeout() {
        true => ProxyError::BackendTimeout(what),
        false => ProxyError::Backend(what, e),
    }
}

/// Writes to the backend within `write_timeout`.
async fn to_backend<F: std::future::Future<Output = Result<(), Http1Error>>>(
    write: F,
    timeouts: &Timeouts,
) -> Result<(), ProxyError> {
    match tokio::time::timeout(timeouts.write, write).await {
        Ok(written) => written.map_err(backend_error("sending the request")),
        Err(_) => Err(ProxyError::BackendTimeout("sending the request")),
    }
}

/// Header fields written as slices after a head's own: at most eight.
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

/// Writes the request head to the backend: the client's fields but hop-by-hop ones (and
/// the forwarding ones of an untrusted client), then `Host` (HTTP/2's `:authority`),
/// `X-Forwarded-*`, the request id; with `first` body bytes when the request is done.
async fn send_head(
    leg: Leg<'_>,
    ctx: &RequestCtx,
    up: &mut Backend,
    body: OutBody,
    first: &[u8],
    end: bool,
) -> Result<(), ProxyError> {
    let Leg {
        proto,
        req,
        client,
        timeouts,
    } = leg;
    let headers = &req.headers;
    let trusted = ctx.trusted;
    let ip = client.ip.map(IpText::new);
    let chain = match &ip {
        Some(ip) if trusted && headers.contains_key(headers::X_FORWARDED_FOR) => {
            Some(headers::forwarded_chain(headers, ip.as_bytes()))
        }
        _ => None,
    };
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
    match (&chain, &ip) {
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
    if ctx.upgrade {
        extra.push(b"connection", b"upgrade");
    }
    let hops = Hops::request(headers, ctx.upgrade);
    let peer_known = ip.is_some();
    let skip = |name: &HeaderName| {
        hops.skip(name)
            || name == REQUEST_ID
            || (replace_host && name == HOST)
            || (!trusted && headers::is_forwarding(name))
            || (peer_known && name == headers::X_FORWARDED_FOR)
    };
    let target = match forward.and_then(|f| f.target.as_ref()) {
        Some(rewritten) => rewritten.as_str(),
        None => req.uri.path_and_query().map_or("/", |pq| pq.as_str()),
    };
    let out = OutRequest {
        method: &req.method,
        target: target.as_bytes(),
        headers,
        skip: &skip,
        extra: extra.as_slice(),
        body,
    };
    to_backend(up.write_request(out, first, end), timeouts).await
}

/// How a request's body goes to the backend: by its length, chunked when it has none
/// (an HTTP/1 chunked body, an HTTP/2 body without `content-length`).
fn request_body<D: Downstream>(req: &Request, down: &D) -> OutBody {
    if down.body_empty() {
        return OutBody::None;
    }
    let length = req
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok()?.parse().ok());
    length.map_or(OutBody::Unknown, OutBody::Length)
}

/// Sends the request over `up` and the response back, the request body streamed up
/// while the response streams down.
async fn exchange<D: Downstream>(
    leg: Leg<'_>,
    down: &mut D,
    up: &mut Backend,
    ctx: &mut RequestCtx,
    replay: &mut Replay,
) -> Result<Exchanged, ProxyError> {
    let timeouts = leg.timeouts;
    let body = request_body(leg.req, down);
    let mut request_done = body == OutBody::None;
    if replay.pieces.is_empty() && !request_done {
        // The body's first bytes, often read with the head, go up with it.
        let first = down.buffered_body()?;
        let first = first.unwrap_or_default();
        replay.push(&first);
        request_done = down.body_done();
        send_head(leg, ctx, up, body, &first, request_done).await?;
    } else {
        send_head(leg, ctx, up, body, b"", request_done).await?;
        // A retry first sends again the body bytes the previous attempt took.
        for piece in &replay.pieces {
            to_backend(up.write_body(piece, false), timeouts).await?;
        }
        if !request_done && down.body_done() {
            to_backend(up.write_body(b"", true), timeouts).await?;
            request_done = true;
        }
    }
    let mut reading = Reading::Head;
    let mut send_error = None;
    let silent = tokio::time::sleep(timeouts.read);
    tokio::pin!(silent);
    let mut silent = Deadline::new(silent);
    while !(request_done && reading == Reading::Done) {
        tokio::select! {
            biased;
            piece = from_backend(up, reading), if reading != Reading::Done => {
                let piece = match (piece, send_error.take()) {
                    (Ok(piece), unsent) => {
                        send_error = unsent;
                        piece
                    }
                    (Err(_), Some(unsent)) => return Err(unsent),
                    (Err(e), None) => return Err(backend_error("reading the response")(e)),
                };
                reading = to_client(down, up, piece, ctx).await?;
                if reading == Reading::Upgraded {
                    return Ok(Exchanged::Upgraded);
                }
            }
            body = down.read_body(), if !request_done => {
                match body_to_backend(up, body?, replay, timeouts).await {
                    Ok(done) => request_done = done,
                    // A backend may answer before taking the whole body, and close:
                    // its answer still goes to the client. No answer: this error.
                    Err(e) => {
                        send_error = Some(e);
                        request_done = true;
                    }
                }
            }
            () = silent.passed(), if reading != Reading::Done => {
                return Err(ProxyError::BackendTimeout("awaiting the response"));
            }
        }
        // The backend has `read_timeout` from the last thing that moved.
        silent.set(Instant::now() + timeouts.read);
    }
    match send_error {
        Some(e) => Err(e),
        None => Ok(Exchanged::Done),
    }
}

/// Where the response from the backend is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    Head,
    Body,
    Done,
    Upgraded,
}

/// A piece of the backend's response.
enum FromBackend {
    Head(ResponseHead),
    Body(Bytes),
    End,
}

/// The next piece of the backend's response (cancel-safe).
async fn from_backend(up: &mut Backend, reading: Reading) -> Result<FromBackend, Http1Error> {
    match reading {
        Reading::Head => Ok(FromBackend::Head(up.read_response(&RESPONSE_LIMITS).await?)),
        _ => Ok(match up.read_body().await? {
            Some(data) => FromBackend::Body(data),
            None => FromBackend::End,
        }),
    }
}

/// Passes one piece of the backend's response to the client; returns where the
/// response is after it.
async fn to_client<D: Downstream>(
    down: &mut D,
    up: &mut Backend,
    piece: FromBackend,
    ctx: &mut RequestCtx,
) -> Result<Reading, ProxyError> {
    let encoder = ctx.filtered.as_deref_mut().and_then(|f| f.encoder.as_mut());
    let head = match piece {
        FromBackend::Body(data) => return body_to_client(down, up, data, encoder).await,
        FromBackend::End => return end_to_client(down, up, encoder).await,
        FromBackend::Head(head) => head,
    };
    let status = head.status;
    // Informational answers (100 Continue, 103) go through; the real one follows.
    if head.is_interim() {
        down.write_interim(status, &head.headers).await?;
        return Ok(Reading::Head);
    }
    ctx.responded = true;
    let mut body = head.out_body();
    let reason = head.reason_bytes();
    let mut headers = head.headers;
    if let Some(chain) = &ctx.chain {
        let none = Exchange::default();
        let filtered = ctx.filtered.as_deref_mut();
        let exchange = filtered.as_ref().map_or(&none, |f| &f.forward.exchange);
        // An encoder only comes back for a request that negotiated a coding, which
        // has its `filtered` state.
        if let (Some(encoder), Some(f)) =
            (chain.on_response(exchange, status, &mut headers), filtered)
        {
            f.encoder = Some(encoder);
            // Chunked on HTTP/1.1 (until close on 1.0), DATA frames on HTTP/2.
            body = OutBody::Unknown;
        }
    }
    let reply = Reply {
        status,
        reason: Some(&reason),
        headers,
        relayed: true,
        extra: &[],
        request_id: &ctx.request_id,
        hsts: ctx.hsts.as_ref(),
        body,
    };
    if status == StatusCode::SWITCHING_PROTOCOLS {
        down.write_head(reply, Bytes::new(), false).await?;
        return Ok(Reading::Upgraded);
    }
    // The body's first bytes, often read with the head, go out in the same write.
    let first = up
        .buffered_body()
        .map_err(backend_error("reading the response"))?;
    let (first, end) = match first {
        Buffered::Data(data) => (data, up.response_done() && up.take_trailers().is_none()),
        Buffered::End | Buffered::Empty => (Bytes::new(), up.response_done()),
    };
    let first = match ctx.filtered.as_deref_mut().and_then(|f| f.encoder.as_mut()) {
        Some(encoder) => filters::encode(encoder, &first, end).map_err(ProxyError::Compress)?,
        None => first,
    };
    down.write_head(reply, first, end).await?;
    Ok(if end { Reading::Done } else { Reading::Body })
}

async fn body_to_client<D: Downstream>(
    down: &mut D,
    up: &mut Backend,
    data: Bytes,
    encoder: Option<&mut Encoder>,
) -> Result<Reading, ProxyError> {
    let done = up.response_done();
    let trailers = if done { up.take_trailers() } else { None };
    let end = done && trailers.is_none();
    let data = match encoder {
        Some(encoder) => filters::encode(encoder, &data, done).map_err(ProxyError::Compress)?,
        None => data,
    };
    // An encoder often gives nothing for a piece: no empty write (a chunk of size 0
    // would end the body).
    if !data.is_empty() || end {
        down.write_body(data, end).await?;
    }
    if let Some(trailers) = trailers {
        down.write_trailers(trailers).await?;
    }
    Ok(if done { Reading::Done } else { Reading::Body })
}

async fn end_to_client<D: Downstream>(
    down: &mut D,
    up: &mut Backend,
    encoder: Option<&mut Encoder>,
) -> Result<Reading, ProxyError> {
    let trailers = up.take_trailers();
    let tail = match encoder {
        Some(encoder) => filters::encode(encoder, &[], true).map_err(ProxyError::Compress)?,
        None => Bytes::new(),
    };
    match trailers {
        Some(trailers) => {
            if !tail.is_empty() {
                down.write_body(tail, false).await?;
            }
            down.write_trailers(trailers).await?;
        }
        None => down.write_body(tail, true).await?,
    }
    Ok(Reading::Done)
}

/// Passes one piece of the client's request body to the backend; true when the body
/// is complete.
async fn body_to_backend(
    up: &mut Backend,
    body: Option<Bytes>,
    replay: &mut Replay,
    timeouts: &Timeouts,
) -> Result<bool, ProxyError> {
    let Some(chunk) = body else {
        to_backend(up.write_body(b"", true), timeouts).await?;
        return Ok(true);
    };
    replay.push(&chunk);
    to_backend(up.write_body(&chunk, false), timeouts).await?;
    Ok(false)
}

/// What an exchange says about its backend: an error of the backend's connection is
/// its failure; otherwise (the exchange completed, or the client or the gateway ended
/// it) it answered, unless no response had come back yet.
fn outcome(exchanged: &Result<Exchanged, ProxyError>, responded: bool) -> Outcome {
    match exchanged {
        Ok(_) => Outcome::Success,
        Err(e) if e.is_backends_doing() => Outcome::Error,
        Err(_) if responded => Outcome::Success,
        Err(_) => Outcome::Cancelled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::downstream::DownError;

    #[test]
    fn an_attempt_is_judged_by_what_the_backend_did() {
        assert_eq!(outcome(&Ok(Exchanged::Done), true), Outcome::Success);
        assert_eq!(outcome(&Ok(Exchanged::Upgraded), true), Outcome::Success);
        let backend_closed = || Err(ProxyError::Backend("x", Http1Error::Closed("x")));
        assert_eq!(outcome(&backend_closed(), true), Outcome::Error);
        assert_eq!(outcome(&backend_closed(), false), Outcome::Error);
        let silent = Err(ProxyError::BackendTimeout("x"));
        assert_eq!(outcome(&silent, false), Outcome::Error);
        let client_gone = || Err(ProxyError::Client(DownError::H1(Http1Error::Closed("x"))));
        assert_eq!(outcome(&client_gone(), true), Outcome::Success);
        assert_eq!(outcome(&client_gone(), false), Outcome::Cancelled);
        let too_large = Err(ProxyError::Client(DownError::BodyTooLarge));
        assert_eq!(outcome(&too_large, false), Outcome::Cancelled);
    }

    #[test]
    fn replay_keeps_bodies_only_when_retrying_and_up_to_its_limit() {
        let piece = Bytes::from(vec![1u8; 1024]);
        let mut off = Replay::new(false);
        off.push(&piece);
        assert!(off.pieces.is_empty() && !off.truncated);
        let mut on = Replay::new(true);
        for _ in 0..64 {
            on.push(&piece);
        }
        assert_eq!(on.pieces.len(), 64);
        on.push(&piece);
        assert!(on.truncated && on.pieces.is_empty());
    }
}
