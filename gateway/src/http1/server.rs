//! The client side of a connection: one HTTP/1 session over the stream for all its
//! requests. It reads each request head into the connection's reused buffer (pipelined
//! bytes stay there for the next), streams the request body by its framing within a
//! limit (sending `100 Continue` when the client waits for it), writes the response head
//! with the body's first bytes, frames the body (length, chunked, or until close for an
//! HTTP/1.0 client), and says whether the connection can carry another request. An
//! upgrade hands back the stream and the bytes already read.

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::{HeaderMap, StatusCode, Version};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::chunked::{chunk_size_line, last_chunk, ChunkedLimits};
use super::framing::RequestBody;
use super::head::{HeadLimits, HeadScan};
use super::io::{read_head, BodyReader, Buffered, Output};
use super::request::{parse_request, RequestHead};
use super::write::{self, Extra, OutBody, Skip};
use super::Http1Error;

/// A response to write.
#[derive(Clone, Copy)]
pub struct OutResponse<'a> {
    pub status: StatusCode,
    /// The backend's reason phrase, if it is to be kept (else the standard one).
    pub reason: Option<&'a [u8]>,
    /// Fields written as they are, except Content-Length, Transfer-Encoding and
    /// Connection, which the session writes itself from `body` and the connection's
    /// state (a 101 keeps its own Connection). `Date` is added when missing.
    pub headers: &'a HeaderMap,
    /// Fields of `headers` left out as well (hop-by-hop ones): [`write::keep_all`] for
    /// none.
    pub skip: Skip<'a>,
    /// More fields, as slices: a request id, HSTS, the gateway's own headers.
    pub extra: Extra<'a>,
    pub body: OutBody,
}

/// Where the response is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writing {
    /// No final head yet (interim ones may have gone).
    Head,
    /// A response without body bytes (HEAD, 204, 304).
    NoBody,
    /// This many body bytes still due.
    Length(u64),
    Chunked,
    /// An HTTP/1.0 client's body of unknown length, ended by closing.
    UntilClose,
    Done,
    /// A 101 went out: the stream is the new protocol's.
    Upgraded,
}

/// One client connection's HTTP/1 session.
#[derive(Debug)]
pub struct ServerConn<S> {
    io: S,
    /// Read bytes not consumed yet: the rest of a head, body bytes, pipelined requests.
    buf: BytesMut,
    scan: HeadScan,
    out: Output,
    chunked: ChunkedLimits,
    body: BodyReader,
    version: Version,
    head_request: bool,
    keep_alive: bool,
    expect_continue: bool,
    continue_sent: bool,
    writing: Writing,
    close: bool,
    body_bytes_sent: u64,
}

impl<S: AsyncRead + AsyncWrite + Unpin> ServerConn<S> {
    pub fn new(io: S) -> Self {
        Self::with_buffer(io, BytesMut::new())
    }

    /// A session whose first bytes were already read into `buf`.
    pub fn with_buffer(io: S, buf: BytesMut) -> Self {
        Self {
            io,
            buf,
            scan: HeadScan::default(),
            out: Output::default(),
            chunked: ChunkedLimits::default(),
            body: BodyReader::done(),
            version: Version::HTTP_11,
            head_request: false,
            keep_alive: true,
            expect_continue: false,
            continue_sent: false,
            writing: Writing::Done,
            close: false,
            body_bytes_sent: 0,
        }
    }

    /// Whether bytes of a next request are already buffered (pipelined, or read by
    /// [`Self::read_more`]).
    pub fn has_buffered(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Reads more bytes of the next request into the buffer (0: the client closed), so
    /// that a caller can time the wait for a request apart from its head. Cancel-safe.
    pub async fn read_more(&mut self) -> Result<usize, Http1Error> {
        read_head(&mut self.io, &mut self.buf).await
    }

    /// Limits for chunked request bodies from the next request on.
    pub fn set_chunked_limits(&mut self, limits: ChunkedLimits) {
        self.chunked = limits;
    }

    /// Reads the next request's head (after the previous request is done: its body
    /// read, its response written). `Ok(None)`: the client closed the connection
    /// between requests. Cancel-safe: bytes read stay in the buffer for the next call.
    /// A head that breaks the rules can be answered (the connection's last response).
    pub async fn read_request(
        &mut self,
        limits: &HeadLimits,
    ) -> Result<Option<RequestHead>, Http1Error> {
        if self.writing != Writing::Done || !self.body.is_done() {
            return Err(Http1Error::Misuse("the previous request is not finished"));
        }
        loop {
            match parse_request(&mut self.buf, &mut self.scan, limits) {
                Ok(Some(head)) => {
                    self.start(&head);
                    return Ok(Some(head));
                }
                Ok(None) => {}
                Err(e) => {
                    self.start_refusal();
                    return Err(e);
                }
            }
            if read_head(&mut self.io, &mut self.buf).await? == 0 {
                if self.scan.start().is_none() {
                    return Ok(None);
                }
                return Err(Http1Error::Closed("inside a request head"));
            }
        }
    }

    fn start(&mut self, head: &RequestHead) {
        let framing = head.framing;
        self.body = match framing.body {
            RequestBody::Empty => BodyReader::done(),
            RequestBody::Length(n) => BodyReader::length(n),
            RequestBody::Chunked => BodyReader::chunked(self.chunked),
        };
        self.version = head.version;
        self.head_request = head.is_head();
        self.keep_alive = framing.keep_alive;
        self.expect_continue = framing.expect_continue;
        self.continue_sent = false;
        self.writing = Writing::Head;
        self.close = false;
        self.body_bytes_sent = 0;
    }

    /// After a head that could not be parsed: its answer (the refusal) may be written,
    /// and it is the connection's last.
    fn start_refusal(&mut self) {
        self.body = BodyReader::done();
        self.version = Version::HTTP_11;
        self.head_request = false;
        self.keep_alive = false;
        self.expect_continue = false;
        self.continue_sent = false;
        self.writing = Writing::Head;
        self.close = true;
        self.body_bytes_sent = 0;
    }

    /// At most `limit` bytes of this request's body: past it, reading fails with
    /// [`Http1Error::BodyTooLarge`] (a Content-Length over it fails at the first read).
    pub fn set_max_body(&mut self, limit: u64) {
        self.body.set_limit(limit);
    }

    /// The next piece of the request body, sharing the read buffer (`None`: it ended).
    /// A client that sent `Expect: 100-continue` gets its `100 Continue` first, unless
    /// a response has started. Cancel-safe.
    pub async fn read_body(&mut self) -> Result<Option<Bytes>, Http1Error> {
        if self.out.is_pending() {
            self.out.flush(&mut self.io).await?;
        }
        // A body over the limit is refused before the client is asked for it.
        self.body.check_length()?;
        if self.expect_continue
            && !self.continue_sent
            && self.writing == Writing::Head
            && self.body.needs_read(&self.buf)
        {
            self.continue_sent = true;
            self.out
                .buf
                .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            self.out.flush(&mut self.io).await?;
        }
        self.body.next(&mut self.io, &mut self.buf).await
    }

    /// The next piece of the request body if the read buffer already holds it (it
    /// often came with the head): to go up in the same write as the request head.
    /// Never reads, never sends `100 Continue`.
    pub fn buffered_body(&mut self) -> Result<Buffered, Http1Error> {
        self.body.buffered(&mut self.buf)
    }

    /// Whether the request body has been read to its end.
    pub fn body_done(&self) -> bool {
        self.body.is_done()
    }

    /// Request body bytes read so far.
    pub fn body_bytes_read(&self) -> u64 {
        self.body.bytes_read()
    }

    /// The request's trailer fields, once its chunked body is read, if it had any.
    pub fn take_trailers(&mut self) -> Option<HeaderMap> {
        self.body.take_trailers()
    }

    /// Reads and drops the rest of the request body, `max` bytes at most, so the
    /// connection can carry the next request: true when the body ended within them.
    pub async fn drain_body(&mut self, max: u64) -> Result<bool, Http1Error> {
        self.body.set_limit(u64::MAX);
        let start = self.body.bytes_read();
        while let Some(_piece) = self.body.next(&mut self.io, &mut self.buf).await? {
            if self.body.bytes_read() - start > max {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Writes an interim response (1xx but 101): passed on from a backend. An HTTP/1.0
    /// client gets none (RFC 9110 §15.2), and `100 Continue` goes once, only to a client
    /// that asked for it.
    pub async fn write_interim(
        &mut self,
        status: StatusCode,
        headers: &HeaderMap,
        extra: Extra<'_>,
    ) -> Result<(), Http1Error> {
        if !status.is_informational() || status == StatusCode::SWITCHING_PROTOCOLS {
            return Err(Http1Error::Misuse("not an interim status"));
        }
        if self.writing != Writing::Head {
            return Err(Http1Error::Misuse(
                "an interim response after the final one",
            ));
        }
        if self.version == Version::HTTP_10 {
            return Ok(());
        }
        if status == StatusCode::CONTINUE {
            if self.continue_sent || !self.expect_continue {
                return Ok(());
            }
            self.continue_sent = true;
        }
        let out = &mut self.out.buf;
        write::status_line(out, status, None);
        write::fields(out, headers, is_framing);
        write::extra_fields(out, extra);
        out.extend_from_slice(b"\r\n");
        self.out.flush(&mut self.io).await
    }

    /// Writes the response head, then `body` (its first bytes, or all of it with `end`)
    /// in the same write when small. A 101 switches the connection over: take it with
    /// [`Self::into_parts`].
    pub async fn write_head(
        &mut self,
        resp: OutResponse<'_>,
        body: &[u8],
        end: bool,
    ) -> Result<(), Http1Error> {
        if self.writing != Writing::Head {
            return Err(Http1Error::Misuse("a second response head"));
        }
        let status = resp.status;
        if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
            return Err(Http1Error::Misuse("an interim response as the final one"));
        }
        let reason = resp.reason.map_or(0, <[u8]>::len);
        self.out.reserve(
            write::head_size(resp.headers, resp.extra) + reason,
            body.len(),
        );
        let out = &mut self.out.buf;
        write::status_line(out, status, resp.reason);
        if status == StatusCode::SWITCHING_PROTOCOLS {
            write::fields(out, resp.headers, resp.skip);
            write::extra_fields(out, resp.extra);
            out.extend_from_slice(b"\r\n");
            self.writing = Writing::Upgraded;
            return self.out.flush(&mut self.io).await;
        }
        write::fields(out, resp.headers, |n| is_framing(n) || (resp.skip)(n));
        write::extra_fields(out, resp.extra);
        if !resp.headers.contains_key(DATE) {
            write::date(out);
        }
        let bodyless = self.head_request
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        self.writing = match (bodyless, resp.body) {
            // The length the client would have got: HEAD and 304 say it, 204 may not.
            (true, OutBody::Length(n)) if status != StatusCode::NO_CONTENT => {
                write::content_length(out, n);
                Writing::NoBody
            }
            (true, _) => Writing::NoBody,
            (false, OutBody::None) => {
                write::content_length(out, 0);
                Writing::Length(0)
            }
            (false, OutBody::Length(n)) => {
                write::content_length(out, n);
                Writing::Length(n)
            }
            (false, OutBody::Unknown) if self.version == Version::HTTP_11 => {
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
                Writing::Chunked
            }
            (false, OutBody::Unknown) => {
                self.close = true;
                Writing::UntilClose
            }
        };
        if self.close || !self.keep_alive {
            self.close = true;
            out.extend_from_slice(b"Connection: close\r\n");
        } else if self.version == Version::HTTP_10 {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
        self.write_body(body, end).await
    }

    /// Writes body bytes; `end`: they are the last. A HEAD, 204 or 304 response drops
    /// them. More bytes than the Content-Length, or fewer at the end, fail (and the
    /// connection is not reused: the client cannot tell where the response ends).
    pub async fn write_body(&mut self, data: &[u8], end: bool) -> Result<(), Http1Error> {
        let len = data.len() as u64;
        match self.writing {
            Writing::NoBody => {
                if end {
                    self.writing = Writing::Done;
                }
                self.out.flush(&mut self.io).await
            }
            Writing::Length(left) => {
                if len > left {
                    self.close = true;
                    return Err(Http1Error::Misuse("more body than its Content-Length"));
                }
                let left = left - len;
                self.writing = if end && left == 0 {
                    Writing::Done
                } else {
                    Writing::Length(left)
                };
                self.body_bytes_sent += len;
                self.out.send(&mut self.io, data, b"").await?;
                if end && left != 0 {
                    self.close = true;
                    return Err(Http1Error::Misuse("body shorter than its Content-Length"));
                }
                Ok(())
            }
            Writing::Chunked => {
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
                    self.writing = Writing::Done;
                }
                self.body_bytes_sent += len;
                self.out.send(&mut self.io, data, after).await
            }
            Writing::UntilClose => {
                if end {
                    self.writing = Writing::Done;
                }
                self.body_bytes_sent += len;
                self.out.send(&mut self.io, data, b"").await
            }
            Writing::Head => Err(Http1Error::Misuse("a body before the response head")),
            Writing::Done if data.is_empty() => Ok(()),
            Writing::Done => Err(Http1Error::Misuse("a body after the response's end")),
            Writing::Upgraded => Err(Http1Error::Misuse("a body on an upgraded connection")),
        }
    }

    /// Ends a chunked response with trailer fields (other framings have no place for
    /// them: they are dropped).
    pub async fn write_trailers(&mut self, trailers: &HeaderMap) -> Result<(), Http1Error> {
        if self.writing != Writing::Chunked {
            return self.write_body(&[], true).await;
        }
        last_chunk(&mut self.out.buf, Some(trailers));
        self.writing = Writing::Done;
        self.out.flush(&mut self.io).await
    }

    /// This response is the connection's last: `Connection: close` if its head is still
    /// to be written, and no reuse.
    pub fn set_close(&mut self) {
        self.close = true;
    }

    /// Whether the final response head has gone out (an error can no longer be answered).
    pub fn response_started(&self) -> bool {
        self.writing != Writing::Head
    }

    /// Response body bytes written (framing not counted): the access log's bytes.
    pub fn body_bytes_sent(&self) -> u64 {
        self.body_bytes_sent
    }

    /// Whether the connection can carry another request: the response is complete and
    /// the request body read, and neither side asked to close.
    pub fn is_reusable(&self) -> bool {
        self.writing == Writing::Done
            && self.body.is_done()
            && !self.close
            && self.keep_alive
            && !self.out.is_pending()
    }

    /// Frees the buffers' memory if they hold nothing (an idle connection then holds no
    /// buffer until its next request's first bytes arrive).
    pub fn release_buffers(&mut self) {
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
        self.out.release();
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

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.io
    }

    /// After a 101: the stream and the bytes read past the request (the client's first
    /// bytes of the new protocol), for a caller that keeps the session.
    pub fn upgraded(&mut self) -> Option<(&mut S, BytesMut)> {
        if self.writing != Writing::Upgraded {
            return None;
        }
        Some((&mut self.io, self.buf.split()))
    }

    /// The stream and the bytes read past the last head or body: after a 101, the
    /// client's first bytes of the new protocol.
    pub fn into_parts(self) -> (S, BytesMut) {
        (self.io, self.buf)
    }
}

/// The fields the session writes itself.
fn is_framing(name: &http::header::HeaderName) -> bool {
    name == CONTENT_LENGTH || name == TRANSFER_ENCODING || name == CONNECTION
}
