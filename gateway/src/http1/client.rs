//! The backend side of a connection: one request at a time over a (pooled) stream. It
//! writes the request head with the body's first bytes (chunked when the length is not
//! known), reads the response head (interim ones handed back one by one, a 101 ending the
//! exchange), reads the body by its framing, and says whether the connection can go back
//! to the pool: only when both messages are complete and the framing and `Connection`
//! allow it.

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, Method};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::chunked::{chunk_size_line, last_chunk, ChunkedLimits};
use super::framing::ResponseBody;
use super::head::{HeadLimits, HeadScan};
use super::io::{read_head, BodyReader, Buffered, Output};
use super::response::{parse_response, ResponseHead};
use super::write::{self, Extra, OutBody, Skip};
use super::Http1Error;

/// A request to write.
#[derive(Clone, Copy)]
pub struct OutRequest<'a> {
    pub method: &'a Method,
    /// The target as it goes to the backend (the client's, or rewritten).
    pub target: &'a [u8],
    /// Fields written as they are (Host included), except Content-Length and
    /// Transfer-Encoding, which the session writes itself from `body`.
    pub headers: &'a HeaderMap,
    /// Fields of `headers` left out as well (hop-by-hop ones): [`write::keep_all`] for
    /// none.
    pub skip: Skip<'a>,
    /// More fields, as slices (forwarding headers, a request id).
    pub extra: Extra<'a>,
    pub body: OutBody,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sending {
    /// No request yet.
    Idle,
    Length(u64),
    Chunked,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Receiving {
    /// Before the final response head (interim heads may have come).
    Head,
    Body,
    Done,
    /// A 101 came: the stream is the new protocol's.
    Upgraded,
}

/// One backend connection's HTTP/1 session.
#[derive(Debug)]
pub struct ClientConn<S> {
    io: S,
    buf: BytesMut,
    scan: HeadScan,
    out: Output,
    chunked: ChunkedLimits,
    body: BodyReader,
    sending: Sending,
    receiving: Receiving,
    head_request: bool,
    /// What the final response said about the connection.
    keep_alive: bool,
    /// Whether any byte of a response arrived.
    started: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> ClientConn<S> {
    pub fn new(io: S) -> Self {
        Self {
            io,
            buf: BytesMut::new(),
            scan: HeadScan::default(),
            out: Output::default(),
            chunked: ChunkedLimits::default(),
            body: BodyReader::done(),
            sending: Sending::Idle,
            receiving: Receiving::Done,
            head_request: false,
            keep_alive: false,
            started: false,
        }
    }

    /// Limits for chunked response bodies.
    pub fn set_chunked_limits(&mut self, limits: ChunkedLimits) {
        self.chunked = limits;
    }

    /// Writes the request head (HTTP/1.1) and `body` (its first bytes, or all of it with
    /// `end`) in the same write when small.
    pub async fn write_request(
        &mut self,
        req: OutRequest<'_>,
        body: &[u8],
        end: bool,
    ) -> Result<(), Http1Error> {
        if self.sending != Sending::Idle {
            return Err(Http1Error::Misuse("one request per session"));
        }
        self.out.reserve(
            write::head_size(req.headers, req.extra) + req.target.len(),
            body.len(),
        );
        let out = &mut self.out.buf;
        write::request_line(out, req.method, req.target);
        write::fields(out, req.headers, |n| {
            n == CONTENT_LENGTH || n == TRANSFER_ENCODING || (req.skip)(n)
        });
        write::extra_fields(out, req.extra);
        self.sending = match req.body {
            OutBody::None => Sending::Length(0),
            OutBody::Length(n) => {
                write::content_length(out, n);
                Sending::Length(n)
            }
            OutBody::Unknown => {
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
                Sending::Chunked
            }
        };
        out.extend_from_slice(b"\r\n");
        self.head_request = *req.method == Method::HEAD;
        self.receiving = Receiving::Head;
        self.write_body(body, end).await
    }

    /// Writes request body bytes; `end`: they are the last. More than the
    /// Content-Length, or fewer at the end, fail (the connection is then not reused).
    pub async fn write_body(&mut self, data: &[u8], end: bool) -> Result<(), Http1Error> {
        let len = data.len() as u64;
        match self.sending {
            Sending::Length(left) => {
                if len > left {
                    return Err(Http1Error::Misuse("more body than its Content-Length"));
                }
                let left = left - len;
                self.sending = if end && left == 0 {
                    Sending::Done
                } else {
                    Sending::Length(left)
                };
                self.out.send(&mut self.io, data, b"").await?;
                if end && left != 0 {
                    return Err(Http1Error::Misuse("body shorter than its Content-Length"));
                }
                Ok(())
            }
            Sending::Chunked => {
                if !data.is_empty() {
                    chunk_size_line(&mut self.out.buf, data.len());
                }
                let after: &[u8] = match (data.is_empty(), end) {
                    (true, false) => b"",
                    (true, true) => b"0\r\n\r\n",
                    (false, false) => b"\r\n",
                    (false, true) => b"\r\n0\r\n\r\n",
                };
                if end {
                    self.sending = Sending::Done;
                }
                self.out.send(&mut self.io, data, after).await
            }
            Sending::Done if data.is_empty() => Ok(()),
            Sending::Done => Err(Http1Error::Misuse("a body after the request's end")),
            Sending::Idle => Err(Http1Error::Misuse("a body before the request head")),
        }
    }

    /// Ends a chunked request body with trailer fields (dropped for other framings).
    pub async fn write_trailers(&mut self, trailers: &HeaderMap) -> Result<(), Http1Error> {
        if self.sending != Sending::Chunked {
            return self.write_body(&[], true).await;
        }
        last_chunk(&mut self.out.buf, Some(trailers));
        self.sending = Sending::Done;
        self.out.flush(&mut self.io).await
    }

    /// Whether the whole request has been written.
    pub fn request_done(&self) -> bool {
        self.sending == Sending::Done
    }

    /// Reads the next response head: an interim one (100 Continue, 103: call again for
    /// the final one), a 101 (the exchange is over: take the stream with
    /// [`Self::into_parts`]) or the final one, whose body follows. Cancel-safe.
    pub async fn read_response(&mut self, limits: &HeadLimits) -> Result<ResponseHead, Http1Error> {
        if self.receiving != Receiving::Head {
            return Err(Http1Error::Misuse("no response head expected"));
        }
        loop {
            if let Some(head) =
                parse_response(&mut self.buf, &mut self.scan, limits, self.head_request)?
            {
                if head.is_upgrade() {
                    self.receiving = Receiving::Upgraded;
                } else if !head.is_interim() {
                    self.keep_alive = head.framing.keep_alive;
                    self.body = match head.framing.body {
                        ResponseBody::Empty => BodyReader::done(),
                        ResponseBody::Length(n) => BodyReader::length(n),
                        ResponseBody::Chunked => BodyReader::chunked(self.chunked),
                        ResponseBody::UntilClose => BodyReader::until_close(),
                    };
                    self.receiving = if self.body.is_done() {
                        Receiving::Done
                    } else {
                        Receiving::Body
                    };
                }
                return Ok(head);
            }
            if read_head(&mut self.io, &mut self.buf).await? == 0 {
                return Err(Http1Error::Closed(if self.started {
                    "inside a response head"
                } else {
                    "before any response byte"
                }));
            }
            self.started = true;
        }
    }

    /// The next piece of the response body, sharing the read buffer (`None`: it
    /// ended). Cancel-safe.
    pub async fn read_body(&mut self) -> Result<Option<Bytes>, Http1Error> {
        if self.receiving != Receiving::Body {
            return Ok(None);
        }
        let piece = self.body.next(&mut self.io, &mut self.buf).await?;
        // The last piece ends the response too: the connection is reusable at once.
        if piece.is_none() || self.body.is_done() {
            self.receiving = Receiving::Done;
        }
        Ok(piece)
    }

    /// The next piece of the response body if the read buffer already holds it (it
    /// often came with the head): to go out in the same write as the response head.
    /// Never reads.
    pub fn buffered_body(&mut self) -> Result<Buffered, Http1Error> {
        if self.receiving != Receiving::Body {
            return Ok(Buffered::End);
        }
        let piece = self.body.buffered(&mut self.buf)?;
        if piece == Buffered::End || self.body.is_done() {
            self.receiving = Receiving::Done;
        }
        Ok(piece)
    }

    /// Whether the whole response (head and body) has been read.
    pub fn response_done(&self) -> bool {
        self.receiving == Receiving::Done
    }

    /// The response's trailer fields, once its chunked body is read, if it had any.
    pub fn take_trailers(&mut self) -> Option<HeaderMap> {
        self.body.take_trailers()
    }

    /// Whether any byte of a response arrived: a request on a connection that closed
    /// before that may be sent again elsewhere (nothing of it was answered).
    pub fn response_started(&self) -> bool {
        self.started || !self.buf.is_empty()
    }

    /// Whether the connection can carry another request: request and response both
    /// complete, a response framed by length or chunks that did not ask to close, and
    /// nothing sent after it.
    pub fn is_reusable(&self) -> bool {
        self.sending == Sending::Done
            && self.receiving == Receiving::Done
            && self.keep_alive
            && self.buf.is_empty()
            && !self.out.is_pending()
    }

    /// The stream, for the pool, when [`Self::is_reusable`].
    pub fn into_reusable(self) -> Option<S> {
        self.is_reusable().then_some(self.io)
    }

    /// Writes out anything pending and shuts the stream's write side.
    pub async fn shutdown(&mut self) -> Result<(), Http1Error> {
        self.out.flush(&mut self.io).await?;
        self.io.shutdown().await?;
        Ok(())
    }

    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// The stream and the bytes read past the last head or body: after a 101, the
    /// backend's first bytes of the new protocol.
    pub fn into_parts(self) -> (S, BytesMut) {
        (self.io, self.buf)
    }
}
