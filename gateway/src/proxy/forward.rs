//! The backend leg of a request: choosing a backend, connecting through the pool,
//! retrying where it is safe, and the exchange over the gateway's own HTTP/1 codec
//! (`crate::http1`): the request body streamed up while the response comes down,
//! WebSocket upgrades tunnelled.

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, Response, StatusCode, Version};
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType, OrErr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::headers::{self, Hops, IpText};
use super::request::hash_key;
use super::respond::HSTS;
use super::{Gateway, RequestCtx, REQUEST_ID};
use crate::config::{Balance, Timeouts};
use crate::http1::{
    Buffered, ClientConn, HeadLimits, Http1Error, OutBody, OutRequest, ResponseBody, ResponseHead,
    MAX_HEADER_SLOTS,
};
use crate::upstream::Outcome;

/// Backend connections as the codec drives them.
type Backend = ClientConn<Stream>;

/// Limits on a backend's response heads: pingora's (1 MiB, 256 fields), with room for
/// the fields the gateway adds.
const RESPONSE_LIMITS: HeadLimits = HeadLimits {
    max_head: 1 << 20,
    max_headers: MAX_HEADER_SLOTS,
    max_target: 0,
    reserve: ADDED_HEADERS,
};

/// Headers the gateway adds to a response (request id, HSTS) or a request at most.
const ADDED_HEADERS: usize = 6;

/// Request body bytes kept for a retry at most (pingora's retry buffer was as large): a
/// request that sent more cannot be sent again.
const REPLAY_LIMIT: usize = 64 * 1024;

/// The request body pieces sent to the backend, kept to send again on a retry; only
/// kept when the upstream retries at all.
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
    pub(super) async fn proxy(
        &self,
        session: &mut ServerSession,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        let Some(route) = ctx.route.clone() else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "no upstream routed",
            ));
        };
        let upstream = &*route.upstream;
        let config = &upstream.config;
        // A request without the hash key is balanced round robin, not pinned.
        let key = match &config.balance {
            Balance::ConsistentHash(key) => hash_key(session, key),
            _ => None,
        };
        let mut replay = Replay::new(config.retries > 0);
        loop {
            if let Some(previous) = ctx.backend.take() {
                ctx.tried.push(previous.backend().addr);
            }
            ctx.attempts += 1;
            let Some(chosen) = upstream.select(key, &ctx.tried) else {
                let mut e = Error::explain(ErrorType::ConnectNoRoute, "upstream has no backends");
                e.esource = ErrorSource::Upstream;
                return Err(e);
            };
            let backend = chosen.backend().clone();
            ctx.backend = Some(chosen);
            let connected = match backend.pool.take(config.timeouts.idle) {
                Some(stream) => Ok(stream),
                // Boxed: connecting (TLS included) is an ~8 KB future, rare with the pool,
                // that would otherwise size every request's (and connection's) future.
                None => Box::pin(self.connect(backend.peer(), config.timeouts.connect, ctx)).await,
            };
            let stream = match connected {
                Ok(stream) => stream,
                Err(mut e) => {
                    e.esource = ErrorSource::Upstream;
                    backend.count(Outcome::ConnectFailure);
                    backend.connect_failed(&config.passive);
                    // Nothing reached the backend: any request may go to another one,
                    // while attempts and connect time remain (all backends down: 502
                    // within one connect timeout).
                    if ctx.attempts <= config.retries && ctx.connecting < config.timeouts.connect {
                        continue;
                    }
                    return Err(e);
                }
            };
            backend.connect_succeeded();
            let mut up = ClientConn::new(stream);
            let exchanged = exchange(
                self.proto,
                session,
                &mut up,
                ctx,
                &mut replay,
                &config.timeouts,
            )
            .await;
            backend.count(outcome(&exchanged, ctx.responded));
            match exchanged {
                Ok(Exchanged::Done) => {
                    if let Some(stream) = up.into_reusable() {
                        backend.pool.put(stream);
                    }
                    return Ok(());
                }
                Ok(Exchanged::Upgraded) => return tunnel(session, up).await,
                Err(e) => {
                    let connect_left = ctx.connecting < config.timeouts.connect;
                    if ctx.attempts <= config.retries
                        && connect_left
                        && may_retry(session, &up, &replay, &e)
                    {
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }

    /// A new connection to `peer`. The first attempt has the peer's own `connect_timeout`
    /// (`budget`); a retry has what earlier attempts left of it, so that every connect of
    /// the request together stays within one `connect_timeout`.
    async fn connect(
        &self,
        peer: &HttpPeer,
        budget: Duration,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Stream> {
        let started = std::time::Instant::now();
        let connect = self.connector.new_stream(peer);
        let result = if ctx.connecting.is_zero() {
            connect.await
        } else {
            let left = budget.saturating_sub(ctx.connecting);
            match tokio::time::timeout(left, connect).await {
                Ok(result) => result,
                Err(_) => Error::e_explain(
                    ErrorType::ConnectTimedout,
                    "connect_timeout used up by earlier attempts",
                ),
            }
        };
        ctx.connecting += started.elapsed();
        result
    }
}

/// A backend failure as pingora's error (502 or 504, by the request path's mapping).
fn up_error(e: Http1Error, writing: bool) -> Box<Error> {
    let etype = match &e {
        _ if e.is_timeout() && writing => ErrorType::WriteTimedout,
        _ if e.is_timeout() => ErrorType::ReadTimedout,
        Http1Error::Closed(_) => ErrorType::ConnectionClosed,
        Http1Error::Io(_) if writing => ErrorType::WriteError,
        Http1Error::Io(_) => ErrorType::ReadError,
        _ => ErrorType::InvalidHTTPHeader,
    };
    Error::because(etype, "backend", e).into_up()
}

fn timed_out(writing: bool) -> Box<Error> {
    let etype = match writing {
        true => ErrorType::WriteTimedout,
        false => ErrorType::ReadTimedout,
    };
    Error::explain(etype, "backend timed out").into_up()
}

/// Writes to the backend within `write_timeout`.
async fn to_backend<F: std::future::Future<Output = Result<(), Http1Error>>>(
    write: F,
    timeouts: &Timeouts,
) -> pingora::Result<()> {
    match tokio::time::timeout(timeouts.write, write).await {
        Ok(written) => written.map_err(|e| up_error(e, true)),
        Err(_) => Err(timed_out(true)),
    }
}

/// The forwarding fields the gateway writes as extra slices, and the client's they
/// replace.
struct Forwarding {
    ip: Option<IpText>,
    /// `X-Forwarded-For` of a trusted proxy's request: its chain and the peer.
    chain: Option<Vec<u8>>,
    request_id: HeaderValue,
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

/// Sends the request over `up` and the response back, the request body streamed up
/// while the response streams down.
async fn exchange(
    proto: &'static str,
    down: &mut ServerSession,
    up: &mut Backend,
    ctx: &mut RequestCtx,
    replay: &mut Replay,
    timeouts: &Timeouts,
) -> pingora::Result<Exchanged> {
    let request_id = ctx.request_id(down).clone();
    let peer = super::client_ip(down);
    let body_empty = down.is_body_empty();
    {
        let from = down.req_header();
        let h2 = from.version == Version::HTTP_2;
        let headers = &from.headers;
        let ip = peer.map(IpText::new);
        let chain = match &ip {
            Some(ip) if ctx.trusted && headers.contains_key(headers::X_FORWARDED_FOR) => {
                Some(headers::forwarded_chain(headers, ip.as_bytes()))
            }
            _ => None,
        };
        let forwarding = Forwarding {
            ip,
            chain,
            request_id,
        };
        let authority = from.uri.authority().map(|a| a.as_str().as_bytes());
        let host = authority.or_else(|| headers.get(HOST).map(HeaderValue::as_bytes));
        let mut extra = Extras::default();
        let mut add = |name: &'static [u8], value| extra.push(name, value);
        // HTTP/2 has `:authority` where HTTP/1 has Host.
        let replace_host = h2 && authority.is_some();
        if let (true, Some(authority)) = (replace_host, authority) {
            add(b"host", authority);
        }
        let trusted = ctx.trusted;
        if let Some(chain) = &forwarding.chain {
            add(b"x-forwarded-for", chain);
        } else if let Some(ip) = &forwarding.ip {
            add(b"x-forwarded-for", ip.as_bytes());
        }
        if !(trusted && headers.contains_key(headers::X_FORWARDED_PROTO)) {
            add(b"x-forwarded-proto", proto.as_bytes());
        }
        if let Some(host) = host {
            if !(trusted && headers.contains_key(headers::X_FORWARDED_HOST)) {
                add(b"x-forwarded-host", host);
            }
        }
        add(b"x-request-id", forwarding.request_id.as_bytes());
        if ctx.upgrade {
            add(b"connection", b"upgrade");
        }
        let hops = Hops::request(headers, ctx.upgrade);
        let peer_known = forwarding.ip.is_some();
        let skip = |name: &http::header::HeaderName| {
            hops.skip(name)
                || name == REQUEST_ID
                || (replace_host && name == HOST)
                || (!trusted && headers::is_forwarding(name))
                || (peer_known && name == headers::X_FORWARDED_FOR)
        };
        let body = request_body(headers, h2, body_empty);
        let target = from.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let req = OutRequest {
            method: &from.method,
            target: target.as_bytes(),
            headers,
            skip: &skip,
            extra: extra.as_slice(),
            body,
        };
        let end = body == OutBody::None;
        to_backend(up.write_request(req, b"", end), timeouts).await?;
    }
    // A retry first sends again the body bytes the previous attempt took.
    let mut request_done = body_empty || up.request_done();
    for piece in &replay.pieces {
        to_backend(up.write_body(piece, false), timeouts).await?;
    }
    if !request_done && down.is_body_done() {
        to_backend(up.write_body(b"", true), timeouts).await?;
        request_done = true;
    }
    let mut reading = Reading::Head;
    let mut send_error = None;
    let silent = tokio::time::sleep(timeouts.read);
    tokio::pin!(silent);
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
                    (Err(e), None) => return Err(up_error(e, false)),
                };
                reading = to_client(down, up, piece, ctx).await?;
                if reading == Reading::Upgraded {
                    return Ok(Exchanged::Upgraded);
                }
            }
            body = down.read_request_body(), if !request_done => {
                let body = body.map_err(|e| e.into_down())?;
                match body_to_backend(up, body, ctx, replay, timeouts).await {
                    Ok(done) => request_done = done,
                    // A backend may answer before taking the whole body, and close:
                    // its answer still goes to the client. No answer: this error.
                    Err(e) if e.esource() == &ErrorSource::Upstream => {
                        send_error = Some(e);
                        request_done = true;
                    }
                    Err(e) => return Err(e),
                }
            }
            () = &mut silent, if reading != Reading::Done => return Err(timed_out(false)),
        }
        // The backend has `read_timeout` from the last thing that moved.
        silent.as_mut().reset(Instant::now() + timeouts.read);
    }
    match send_error {
        Some(e) => Err(e),
        None => Ok(Exchanged::Done),
    }
}

/// How a request's body goes to the backend: by its length, chunked when it has none
/// (an HTTP/2 body may come without one; an HTTP/1 chunked body stays chunked).
fn request_body(headers: &HeaderMap, h2: bool, empty: bool) -> OutBody {
    let length = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok()?.parse().ok());
    match length {
        Some(n) => OutBody::Length(n),
        None if headers.contains_key(TRANSFER_ENCODING) => OutBody::Unknown,
        None if h2 && !empty => OutBody::Unknown,
        None => OutBody::None,
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
async fn to_client(
    down: &mut ServerSession,
    up: &mut Backend,
    piece: FromBackend,
    ctx: &mut RequestCtx,
) -> pingora::Result<Reading> {
    let head = match piece {
        FromBackend::Body(data) => {
            let end = up.response_done();
            down.write_response_body(data, end)
                .await
                .map_err(|e| e.into_down())?;
            return Ok(if end { Reading::Done } else { Reading::Body });
        }
        FromBackend::End => {
            down.write_response_body(Bytes::new(), true)
                .await
                .map_err(|e| e.into_down())?;
            return Ok(Reading::Done);
        }
        FromBackend::Head(head) => head,
    };
    let status = head.status;
    // Informational answers (100 Continue, 103) go through; the real one follows.
    if head.is_interim() {
        let (mut parts, ()) = Response::new(()).into_parts();
        parts.status = status;
        parts.headers = head.headers;
        down.write_response_header(Box::new(ResponseHeader::from(parts)))
            .await
            .map_err(|e| e.into_down())?;
        return Ok(Reading::Head);
    }
    ctx.responded = true;
    let unframed = head.framing.body == ResponseBody::UntilClose;
    let (mut parts, ()) = Response::new(()).into_parts();
    parts.status = status;
    // The client connection is HTTP/1.1 (or HTTP/2) whatever the backend speaks.
    parts.version = Version::HTTP_11;
    parts.headers = head.headers;
    headers::strip_response(&mut parts.headers, status);
    parts
        .headers
        .insert(REQUEST_ID, ctx.request_id(down).clone());
    if let Some(hsts) = &ctx.hsts {
        parts.headers.insert(HSTS, hsts.clone());
    }
    if unframed {
        // Until the backend closes: chunked to an HTTP/1.1 client, until close (the
        // connection's last response) to an HTTP/1.0 one.
        match down.req_header().version {
            Version::HTTP_11 => {
                parts
                    .headers
                    .insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
            }
            Version::HTTP_10 => down.set_keepalive(None),
            _ => {}
        }
    }
    down.write_response_header(Box::new(ResponseHeader::from(parts)))
        .await
        .map_err(|e| e.into_down())?;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Ok(Reading::Upgraded);
    }
    // The body's first bytes, often read with the head, go out at once.
    match up.buffered_body().map_err(|e| up_error(e, false))? {
        Buffered::Data(data) => {
            let end = up.response_done();
            down.write_response_body(data, end)
                .await
                .map_err(|e| e.into_down())?;
            Ok(if end { Reading::Done } else { Reading::Body })
        }
        Buffered::End => {
            down.write_response_body(Bytes::new(), true)
                .await
                .map_err(|e| e.into_down())?;
            Ok(Reading::Done)
        }
        Buffered::Empty => Ok(Reading::Body),
    }
}

/// Passes one piece of the client's request body to the backend, within the route's
/// `max_body_size`; true when the body is complete.
async fn body_to_backend(
    up: &mut Backend,
    body: Option<Bytes>,
    ctx: &mut RequestCtx,
    replay: &mut Replay,
    timeouts: &Timeouts,
) -> pingora::Result<bool> {
    let Some(chunk) = body else {
        to_backend(up.write_body(b"", true), timeouts).await?;
        return Ok(true);
    };
    ctx.body_bytes += chunk.len() as u64;
    if ctx.body_bytes > ctx.max_body {
        return Err(Error::explain(
            ErrorType::HTTPStatus(413),
            "request body over the route's max_body_size",
        ));
    }
    replay.push(&chunk);
    to_backend(up.write_body(&chunk, false), timeouts).await?;
    Ok(false)
}

/// After a `101`: bytes both ways until either side closes; `max_body_size` no longer
/// applies.
async fn tunnel(down: &mut ServerSession, up: Backend) -> pingora::Result<()> {
    let (mut io, early) = up.into_parts();
    if !early.is_empty() {
        down.write_response_body(early.freeze(), false)
            .await
            .map_err(|e| e.into_down())?;
    }
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            read = io.read(&mut buf) => {
                let n = read.or_err(ErrorType::ReadError, "upgraded backend").map_err(|e| e.into_up())?;
                let end = n == 0;
                let data = Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
                down.write_response_body(data, end)
                    .await
                    .map_err(|e| e.into_down())?;
                if end {
                    return Ok(());
                }
            }
            body = down.read_request_body() => {
                let Some(data) = body.map_err(|e| e.into_down())? else {
                    return Ok(());
                };
                io.write_all(&data)
                    .await
                    .or_err(ErrorType::WriteError, "upgraded backend")
                    .map_err(|e| e.into_up())?;
            }
        }
    }
}

/// What an exchange says about its backend: an error of the backend's connection is
/// its failure; otherwise (the exchange completed, or the client or the gateway ended
/// it) it answered, unless no response had come back yet.
fn outcome(exchanged: &pingora::Result<Exchanged>, responded: bool) -> Outcome {
    match exchanged {
        Ok(_) => Outcome::Success,
        Err(e) if e.esource() == &ErrorSource::Upstream => Outcome::Error,
        Err(_) if responded => Outcome::Success,
        Err(_) => Outcome::Cancelled,
    }
}

/// Whether a failed exchange may go to another backend: its connection closed before
/// any response byte, and the request can be sent again (idempotent, or without a
/// body, and no more body taken than the replay buffer holds).
fn may_retry(session: &mut ServerSession, up: &Backend, replay: &Replay, e: &Error) -> bool {
    let closed_early = !up.response_started()
        && e.esource() == &ErrorSource::Upstream
        && matches!(
            e.etype(),
            ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
        );
    let replayable = session.req_header().method.is_idempotent() || session.is_body_empty();
    closed_early && replayable && !replay.truncated
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_is_judged_by_what_the_backend_did() {
        let failed = |etype, esource| {
            let mut e = Error::new(etype);
            e.esource = esource;
            Err(e)
        };
        assert_eq!(outcome(&Ok(Exchanged::Done), true), Outcome::Success);
        assert_eq!(outcome(&Ok(Exchanged::Upgraded), true), Outcome::Success);
        let backend_closed = failed(ErrorType::ConnectionClosed, ErrorSource::Upstream);
        assert_eq!(outcome(&backend_closed, true), Outcome::Error);
        assert_eq!(outcome(&backend_closed, false), Outcome::Error);
        let client_gone = failed(ErrorType::WriteError, ErrorSource::Downstream);
        assert_eq!(outcome(&client_gone, true), Outcome::Success);
        assert_eq!(outcome(&client_gone, false), Outcome::Cancelled);
        let too_large = failed(ErrorType::HTTPStatus(413), ErrorSource::Unset);
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
