//! HTTP/2 streams as the request path's [`Downstream`], on the h2 crate directly: the
//! request's head moved out of h2's (no copy), its body read with flow control given
//! back as it is taken, the response head built from the backend's map (moved, its
//! hop-by-hop fields removed) and sent with its body's first bytes, later pieces as
//! the client's flow-control window allows.

use std::cell::RefCell;
use std::future::poll_fn;
use std::task::Poll;

use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use http::header::{CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use pingora::protocols::Stream;

use super::downstream::{DownError, Downstream, Reply, Request};
use super::error::ProxyError;
use super::headers::strip_response;
use super::respond::HSTS;
use super::{Client, Gateway, HeadFacts, REQUEST_ID};
use crate::http1::{date, OutBody};

/// One HTTP/2 stream: its request body and its response.
pub(crate) struct H2Stream {
    body: RecvStream,
    respond: SendResponse<Bytes>,
    send: Option<SendStream<Bytes>>,
    /// Whether the response's last frame went out.
    ended: bool,
    limit: u64,
    read: u64,
    sent: u64,
    status: Option<StatusCode>,
    /// A gRPC call.
    grpc: bool,
}

impl Gateway {
    /// Serves the request of one HTTP/2 stream; returns whether it was refused as
    /// malformed (the connection keeps count).
    pub(crate) async fn serve_h2(
        &self,
        request: http::Request<RecvStream>,
        respond: SendResponse<Bytes>,
        client: &Client,
    ) -> bool {
        let (parts, body) = request.into_parts();
        let grpc = super::grpc::is_grpc(&parts.headers);
        let req = Request {
            method: parts.method,
            uri: parts.uri,
            version: parts.version,
            headers: parts.headers,
        };
        let mut down = H2Stream {
            body,
            respond,
            send: None,
            ended: false,
            limit: u64::MAX,
            read: 0,
            sent: 0,
            status: None,
            grpc,
        };
        let facts = HeadFacts {
            line: None,
            head_len: None,
        };
        let refused = self.serve(&mut down, req, client, facts).await;
        down.finish();
        refused
    }
}

impl H2Stream {
    /// Ends a response that was not ended (its body cut short); one never started is
    /// reset when the stream is dropped.
    fn finish(&mut self) {
        if let (Some(send), false) = (&mut self.send, self.ended) {
            send.send_reset(h2::Reason::INTERNAL_ERROR);
        }
    }

    /// Sends `data` as the client's window and h2's send buffer allow (a slow client
    /// holds the backend back, and the response's state stays counted until most of it
    /// is out); `end`: it ends the stream. A piece the window already has room for (a
    /// small body) goes at once, in one DATA frame.
    async fn send(&mut self, mut data: Bytes, end: bool) -> Result<(), DownError> {
        let Some(send) = &mut self.send else {
            return Err(DownError::Misuse("a body before the response head"));
        };
        self.sent += data.len() as u64;
        if data.is_empty() {
            send.send_data(data, end).map_err(DownError::H2)?;
            self.ended = end;
            return Ok(());
        }
        while !data.is_empty() {
            send.reserve_capacity(data.len());
            let window = match send.capacity() {
                0 => match poll_fn(|cx| send.poll_capacity(cx)).await {
                    Some(window) => window.map_err(DownError::Capacity)?,
                    // The stream is gone (the client reset it).
                    None => {
                        let closed = h2::Error::from(h2::Reason::STREAM_CLOSED);
                        return Err(DownError::Capacity(closed));
                    }
                },
                window => window,
            };
            let piece = data.split_to(window.min(data.len()));
            send.send_data(piece, end && data.is_empty())
                .map_err(DownError::H2)?;
        }
        self.ended = end;
        Ok(())
    }
}

impl H2Stream {
    /// A piece of request body read: its window given back as it is taken (the client
    /// sends on while the backend reads), counted against the route's limit.
    fn took(
        &mut self,
        piece: Option<Result<Bytes, h2::Error>>,
    ) -> Result<Option<Bytes>, DownError> {
        let Some(piece) = piece else {
            return Ok(None);
        };
        let piece = piece.map_err(DownError::H2)?;
        let _ = self.body.flow_control().release_capacity(piece.len());
        self.read += piece.len() as u64;
        if self.read > self.limit {
            return Err(DownError::BodyTooLarge);
        }
        Ok(Some(piece))
    }

    /// The gateway's own answer to a gRPC call: a trailers-only response (HTTP 200,
    /// `grpc-status` and `grpc-message` in the one HEADERS frame that ends the stream),
    /// with the answer's other fields (`retry-after`). Logged and counted under the
    /// HTTP status it stands for.
    fn grpc_answer(&mut self, reply: Reply<'_>) -> Result<(), DownError> {
        let mut response = Response::new(());
        let headers = response.headers_mut();
        for (name, value) in reply.extra {
            if name != http::header::CONTENT_TYPE && name != http::header::LOCATION {
                headers.insert(name.clone(), value.clone());
            }
        }
        for (name, value) in super::grpc::answer_fields(reply.status.as_u16()) {
            headers.insert(name, value);
        }
        headers.insert(REQUEST_ID, reply.request_id.header_value());
        self.status = Some(reply.status);
        self.respond
            .send_response(response, true)
            .map_err(DownError::H2)?;
        self.ended = true;
        Ok(())
    }
}

thread_local! {
    /// The `Date` value of the current second, shared by every response of the thread.
    static DATE_VALUE: RefCell<([u8; date::DATE_LEN], HeaderValue)> =
        const { RefCell::new(([0; date::DATE_LEN], HeaderValue::from_static(""))) };
}

/// `Date` as a header value: formatted (and allocated) once a second per thread.
fn date_value() -> HeaderValue {
    let now = date::now();
    DATE_VALUE.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != now {
            if let Ok(value) = HeaderValue::from_bytes(&now) {
                *cached = (now, value);
            }
        }
        cached.1.clone()
    })
}

impl Downstream for H2Stream {
    fn set_max_body(&mut self, limit: u64) {
        self.limit = limit;
    }

    fn body_empty(&self) -> bool {
        self.read == 0 && self.body.is_end_stream()
    }

    fn body_done(&self) -> bool {
        self.body.is_end_stream()
    }

    async fn read_body(&mut self) -> Result<Option<Bytes>, DownError> {
        let piece = self.body.data().await;
        self.took(piece)
    }

    async fn read_body_or_reset(&mut self, body: bool) -> Result<Option<Bytes>, DownError> {
        let piece = poll_fn(|cx| {
            let reset = match &mut self.send {
                Some(send) => send.poll_reset(cx),
                None => self.respond.poll_reset(cx),
            };
            if let Poll::Ready(reason) = reset {
                let reason = reason.unwrap_or(h2::Reason::CANCEL);
                return Poll::Ready(Err(DownError::H2(h2::Error::from(reason))));
            }
            match body {
                true => self.body.poll_data(cx).map(Ok),
                false => Poll::Pending,
            }
        })
        .await?;
        self.took(piece)
    }

    fn buffered_body(&mut self) -> Result<Option<Bytes>, DownError> {
        Ok(None)
    }

    async fn write_interim(
        &mut self,
        _status: StatusCode,
        _headers: &HeaderMap,
    ) -> Result<(), DownError> {
        // h2 sends one response head per stream: interim answers are not passed on.
        Ok(())
    }

    async fn write_head(
        &mut self,
        reply: Reply<'_>,
        body: Bytes,
        end: bool,
    ) -> Result<(), DownError> {
        if self.grpc && !reply.relayed && reply.status.as_u16() >= 300 {
            return self.grpc_answer(reply);
        }
        let mut response = Response::new(());
        *response.status_mut() = reply.status;
        *response.headers_mut() = reply.headers;
        let headers = response.headers_mut();
        if reply.relayed {
            // What HTTP/2 forbids (RFC 9113 §8.2.2) and HTTP/1 framing.
            strip_response(headers, reply.status);
            headers.remove(TRANSFER_ENCODING);
        }
        headers.insert(REQUEST_ID, reply.request_id.header_value());
        if let Some(hsts) = reply.hsts {
            headers.insert(HSTS, hsts.clone());
        }
        for (name, value) in reply.extra {
            headers.insert(name.clone(), value.clone());
        }
        if let OutBody::Length(n) = reply.body {
            if !headers.contains_key(CONTENT_LENGTH) {
                headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
            }
        }
        if !headers.contains_key(DATE) {
            headers.insert(DATE, date_value());
        }
        self.status = Some(reply.status);
        let empty = body.is_empty();
        let send = self
            .respond
            .send_response(response, end && empty)
            .map_err(DownError::H2)?;
        self.send = Some(send);
        self.ended = end && empty;
        if empty {
            return Ok(());
        }
        // The head and a small body leave together: HEADERS, then one DATA frame that
        // ends the stream.
        self.send(body, end).await
    }

    async fn write_body(&mut self, data: Bytes, end: bool) -> Result<(), DownError> {
        if self.ended {
            return Ok(());
        }
        self.send(data, end).await
    }

    async fn write_trailers(&mut self, trailers: HeaderMap) -> Result<(), DownError> {
        let Some(send) = &mut self.send else {
            return Err(DownError::Misuse("trailers before the response head"));
        };
        send.send_trailers(trailers).map_err(DownError::H2)?;
        self.ended = true;
        Ok(())
    }

    fn grpc(&self) -> bool {
        self.grpc
    }

    fn status(&self) -> Option<StatusCode> {
        self.status
    }

    fn body_bytes_sent(&self) -> u64 {
        self.sent
    }

    fn body_bytes_received(&self) -> u64 {
        self.read
    }

    fn set_close(&mut self) {}

    async fn tunnel(&mut self, _backend: Stream, _early: BytesMut) -> Result<(), ProxyError> {
        // h2 refuses `Upgrade` in requests: no HTTP/2 stream is ever upgraded.
        Err(ProxyError::Tunnel(std::io::ErrorKind::Unsupported.into()))
    }
}
