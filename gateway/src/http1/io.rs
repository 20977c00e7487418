//! Reads and writes both sessions share: reads into the connection's buffer, the body
//! reader (by framing, within a size limit, pieces sharing the read buffer), and the
//! output buffer that gathers a head, small bodies and chunk framing into one write.

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use std::pin::Pin;
use std::task::Poll;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::chunked::{ChunkedDecoder, ChunkedLimits, Decoded};
use super::Http1Error;

/// A head buffer's size when it is (re)allocated: most heads fit.
pub(crate) const HEAD_BUFFER: usize = 4096;
/// Free space a body read asks for, and what it allocates when there is less.
const BODY_SPARE: usize = 8 * 1024;
const BODY_BUFFER: usize = 16 * 1024;
/// Bytes copied into the output buffer at most; larger bodies go out from the caller's
/// slice in a write of their own (no copy).
pub(crate) const COALESCE: usize = 16 * 1024;
/// The read of an idle connection whose buffer was released: on the stack of the poll
/// that reads (not in the connection's future), so that an idle connection holds no
/// buffer until a request arrives.
const IDLE_READ: usize = 512;

/// Reads more head bytes into `buf`; 0 at the end of the stream. A buffer without
/// capacity (released while idle) is reallocated only once bytes have arrived.
pub(crate) async fn read_head<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    buf: &mut BytesMut,
) -> Result<usize, Http1Error> {
    let mut io = Answering(io);
    if buf.capacity() == 0 {
        // A buffer held across an await would live in the task of every idle
        // connection; one local to each poll takes no room in it.
        return std::future::poll_fn(|cx| {
            let mut first = [0u8; IDLE_READ];
            let mut read = ReadBuf::new(&mut first);
            match Pin::new(&mut io).poll_read(cx, &mut read) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Err(e)) => Poll::Ready(Err(e.into())),
                Poll::Ready(Ok(())) => {
                    let n = read.filled().len();
                    buf.reserve(HEAD_BUFFER.max(n));
                    buf.extend_from_slice(read.filled());
                    Poll::Ready(Ok(n))
                }
            }
        })
        .await;
    }
    if buf.capacity() - buf.len() < IDLE_READ {
        buf.reserve(HEAD_BUFFER);
    }
    Ok(io.read_buf(buf).await?)
}

/// A stream read while the peer waits for us (an idle connection, a head not complete
/// yet), which at each poll also lets the stream write out what it queued by itself: a
/// TLS stream sends the alerts it queues while reading (a renegotiation attempt's
/// `no_renegotiation` warning, a fatal error's alert) only when written to or flushed,
/// and nothing else is written before the response. (rustls queues the answer to a
/// KeyUpdate until the next application data, as RFC 8446 §4.6.3 allows.) A flush that
/// cannot finish now goes on at the next poll.
struct Answering<'a, S>(&'a mut S);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Answering<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut *self.0).poll_read(cx, buf);
        if let Poll::Ready(Err(_)) = polled {
            return polled;
        }
        if let Poll::Ready(Err(error)) = Pin::new(&mut *self.0).poll_flush(cx) {
            return Poll::Ready(Err(error));
        }
        polled
    }
}

/// Reads more body bytes into `buf`; 0 at the end of the stream.
async fn read_body<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut BytesMut,
) -> Result<usize, Http1Error> {
    if buf.capacity() - buf.len() < BODY_SPARE {
        buf.reserve(BODY_BUFFER);
    }
    Ok(io.read_buf(buf).await?)
}

/// What the read buffer holds of a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Buffered {
    /// A piece of it.
    Data(Bytes),
    /// Its end.
    End,
    /// Nothing yet: the next piece needs a read.
    Empty,
}

/// Reads one message body by its framing.
#[derive(Debug)]
pub(crate) struct BodyReader {
    kind: Kind,
    /// Body bytes handed out so far, and the most allowed.
    read: u64,
    limit: u64,
    trailers: Option<HeaderMap>,
}

#[derive(Debug)]
enum Kind {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
    Done,
}

impl BodyReader {
    pub(crate) fn done() -> Self {
        Self {
            kind: Kind::Done,
            read: 0,
            limit: u64::MAX,
            trailers: None,
        }
    }

    pub(crate) fn length(n: u64) -> Self {
        Self {
            kind: if n == 0 { Kind::Done } else { Kind::Length(n) },
            ..Self::done()
        }
    }

    pub(crate) fn chunked(limits: ChunkedLimits) -> Self {
        Self {
            kind: Kind::Chunked(ChunkedDecoder::new(limits)),
            ..Self::done()
        }
    }

    pub(crate) fn until_close() -> Self {
        Self {
            kind: Kind::UntilClose,
            ..Self::done()
        }
    }

    /// At most `limit` body bytes (more: [`Http1Error::BodyTooLarge`]).
    pub(crate) fn set_limit(&mut self, limit: u64) {
        self.limit = limit;
    }

    pub(crate) fn is_done(&self) -> bool {
        matches!(self.kind, Kind::Done)
    }

    /// Body bytes handed out so far.
    pub(crate) fn bytes_read(&self) -> u64 {
        self.read
    }

    pub(crate) fn take_trailers(&mut self) -> Option<HeaderMap> {
        self.trailers.take()
    }

    /// Fails when the declared length is already over the limit.
    pub(crate) fn check_length(&self) -> Result<(), Http1Error> {
        match self.kind {
            Kind::Length(n) if n > self.limit.saturating_sub(self.read) => {
                Err(Http1Error::BodyTooLarge { limit: self.limit })
            }
            _ => Ok(()),
        }
    }

    /// Whether the body needs bytes that are not in `buf` yet.
    pub(crate) fn needs_read(&self, buf: &BytesMut) -> bool {
        buf.is_empty() && !self.is_done()
    }

    /// The next piece of the body (`None`: it ended), from `buf` first, then `io`. A
    /// piece shares `buf`'s memory (no copy). Cancel-safe: nothing is lost when the
    /// future is dropped while it waits.
    pub(crate) async fn next<S: AsyncRead + Unpin>(
        &mut self,
        io: &mut S,
        buf: &mut BytesMut,
    ) -> Result<Option<Bytes>, Http1Error> {
        loop {
            match self.buffered(buf)? {
                Buffered::Data(data) => return Ok(Some(data)),
                Buffered::End => return Ok(None),
                Buffered::Empty => {}
            }
            if read_body(io, buf).await? == 0 {
                return match self.kind {
                    Kind::UntilClose => {
                        self.kind = Kind::Done;
                        Ok(None)
                    }
                    Kind::Chunked(_) => Err(Http1Error::Closed("inside a chunked body")),
                    _ => Err(Http1Error::Closed("inside a body")),
                };
            }
        }
    }

    /// The next piece of the body from what `buf` already holds, without reading.
    pub(crate) fn buffered(&mut self, buf: &mut BytesMut) -> Result<Buffered, Http1Error> {
        self.check_length()?;
        loop {
            match &mut self.kind {
                Kind::Done => return Ok(Buffered::End),
                _ if buf.is_empty() => return Ok(Buffered::Empty),
                Kind::Length(left) => {
                    let n = usize::try_from(*left).map_or(buf.len(), |l| l.min(buf.len()));
                    *left -= n as u64;
                    if *left == 0 {
                        self.kind = Kind::Done;
                    }
                    return self.piece(buf.split_to(n).freeze());
                }
                Kind::Chunked(decoder) => {
                    let (used, found) = decoder.decode(buf)?;
                    match found {
                        Decoded::Data(range) => {
                            buf.advance(range.start);
                            let data = buf.split_to(range.len()).freeze();
                            buf.advance(used.saturating_sub(range.end));
                            return self.piece(data);
                        }
                        Decoded::Done => {
                            buf.advance(used);
                            self.trailers = decoder.take_trailers();
                            self.kind = Kind::Done;
                            return Ok(Buffered::End);
                        }
                        // All framing: the loop sees an empty buffer next.
                        Decoded::More => buf.advance(used),
                    }
                }
                Kind::UntilClose => return self.piece(buf.split().freeze()),
            }
        }
    }

    fn piece(&mut self, data: Bytes) -> Result<Buffered, Http1Error> {
        self.read += data.len() as u64;
        if self.read > self.limit {
            return Err(Http1Error::BodyTooLarge { limit: self.limit });
        }
        Ok(Buffered::Data(data))
    }
}

/// The bytes going out: a head, small bodies, chunk framing, gathered and written at
/// once. What was written of it is kept, so a write cut short by a dropped future goes
/// on from there with the next one.
#[derive(Debug, Default)]
pub(crate) struct Output {
    pub(crate) buf: Vec<u8>,
    sent: usize,
}

impl Output {
    /// Writes out everything gathered, then flushes the stream.
    pub(crate) async fn flush<S: AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
    ) -> Result<(), Http1Error> {
        self.write_out(io).await?;
        io.flush().await?;
        Ok(())
    }

    async fn write_out<S: AsyncWrite + Unpin>(&mut self, io: &mut S) -> Result<(), Http1Error> {
        while let Some(rest) = self.buf.get(self.sent..).filter(|r| !r.is_empty()) {
            let n = io.write(rest).await?;
            if n == 0 {
                return Err(Http1Error::Io(std::io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.buf.clear();
        self.sent = 0;
        Ok(())
    }

    /// Writes what is gathered, `data` and then `after` (chunk framing): `data` is
    /// copied in when the whole fits [`COALESCE`], else written from the caller's slice.
    pub(crate) async fn send<S: AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        data: &[u8],
        after: &[u8],
    ) -> Result<(), Http1Error> {
        if self.buf.len() + data.len() + after.len() <= COALESCE {
            self.buf.extend_from_slice(data);
            self.buf.extend_from_slice(after);
            return self.flush(io).await;
        }
        self.write_out(io).await?;
        io.write_all(data).await?;
        self.buf.extend_from_slice(after);
        self.flush(io).await
    }

    /// Makes room for a head of about `head` bytes and `body` bytes of body sent with it
    /// (when they are to be copied in): one allocation per message, not one per field.
    pub(crate) fn reserve(&mut self, head: usize, body: usize) {
        let body = if body <= COALESCE { body } else { 0 };
        self.buf.reserve(head + body);
    }

    /// Whether gathered bytes wait to be written.
    pub(crate) fn is_pending(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Frees the buffer's memory when nothing is pending.
    pub(crate) fn release(&mut self) {
        if self.buf.is_empty() {
            self.buf = Vec::new();
        }
    }
}
