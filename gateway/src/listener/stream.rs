//! A client connection with HTTP/1 timers pingora lacks: the whole request head within
//! `header_timeout` (slowloris), and idle keep-alive connections closed after
//! `keepalive_timeout`.
//!
//! The stream follows the request cycle from the bytes it carries: a request head starts
//! with the first byte read while idle and ends at its blank line; the response starts
//! with the first non-informational status line written (a `100 Continue` or `101
//! Switching Protocols` leaves the request in its body phase, so uploads and upgraded
//! connections are never timed here). Request bodies and responses keep pingora's own
//! read and write timeouts. Small writes are held until pingora flushes.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::telemetry::{ConnectionStats, Dropped};

/// Where the connection is in its request cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading a request head; the deadline is `header_timeout` after its first byte
    /// (after the connection's start, TLS handshake included, for the first request).
    Head,
    /// Past the head: the body and the response; no timer here.
    Body,
    /// The response started; until the next request's first byte the connection is
    /// idle once nothing has been written for `keepalive_timeout`.
    Idle,
}

/// An HTTP/1 client connection with head and idle timers.
#[derive(Debug)]
pub struct TimedStream {
    inner: Stream,
    phase: Phase,
    /// Progress through a blank line: 1 after `\n`, 2 after `\n\r`.
    blank: u8,
    timer: Pin<Box<Sleep>>,
    armed: bool,
    last_write: Instant,
    header_timeout: Duration,
    keepalive_timeout: Duration,
    stats: Arc<ConnectionStats>,
    /// Response bytes not yet written: pingora writes a head and a body separately and
    /// then flushes, so they leave in one write (one TLS record), as through the socket
    /// buffer pingora's own listener gives every connection.
    out: Vec<u8>,
    /// How much of `out` is written.
    written: usize,
}

/// Writes smaller than this are buffered until a flush.
const WRITE_BUFFER: usize = 4096;

impl TimedStream {
    /// Wraps a new connection that started (was accepted) at `started`: its first request
    /// head is due within `header_timeout` of that, whatever the TLS handshake took.
    pub fn new(
        inner: Stream,
        started: Instant,
        header_timeout: Duration,
        keepalive_timeout: Duration,
        stats: Arc<ConnectionStats>,
    ) -> Self {
        Self {
            inner,
            phase: Phase::Head,
            blank: 0,
            timer: Box::pin(tokio::time::sleep_until(started + header_timeout)),
            armed: true,
            last_write: Instant::now(),
            header_timeout,
            keepalive_timeout,
            stats,
            out: Vec::new(),
            written: 0,
        }
    }

    fn arm(&mut self, deadline: Instant) {
        self.timer.as_mut().reset(deadline);
        self.armed = true;
    }

    /// Polls the timer; `Ready` means the connection is to be closed.
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.phase == Phase::Idle && !self.armed {
            let deadline = self.last_write + self.keepalive_timeout;
            self.arm(deadline);
        }
        if !self.armed || self.timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        if self.phase == Phase::Idle {
            // Still writing (a long response): idle only after the last write.
            let deadline = self.last_write + self.keepalive_timeout;
            if deadline > Instant::now() {
                self.arm(deadline);
                return match self.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(()),
                    Poll::Pending => Poll::Pending,
                };
            }
        }
        Poll::Ready(())
    }

    fn wrote(&mut self, buf: &[u8]) {
        match self.phase {
            Phase::Body if !is_informational(buf) => {
                self.phase = Phase::Idle;
                self.armed = false;
                self.last_write = Instant::now();
            }
            Phase::Idle => self.last_write = Instant::now(),
            _ => {}
        }
    }
}

/// Scans newly read head bytes for the blank line that ends a request head (CRLF or
/// bare LF line ends, as the parser accepts both); `state` carries a line end split
/// across reads: 1 after `\n`, 2 after `\n\r`. Only line ends are visited (memchr):
/// a browser's head of several hundred bytes has a dozen.
fn ends_head(state: &mut u8, bytes: &[u8]) -> bool {
    for at in memchr::memchr_iter(b'\n', bytes) {
        let blank = match at {
            0 => *state != 0,
            1 => bytes[0] == b'\n' || (bytes[0] == b'\r' && *state == 1),
            _ => bytes[at - 1] == b'\n' || bytes[at - 2..at] == *b"\n\r",
        };
        if blank {
            return true;
        }
    }
    *state = match bytes {
        [] => *state,
        [.., b'\n'] => 1,
        [.., b'\n', b'\r'] => 2,
        [b'\r'] if *state == 1 => 2,
        _ => 0,
    };
    false
}

/// Whether `buf` starts a 1xx response head.
fn is_informational(buf: &[u8]) -> bool {
    buf.len() > 9 && buf.starts_with(b"HTTP/1.") && buf[9] == b'1'
}

impl AsyncRead for TimedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if let Poll::Ready(Ok(())) = &polled {
            if read > 0 {
                if this.phase == Phase::Idle {
                    this.phase = Phase::Head;
                    this.blank = 0;
                    let deadline = Instant::now() + this.header_timeout;
                    this.arm(deadline);
                }
                if this.phase == Phase::Head && ends_head(&mut this.blank, &buf.filled()[before..])
                {
                    this.phase = Phase::Body;
                    this.armed = false;
                }
            }
            return polled;
        }
        if polled.is_pending() && this.poll_timer(cx).is_ready() {
            if this.phase == Phase::Idle {
                // An idle keep-alive connection: end it as if the client closed it.
                return Poll::Ready(Ok(()));
            }
            this.stats.dropped(Dropped::HeaderTimeout);
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request head not received within header_timeout",
            )));
        }
        polled
    }
}

impl AsyncWrite for TimedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.out.len() + buf.len() > WRITE_BUFFER {
            ready!(this.poll_write_out(cx))?;
        }
        this.wrote(buf);
        if buf.len() >= WRITE_BUFFER {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        if this.out.capacity() == 0 {
            // One allocation per response: a head then a body would otherwise grow it twice.
            this.out.reserve_exact(WRITE_BUFFER);
        }
        this.out.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_out(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_out(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl TimedStream {
    /// Writes out the buffered bytes; the buffer's memory is released once empty (an idle
    /// connection holds none).
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.out.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.out = Vec::new();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

#[async_trait]
impl Shutdown for TimedStream {
    async fn shutdown(&mut self) {
        if let Err(error) = tokio::io::AsyncWriteExt::flush(self).await {
            tracing::debug!(%error, "cannot write out the last response bytes");
        }
        self.inner.shutdown().await
    }
}

impl UniqueID for TimedStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for TimedStream {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for TimedStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for TimedStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for TimedStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for TimedStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_ends_at_the_blank_line_even_across_reads() {
        let mut state = 0;
        assert!(ends_head(&mut state, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        let mut state = 0;
        assert!(!ends_head(&mut state, b"GET / HTTP/1.1\r\nHost: a\r\n\r"));
        assert!(ends_head(&mut state, b"\n"));
        let mut state = 0;
        assert!(!ends_head(&mut state, b"GET / HTTP/1.1\r\nHost: a\r\n"));
        assert!(!ends_head(&mut state, b"X-B: \r\r\n"));
        assert!(ends_head(&mut state, b"\n"), "bare LF line ends");
    }

    /// The scan one byte at a time, as a reference.
    fn ends_head_bytewise(state: &mut u8, bytes: &[u8]) -> bool {
        for &b in bytes {
            *state = match (*state, b) {
                (1 | 2, b'\n') => return true,
                (_, b'\n') => 1,
                (1, b'\r') => 2,
                _ => 0,
            };
        }
        false
    }

    #[test]
    fn head_scan_agrees_with_a_bytewise_scan_over_every_split() {
        let heads: [&[u8]; 6] = [
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody",
            b"GET / HTTP/1.1\nHost: a\n\n",
            b"GET / HTTP/1.1\r\nX: \r\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\n\r\r\nY: b\r\n\r\n",
            b"\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n",
        ];
        for head in heads {
            for split in 0..=head.len() {
                for second in split..=head.len() {
                    let parts = [&head[..split], &head[split..second], &head[second..]];
                    let (mut fast, mut slow) = (0, 0);
                    for part in parts {
                        let (f, s) = (
                            ends_head(&mut fast, part),
                            ends_head_bytewise(&mut slow, part),
                        );
                        assert_eq!(f, s, "{head:?} split at {split}, {second}");
                        if f {
                            break;
                        }
                        assert_eq!(fast, slow, "{head:?} split at {split}, {second}");
                    }
                }
            }
        }
    }

    #[test]
    fn informational_heads_are_recognised() {
        assert!(is_informational(b"HTTP/1.1 100 Continue\r\n"));
        assert!(is_informational(b"HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(!is_informational(b"HTTP/1.1 200 OK\r\n"));
        assert!(!is_informational(b"{\"message\":\"Hello\"}"));
        assert!(!is_informational(b"HTTP/1.1 "));
    }
}
