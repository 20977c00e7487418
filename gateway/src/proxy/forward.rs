//! The backend leg of a request: choosing a backend, connecting through the pool,
//! retrying where it is safe, and one task streaming the request body up while the
//! response comes down (WebSocket upgrades included).

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::response::Parts as ResponseParts;
use http::{StatusCode, Version};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::v1::client::HttpSession as BackendSession;
use pingora::protocols::http::{HttpTask, ServerSession};
use pingora::protocols::Stream;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType, OrErr};

use super::request::{authority_value, hash_key};
use super::respond::HSTS;
use super::{headers, Gateway, RequestCtx, REQUEST_ID};
use crate::config::Balance;
use crate::upstream::Outcome;

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
        session.enable_retry_buffering();
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
            let peer = backend.peer();
            let idle = config.timeouts.idle;
            let connected = match backend.pool.take(idle) {
                Some(stream) => Ok(stream),
                // Boxed: connecting (TLS included) is an ~8 KB future, rare with the pool,
                // that would otherwise size every request's (and connection's) future.
                None => Box::pin(self.connect(peer, config.timeouts.connect, ctx)).await,
            };
            let mut up = match connected {
                Ok(stream) => BackendSession::new_with_options(stream, peer),
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
            up.read_timeout = peer.options.read_timeout;
            up.write_timeout = peer.options.write_timeout;
            let exchanged = self.exchange(session, &mut up, ctx).await;
            backend.count(outcome(&exchanged, ctx.responded));
            match exchanged {
                Ok(true) => {
                    up.respect_keepalive();
                    if let Some(stream) = up.reuse().await {
                        backend.pool.put(stream);
                    }
                    return Ok(());
                }
                Ok(false) => return Ok(()),
                Err(e) => {
                    let connect_left = ctx.connecting < config.timeouts.connect;
                    if ctx.attempts <= config.retries && connect_left && may_retry(session, ctx, &e)
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
        let started = Instant::now();
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

    /// Sends the request over `up` and the response back, the request body streamed
    /// up while the response streams down. `Ok(true)`: `up` may serve another request.
    async fn exchange(
        &self,
        down: &mut ServerSession,
        up: &mut BackendSession,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        let req = self.backend_request(down, ctx)?;
        up.write_request_header(req)
            .await
            .map_err(|e| e.into_up())?;
        // A retry first replays the body bytes the previous attempt took.
        if let Some(sent) = down.get_retry_buffer() {
            up.write_body(&sent).await.map_err(|e| e.into_up())?;
        }
        let mut request_done = down.is_body_done();
        if request_done {
            up.finish_body().await.map_err(|e| e.into_up())?;
        }
        let mut response_done = false;
        let mut send_error = None;
        while !(request_done && response_done) {
            tokio::select! {
                biased;
                task = read_backend(up), if !response_done => {
                    let task = match (task, send_error.take()) {
                        (Ok(task), unsent) => {
                            send_error = unsent;
                            task
                        }
                        (Err(_), Some(unsent)) => return Err(unsent),
                        (Err(e), None) => return Err(e.into_up()),
                    };
                    response_done = to_client(down, task, ctx).await?;
                    if down.was_upgraded() {
                        // Both ways are now a byte stream, until either side closes;
                        // max_body_size no longer applies.
                        up.maybe_upgrade_body_writer();
                        ctx.max_body = u64::MAX;
                        if response_done || down.is_body_done() {
                            return Ok(false);
                        }
                        request_done = false;
                    }
                }
                body = down.read_request_body(), if !request_done => {
                    let body = body.map_err(|e| e.into_down())?;
                    match to_backend(up, body, ctx).await {
                        Ok(done) => request_done = done,
                        // A backend may answer before taking the whole body, and close:
                        // its answer still goes to the client. No answer: this error.
                        Err(e) if e.esource() == &ErrorSource::Upstream && !down.was_upgraded() => {
                            send_error = Some(e);
                            request_done = true;
                        }
                        Err(e) => return Err(e),
                    }
                    if request_done && down.was_upgraded() {
                        return Ok(false);
                    }
                }
            }
        }
        Ok(send_error.is_none())
    }

    /// The request as it goes to the backend: HTTP/1.1 with `Host`, hop-by-hop headers
    /// dropped, `X-Forwarded-*` and the request id set, a body without length chunked.
    fn backend_request(
        &self,
        down: &mut ServerSession,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Box<RequestHeader>> {
        // An HTTP/2 body may come without a length; HTTP/1 bodies are framed by one.
        let unframed = {
            let from = down.req_header();
            from.version == Version::HTTP_2
                && !from.headers.contains_key(CONTENT_LENGTH)
                && !from.headers.contains_key(TRANSFER_ENCODING)
        };
        let chunked = unframed && !down.is_body_empty();
        let from = down.req_header();
        // A copy without pingora's header-case map, edited as a plain header map (no
        // name parsing) with room for the headers set here: inserts into pingora's
        // exactly-sized copy would grow two maps per request.
        let mut parts = from.as_owned_parts();
        let h = &mut parts.headers;
        h.reserve(ADDED_HEADERS);
        if from.version == Version::HTTP_2 {
            if let Some(authority) = from.uri.authority() {
                let host = HeaderValue::from_str(authority.as_str())
                    .or_err(ErrorType::InvalidHTTPHeader, "HTTP/2 :authority")?;
                h.insert(HOST, host);
            }
        }
        headers::strip_request(h, ctx.upgrade);
        let peer = super::client_ip(down);
        headers::set_forwarded(h, peer, ctx.trusted, self.proto, authority_value(from))?;
        h.insert(REQUEST_ID, ctx.request_id(down).clone());
        if chunked {
            h.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        }
        parts.version = Version::HTTP_11;
        let mut req = Box::new(RequestHeader::from(parts));
        if !from.raw_path_is_utf8() {
            req.set_raw_path(from.raw_path())?;
        }
        Ok(req)
    }
}

/// Headers the gateway adds to a request (Host, `X-Forwarded-*`, request id, framing)
/// or a response (request id, HSTS) at most.
const ADDED_HEADERS: usize = 6;

/// A piece of the backend's response.
enum FromBackend {
    /// A response head, and whether it ends the response.
    Head(ResponseParts, bool),
    /// Body, upgraded bytes, or the end.
    Task(HttpTask),
}

/// The next piece of the backend's response. A head comes as a copy without pingora's
/// header-case map (standard names go out in their usual case, others in lower case, as
/// HAProxy sends them) and with room for the headers the gateway adds.
async fn read_backend(up: &mut BackendSession) -> pingora::Result<FromBackend> {
    let reading_head = up
        .get_status()
        .is_none_or(|s| s.is_informational() && s != StatusCode::SWITCHING_PROTOCOLS);
    if !reading_head {
        return up.read_response_task().await.map(FromBackend::Task);
    }
    up.read_response().await?;
    let Some(head) = up.resp_header() else {
        return Err(Error::explain(
            ErrorType::InvalidHTTPHeader,
            "no response head",
        ));
    };
    let mut parts = head.as_owned_parts();
    parts.headers.reserve(ADDED_HEADERS);
    // The client connection is HTTP/1.1 (or HTTP/2) whatever the backend speaks.
    parts.version = Version::HTTP_11;
    Ok(FromBackend::Head(parts, up.is_body_done()))
}

/// Passes one piece of the backend's response to the client; true when it was the last.
async fn to_client(
    down: &mut ServerSession,
    piece: FromBackend,
    ctx: &mut RequestCtx,
) -> pingora::Result<bool> {
    let task = match piece {
        FromBackend::Head(mut head, end) => {
            // Informational answers (100 Continue) go through; the real one follows.
            let status = head.status;
            let last = !(status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS);
            if last {
                ctx.responded = true;
                headers::strip_response(&mut head.headers, status);
                head.headers
                    .insert(REQUEST_ID, ctx.request_id(down).clone());
                if let Some(hsts) = &ctx.hsts {
                    head.headers.insert(HSTS, hsts.clone());
                }
            }
            down.write_response_header(Box::new(ResponseHeader::from(head)))
                .await
                .map_err(|e| e.into_down())?;
            if !(end && last) {
                return Ok(false);
            }
            HttpTask::Done
        }
        FromBackend::Task(task) => task,
    };
    match task {
        HttpTask::Body(data, end) | HttpTask::UpgradedBody(data, end) => {
            down.write_response_body(data.unwrap_or_default(), end)
                .await
                .map_err(|e| e.into_down())?;
            Ok(end)
        }
        HttpTask::Done | HttpTask::Header(..) => {
            down.write_response_body(Bytes::new(), true)
                .await
                .map_err(|e| e.into_down())?;
            Ok(true)
        }
        HttpTask::Trailer(_) => Ok(false),
        HttpTask::Failed(e) => Err(e.into_up()),
    }
}

/// Passes one piece of the client's request body to the backend, within the route's
/// `max_body_size`; true when the body is complete.
async fn to_backend(
    up: &mut BackendSession,
    body: Option<Bytes>,
    ctx: &mut RequestCtx,
) -> pingora::Result<bool> {
    let Some(chunk) = body else {
        up.finish_body().await.map_err(|e| e.into_up())?;
        return Ok(true);
    };
    ctx.body_bytes += chunk.len() as u64;
    if ctx.body_bytes > ctx.max_body {
        return Err(Error::explain(
            ErrorType::HTTPStatus(413),
            "request body over the route's max_body_size",
        ));
    }
    up.write_body(&chunk).await.map_err(|e| e.into_up())?;
    Ok(false)
}

/// What an exchange says about its backend: an error of the backend's connection is
/// its failure; otherwise (the exchange completed, or the client or the gateway ended
/// it) it answered, unless no response had come back yet.
fn outcome(exchanged: &pingora::Result<bool>, responded: bool) -> Outcome {
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
fn may_retry(session: &mut ServerSession, ctx: &RequestCtx, e: &Error) -> bool {
    let closed_early = !ctx.responded
        && e.esource() == &ErrorSource::Upstream
        && matches!(
            e.etype(),
            ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
        );
    let replayable = session.req_header().method.is_idempotent() || session.is_body_empty();
    closed_early && replayable && !session.retry_buffer_truncated()
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
        assert_eq!(outcome(&Ok(true), true), Outcome::Success);
        assert_eq!(outcome(&Ok(false), true), Outcome::Success);
        let backend_closed = failed(ErrorType::ConnectionClosed, ErrorSource::Upstream);
        assert_eq!(outcome(&backend_closed, true), Outcome::Error);
        assert_eq!(outcome(&backend_closed, false), Outcome::Error);
        let client_gone = failed(ErrorType::WriteError, ErrorSource::Downstream);
        assert_eq!(outcome(&client_gone, true), Outcome::Success);
        assert_eq!(outcome(&client_gone, false), Outcome::Cancelled);
        let too_large = failed(ErrorType::HTTPStatus(413), ErrorSource::Unset);
        assert_eq!(outcome(&too_large, false), Outcome::Cancelled);
    }
}
