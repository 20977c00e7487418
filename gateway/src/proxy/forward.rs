//! The backend leg of a request: choosing a backend, connecting through the pool,
//! retrying where it is safe, and the exchange over the gateway's own HTTP/1 codec
//! (`crate::http1`): the request body streamed up while the response comes down,
//! WebSocket upgrades tunnelled.

use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, CONTENT_LENGTH};
use http::{StatusCode, Version};
use pingora::protocols::Stream;
use tokio::time::Instant;

use super::downstream::{Downstream, Reply, Request};
use super::error::ProxyError;
use super::filters;
use super::grpc;
use super::outgoing::{outgoing, Sources};
use super::request::hash_key;
use super::{Client, Gateway, RequestCtx};
use crate::config::Protocol;
use crate::config::{Balance, Timeouts};
use crate::deadline::Deadline;
use crate::http1::{
    Buffered, ClientConn, HeadLimits, Http1Error, OutBody, OutRequest, ResponseHead,
    MAX_HEADER_SLOTS,
};
use crate::routes::filters::compression::Encoder;
use crate::routes::Exchange;
use crate::upstream::{Backend, H2Conn, InFlight, Lease, Outcome, Upstream};
use pingora::protocols::ALPN;

/// Backend connections as the codec drives them.
type BackendConn = ClientConn<Stream>;

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
pub(super) struct Replay {
    keep: bool,
    pub(super) pieces: Vec<Bytes>,
    len: usize,
    pub(super) truncated: bool,
}

impl Replay {
    fn new(keep: bool) -> Self {
        Self {
            keep,
            ..Self::default()
        }
    }

    pub(super) fn push(&mut self, piece: &Bytes) {
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
pub(super) struct Leg<'a> {
    /// `X-Forwarded-Proto`.
    pub(super) proto: &'static str,
    pub(super) req: &'a Request,
    pub(super) client: &'a Client,
    pub(super) timeouts: &'a Timeouts,
}

/// How an exchange ended without error.
pub(super) enum Exchanged {
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
            // gRPC needs HTTP/2's trailers: an HTTP/1 client's call cannot be carried.
            Some(_)
                if req.method == http::Method::POST
                    && req.version != Version::HTTP_2
                    && grpc::is_grpc(&req.headers) =>
            {
                Err(ProxyError::GrpcOverHttp1)
            }
            Some(target) => {
                // A gRPC call's `grpc-timeout` bounds the whole of it.
                let deadline = down.grpc().then(|| grpc::timeout(&req.headers)).flatten();
                let attempts = self.attempts(down, req, ctx, client, &target.upstream);
                match deadline {
                    Some(deadline) => tokio::time::timeout(deadline, attempts)
                        .await
                        .unwrap_or(Err(ProxyError::BackendTimeout("within grpc-timeout"))),
                    None => attempts.await,
                }
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
        upstream: &Upstream,
    ) -> Result<(), ProxyError> {
        let config = &upstream.config;
        // A request without the hash key is balanced round robin, not pinned.
        let key = match &config.balance {
            Balance::ConsistentHash(key) => hash_key(req, key, client),
            _ => None,
        };
        let mut replay = Replay::new(config.retries > 0);
        if crate::telemetry::access::wants_upstream_time() {
            ctx.upstream_started = Some(std::time::Instant::now());
        }
        loop {
            if let Some(previous) = ctx.backend.take() {
                ctx.tried.push(previous.backend().addr);
            }
            ctx.attempts += 1;
            let Some(chosen) = upstream.select(key, &ctx.tried) else {
                return Err(ProxyError::NoBackend);
            };
            if let Some(trace) = &mut ctx.trace {
                trace.attempt_started(chosen.backend().addr, super::id_bits);
            }
            let attempt = self
                .attempt(down, req, ctx, client, &chosen, upstream, &mut replay)
                .await;
            ctx.backend = Some(chosen);
            if let Some(trace) = ctx.trace.as_mut().filter(|t| t.sampled()) {
                let status = down.status().map(|s| s.as_u16()).filter(|_| ctx.responded);
                let error = match &attempt {
                    Attempt::Done(Ok(())) => None,
                    Attempt::Done(Err(e)) => Some(e.error_type()),
                    Attempt::Retry(why) => Some(*why),
                };
                trace.attempt_ended(status, error);
            }
            match attempt {
                Attempt::Done(result) => return result,
                Attempt::Retry(_) => {}
            }
        }
    }
}

/// How one attempt ended: the request's result, or another attempt to make.
enum Attempt {
    Done(Result<(), ProxyError>),
    /// Tried again on another backend, for this reason (the attempt's `error.type`).
    Retry(&'static str),
}

impl Gateway {
    /// One attempt on the backend `chosen`: connect (or take a pooled connection, or a
    /// stream on a shared HTTP/2 one), then the exchange. Retries while attempts and
    /// connect time remain: after a failed connect (nothing reached the backend), when
    /// the backend refused the stream unprocessed (HTTP/2 `REFUSED_STREAM`, or past its
    /// `GOAWAY`), or when it closed before any response byte and the request can be
    /// sent again.
    #[allow(clippy::too_many_arguments)] // the parts of one attempt
    async fn attempt<D: Downstream>(
        &self,
        down: &mut D,
        req: &Request,
        ctx: &mut RequestCtx,
        client: &Client,
        chosen: &InFlight,
        upstream: &Upstream,
        replay: &mut Replay,
    ) -> Attempt {
        let config = &upstream.config;
        let backend = chosen.backend();
        let retry_left = ctx.attempts <= config.retries;
        // The common case first, without the connect path's future: an idle pooled
        // HTTP/1.1 connection.
        let pooled = match config.protocol {
            Protocol::Http1 => backend.pool.take(config.timeouts.idle).map(Conn::H1),
            _ => None,
        };
        let conn = match pooled {
            Some(conn) => Ok(conn),
            None => self.backend_conn(upstream, backend, ctx).await,
        };
        let conn = match conn {
            Ok(conn) => conn,
            Err(e) => {
                backend.count(Outcome::ConnectFailure);
                backend.connect_failed(&config.passive);
                // Nothing reached the backend: any request may go to another one,
                // while attempts and connect time remain (all backends down: 502
                // within one connect timeout).
                if retry_left && ctx.connecting < config.timeouts.connect {
                    return Attempt::Retry("connect_failed");
                }
                return Attempt::Done(Err(ProxyError::Connect(e.into_up())));
            }
        };
        backend.connect_succeeded();
        let leg = Leg {
            proto: self.proto,
            req,
            client,
            timeouts: &config.timeouts,
        };
        let (exchanged, early) = match conn {
            Conn::H1(stream) => {
                let mut up = ClientConn::new(stream);
                let exchanged = exchange(leg, down, &mut up, ctx, replay).await;
                backend.count(outcome(&exchanged, ctx.responded));
                match exchanged {
                    Ok(Exchanged::Done) => {
                        if let Some(stream) = up.into_reusable() {
                            backend.pool.put(stream);
                        }
                        return Attempt::Done(Ok(()));
                    }
                    Ok(Exchanged::Upgraded) => {
                        let (stream, early) = up.into_parts();
                        return Attempt::Done(down.tunnel(stream, early).await);
                    }
                    Err(e) => (e, !up.response_started()),
                }
            }
            Conn::H2(lease) => {
                let scheme = match upstream.tls {
                    Some(_) => http::uri::Scheme::HTTPS,
                    None => http::uri::Scheme::HTTP,
                };
                // Boxed: HTTP/1.1 requests do not carry the HTTP/2 exchange's state in
                // their future.
                let exchange = super::forward_h2::exchange(leg, down, &lease, scheme, ctx, replay);
                let exchanged = Box::pin(exchange).await;
                backend.count(outcome(&exchanged, ctx.responded));
                match exchanged {
                    Ok(_) => return Attempt::Done(Ok(())),
                    Err(e) => {
                        if e.is_refused() {
                            lease.conn().retire();
                        }
                        // The connection of a backend going away closed under a stream
                        // it had not answered: not processed, like a refused one.
                        let e = match e {
                            ProxyError::H2Backend(what, cause)
                                if cause.is_io() && lease.conn().draining() && !ctx.responded =>
                            {
                                ProxyError::H2Backend(
                                    what,
                                    h2::Error::from(h2::Reason::REFUSED_STREAM),
                                )
                            }
                            e => e,
                        };
                        (e, !ctx.responded)
                    }
                }
            }
        };
        let e = exchanged;
        let connect_left = ctx.connecting < config.timeouts.connect;
        let replayable = (req.method.is_idempotent() || down.body_empty()) && !replay.truncated;
        // Closed before any response byte: nothing of it was answered. Refused: the
        // backend says it did not process it, whatever the method.
        let closed_early = early && e.is_backend_connection();
        let refused = early && e.is_refused() && !replay.truncated;
        if retry_left && connect_left && refused {
            return Attempt::Retry("refused_stream");
        }
        if retry_left && connect_left && closed_early && replayable {
            return Attempt::Retry("closed_before_response");
        }
        Attempt::Done(Err(e))
    }

    /// A connection for one request to `backend`: an idle pooled one or a stream on an
    /// HTTP/2 connection with room, else a new connection (TLS and HTTP/2 handshakes
    /// included), whose time counts in `ctx.connecting`.
    async fn backend_conn(
        &self,
        upstream: &Upstream,
        backend: &Backend,
        ctx: &mut RequestCtx,
    ) -> Result<Conn, Box<pingora::Error>> {
        let config = &upstream.config;
        let max_streams = config.max_streams;
        match config.protocol {
            // Its pool was asked first.
            Protocol::Http1 => {}
            Protocol::H2c | Protocol::H2 => {
                if let Some(lease) = backend.h2.lease(max_streams) {
                    return Ok(Conn::H2(lease));
                }
            }
            Protocol::Auto => {
                if let Some(lease) = backend.h2.lease(max_streams) {
                    return Ok(Conn::H2(lease));
                }
                if let Some(stream) = backend.pool.take(config.timeouts.idle) {
                    return Ok(Conn::H1(stream));
                }
            }
        }
        // HTTP/2: one request opens the connection, the others wait for it and share it.
        let _opening = match config.protocol {
            Protocol::Http1 => None,
            _ => {
                let guard = backend.h2.opening().await;
                if let Some(lease) = backend.h2.lease(max_streams) {
                    return Ok(Conn::H2(lease));
                }
                Some(guard)
            }
        };
        // Boxed: connecting (TLS included) is an ~8 KB future, rare with the pool,
        // that would otherwise size every request's (and connection's) future.
        let connect = self.connect(upstream, backend, ctx.connecting);
        let (connected, took) = Box::pin(connect).await;
        ctx.connecting += took;
        let stream = connected?;
        let h2 = match config.protocol {
            Protocol::Http1 => false,
            Protocol::H2c | Protocol::H2 => true,
            Protocol::Auto => stream.selected_alpn_proto() == Some(ALPN::H2),
        };
        if !h2 {
            return Ok(Conn::H1(stream));
        }
        let started = std::time::Instant::now();
        let conn = H2Conn::start(stream, backend.addr).await.map_err(|e| {
            pingora::Error::because(
                pingora::ErrorType::HandshakeError,
                "HTTP/2 handshake with the backend",
                e,
            )
        });
        ctx.connecting += started.elapsed();
        Ok(Conn::H2(backend.h2.add(conn?)))
    }

    /// A new connection to `backend`, and how long making it took. The first attempt
    /// has the upstream's own `connect_timeout`; a retry has what earlier attempts left
    /// of it (`spent`), so that every connect of the request together stays within one
    /// `connect_timeout`. The TLS handshake, when the upstream has `tls`, counts in it.
    pub(super) async fn connect(
        &self,
        upstream: &Upstream,
        backend: &Backend,
        spent: Duration,
    ) -> (pingora::Result<Stream>, Duration) {
        let started = std::time::Instant::now();
        let budget = upstream.config.timeouts.connect;
        let left = budget.saturating_sub(spent);
        let result = match &upstream.tls {
            None => {
                let connect = self.connector.new_stream(backend.peer());
                if spent.is_zero() {
                    connect.await
                } else {
                    within(left, connect).await
                }
            }
            Some(_) => within(left, upstream.dial(backend.addr)).await,
        };
        (result, started.elapsed())
    }
}

/// `connect` within what is `left` of the connect timeout.
async fn within<F: std::future::Future<Output = pingora::Result<Stream>>>(
    left: Duration,
    connect: F,
) -> pingora::Result<Stream> {
    match tokio::time::timeout(left, connect).await {
        Ok(result) => result,
        Err(_) => pingora::Error::e_explain(
            pingora::ErrorType::ConnectTimedout,
            "connect_timeout used up (by earlier attempts, or the TLS handshake)",
        ),
    }
}

/// A connection for one request.
enum Conn {
    H1(Stream),
    H2(Lease),
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

/// Writes the request head to the backend ([`outgoing`]'s fields), with `first` body
/// bytes when the request is done.
async fn send_head(
    leg: Leg<'_>,
    ctx: &RequestCtx,
    up: &mut BackendConn,
    body: OutBody,
    first: &[u8],
    end: bool,
) -> Result<(), ProxyError> {
    let sources = Sources::new(leg.req, ctx, leg.client);
    let out = outgoing(leg.proto, leg.req, ctx, leg.client, &sources);
    let skip = |name: &HeaderName| out.skip.skip(name);
    let request = OutRequest {
        method: &leg.req.method,
        target: out.target.as_bytes(),
        headers: &leg.req.headers,
        skip: &skip,
        extra: out.extra.as_slice(),
        body,
    };
    to_backend(up.write_request(request, first, end), leg.timeouts).await
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
    up: &mut BackendConn,
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
async fn from_backend(up: &mut BackendConn, reading: Reading) -> Result<FromBackend, Http1Error> {
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
    up: &mut BackendConn,
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
    let reason = head.reason_bytes();
    let framing = head.out_body();
    let mut headers = head.headers;
    let body = filter_response(ctx, status, &mut headers, framing);
    if status == StatusCode::SWITCHING_PROTOCOLS {
        let reply = relayed(status, Some(&reason), headers, body, ctx);
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
    let first = encoded(ctx, first, end)?;
    let reply = relayed(status, Some(&reason), headers, body, ctx);
    down.write_head(reply, first, end).await?;
    Ok(if end { Reading::Done } else { Reading::Body })
}

/// The client's response head for a backend's.
pub(super) fn relayed<'a>(
    status: StatusCode,
    reason: Option<&'a [u8]>,
    headers: http::HeaderMap,
    body: OutBody,
    ctx: &'a RequestCtx,
) -> Reply<'a> {
    Reply {
        status,
        reason,
        headers,
        relayed: true,
        extra: &[],
        request_id: &ctx.request_id,
        hsts: ctx.hsts.as_ref(),
        body,
    }
}

/// A backend's response head has come: the route's response filters run on its
/// `headers`; returns how its body goes to the client (an encoder that starts makes
/// its length unknown: chunked on HTTP/1.1, until close on 1.0, DATA frames on HTTP/2).
pub(super) fn filter_response(
    ctx: &mut RequestCtx,
    status: StatusCode,
    headers: &mut http::HeaderMap,
    mut body: OutBody,
) -> OutBody {
    ctx.responded = true;
    ctx.upstream_time = ctx.upstream_started.map(|s| s.elapsed());
    if let Some(chain) = &ctx.chain {
        let none = Exchange::default();
        let filtered = ctx.filtered.as_deref_mut();
        let exchange = filtered.as_ref().map_or(&none, |f| &f.forward.exchange);
        // An encoder only comes back for a request that negotiated a coding, which
        // has its `filtered` state.
        if let (Some(encoder), Some(f)) = (chain.on_response(exchange, status, headers), filtered) {
            f.encoder = Some(encoder);
            body = OutBody::Unknown;
        }
    }
    body
}

/// `data` through the response's encoder, if it has one; `end`: the body's last bytes.
pub(super) fn encoded(ctx: &mut RequestCtx, data: Bytes, end: bool) -> Result<Bytes, ProxyError> {
    match ctx.filtered.as_deref_mut().and_then(|f| f.encoder.as_mut()) {
        Some(encoder) => filters::encode(encoder, &data, end).map_err(ProxyError::Compress),
        None => Ok(data),
    }
}

async fn body_to_client<D: Downstream>(
    down: &mut D,
    up: &mut BackendConn,
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
    up: &mut BackendConn,
    encoder: Option<&mut Encoder>,
) -> Result<Reading, ProxyError> {
    let trailers = up.take_trailers();
    let tail = match encoder {
        Some(encoder) => filters::encode(encoder, &[], true).map_err(ProxyError::Compress)?,
        None => Bytes::new(),
    };
    end_response(down, tail, trailers).await?;
    Ok(Reading::Done)
}

/// Ends the response to the client: the encoder's `tail` (if any), then the
/// backend's trailers, or the end of the body.
pub(super) async fn end_response<D: Downstream>(
    down: &mut D,
    tail: Bytes,
    trailers: Option<http::HeaderMap>,
) -> Result<(), ProxyError> {
    match trailers {
        Some(trailers) => {
            if !tail.is_empty() {
                down.write_body(tail, false).await?;
            }
            down.write_trailers(trailers).await?;
        }
        None => down.write_body(tail, true).await?,
    }
    Ok(())
}

/// Passes one piece of the client's request body to the backend; true when the body
/// is complete.
async fn body_to_backend(
    up: &mut BackendConn,
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
