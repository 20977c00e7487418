//! A listener's connection layer, in front of the request path: the accept loop, the
//! connection limit, the TLS handshake with its timeout, HTTP/1 head and idle timers and
//! its keep-alive loop, and the HTTP/2 connection's stream loop.

mod flushing;
mod service;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use pingora::listeners::tls::Acceptor;
use pingora::protocols::http::v2::server::{self as h2, H2Accept, H2Options};
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::Digest;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;
use tokio::io::AsyncReadExt;
use tokio::task::JoinSet;

use flushing::Flushing;
pub use service::EdgeService;
pub use stream::TimedStream;

use crate::lifecycle::WritingGuard;
use crate::proxy::{request_line, Gateway, LineCheck};
use crate::state::SharedSnapshot;
use crate::telemetry::{ConnectionStats, Dropped};
use crate::tls;

/// One listener's connections: admitted under `max_connections`, TLS-terminated
/// within `tls_handshake_timeout` when the listener has TLS, then served by the proxy.
pub struct EdgeApp {
    gateway: Gateway,
    tls: Option<Acceptor>,
    /// HTTP/2 settings every connection shares; the listener's own limits are set from
    /// the snapshot per connection.
    h2: H2Options,
    stats: Arc<ConnectionStats>,
    snapshot: SharedSnapshot,
    /// This listener's index in the snapshot.
    index: usize,
}

impl EdgeApp {
    pub fn new(
        gateway: Gateway,
        tls: Option<Acceptor>,
        h2: H2Options,
        stats: Arc<ConnectionStats>,
        snapshot: SharedSnapshot,
        index: usize,
    ) -> Self {
        Self {
            gateway,
            tls,
            h2,
            stats,
            snapshot,
            index,
        }
    }
}

/// The listener settings a new connection takes (the snapshot's at its accept).
struct Timers {
    max_connections: u32,
    tls_handshake_timeout: Duration,
    header_timeout: Duration,
    keepalive_timeout: Duration,
    max_header_size: usize,
    h2_max_concurrent_streams: u32,
}

impl EdgeApp {
    /// Serves one accepted connection until it closes (`None` ends it early).
    pub async fn serve(self: &Arc<Self>, tcp: L4Stream, shutdown: &ShutdownWatch) -> Option<()> {
        let edge = {
            let snapshot = self.snapshot.load();
            let e = &snapshot.listeners.get(self.index)?.edge;
            Timers {
                max_connections: e.max_connections,
                tls_handshake_timeout: e.tls_handshake_timeout,
                header_timeout: e.header_timeout,
                keepalive_timeout: e.keepalive_timeout,
                max_header_size: e.max_header_size,
                h2_max_concurrent_streams: e.h2_max_concurrent_streams,
            }
        };
        // The first request head is due within `header_timeout` of this, the TLS
        // handshake included.
        let started = tokio::time::Instant::now();
        // Dropping the stream closes a connection over the limit.
        let _open = self.stats.open(edge.max_connections)?;
        let stream: Stream = match &self.tls {
            None => Box::new(tcp),
            Some(acceptor) => {
                // Boxed: its state is freed once the handshake is done, not kept for the
                // connection's life inside this future.
                let handshake = Box::pin(tls::recording_served(acceptor.tls_handshake(tcp)));
                match tokio::time::timeout(edge.tls_handshake_timeout, handshake).await {
                    Ok(Ok(tls)) => Box::new(tls),
                    Ok(Err(error)) => {
                        self.stats.dropped(Dropped::TlsHandshakeFailed);
                        tracing::debug!(%error, "TLS handshake failed");
                        return None;
                    }
                    Err(_) => {
                        self.stats.dropped(Dropped::TlsHandshakeTimeout);
                        tracing::debug!("TLS handshake timed out");
                        return None;
                    }
                }
            }
        };
        // HTTP/2 has its own limits (streams, reset floods) in pingora's h2 server.
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            // Boxed: HTTP/1 connections do not carry its state.
            return Box::pin(self.serve_h2(stream, shutdown, &edge)).await;
        }
        // HTTP/1 gets the head and idle timers, and one pingora session per request.
        let mut stream: Stream = Box::new(TimedStream::new(
            stream,
            started,
            edge.header_timeout,
            edge.keepalive_timeout,
            self.stats.clone(),
        ));
        let mut down = shutdown.clone();
        loop {
            let first = wait_for_request(&mut stream, &mut down).await?;
            let (first, line) = read_request_line(&mut stream, first).await?;
            let mut session = ServerSession::new_http1(stream);
            // Keep-alive on, without pingora's timer on every head read: the idle wait is
            // `wait_for_request`, and the stream times the head and the idle time.
            session.set_keepalive(Some(0));
            session.set_pipelined_prefix(first);
            // Boxed for the request's time only: inline, its ~5 KB would be held by every
            // idle connection for its whole life.
            let request = Box::pin(self.gateway.serve(session, shutdown, Some(line)));
            (stream, _) = request.await?.into_parts();
        }
    }

    /// Serves an HTTP/2 connection: one task per stream, GOAWAY when the server shuts
    /// down, closed after `keepalive_timeout` without a stream. Its SETTINGS carry the
    /// listener's stream limit and `max_header_size` as SETTINGS_MAX_HEADER_LIST_SIZE.
    ///
    /// A stream's task ends once its response is handed to h2, which writes it out
    /// later from this loop, so the shutdown drain also waits for connections: one with
    /// a stream open during the drain holds it until the connection closes (h2 closes
    /// it once every frame is written and the client has answered the GOAWAY's PING;
    /// exiting earlier loses the response's tail, in h2's buffers or in the kernel's,
    /// where the client's late answer to a closed socket gets it reset), and any
    /// connection holds it while it has bytes it could not write yet ([`Flushing`]).
    /// Connections idle when the drain starts, those of vanished clients included, do
    /// not hold it.
    async fn serve_h2(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
        edge: &Timers,
    ) -> Option<()> {
        let digest = Arc::new(Digest {
            ssl_digest: stream.get_ssl_digest(),
            timing_digest: stream.get_timing_digest(),
            proxy_digest: stream.get_proxy_digest(),
            socket_digest: stream.get_socket_digest(),
        });
        let mut options = self.h2.clone();
        options.max_concurrent_streams(edge.h2_max_concurrent_streams);
        options.max_header_list_size(u32::try_from(edge.max_header_size).unwrap_or(u32::MAX));
        let idle_timeout = edge.keepalive_timeout;
        let stream: Stream = Box::new(Flushing::new(stream));
        let mut conn = match h2::handshake(stream, Some(options)).await {
            Ok(conn) => conn,
            Err(error) => {
                tracing::debug!(%error, "HTTP/2 handshake failed");
                return None;
            }
        };
        let mut down = shutdown.clone();
        let mut draining = *down.borrow();
        if draining {
            conn.graceful_shutdown();
        }
        let mut streams = JoinSet::new();
        let mut sending: Option<WritingGuard> = None;
        loop {
            if draining && sending.is_none() && !streams.is_empty() {
                sending = Some(WritingGuard::new());
            }
            // `accept` drives the whole connection, so it is polled until it ends.
            let accepted = tokio::select! {
                biased;
                _ = down.wait_for(|d| *d), if !draining => {
                    conn.graceful_shutdown();
                    draining = true;
                    continue;
                }
                Some(_) = streams.join_next(), if !streams.is_empty() => continue,
                accepted = h2::HttpSession::from_h2_conn(&mut conn, digest.clone()) => accepted,
                _ = tokio::time::sleep(idle_timeout), if streams.is_empty() => return None,
            };
            match accepted {
                Ok(Some(H2Accept::Session(h2))) => {
                    let app = self.clone();
                    let shutdown = shutdown.clone();
                    // The request's future is large: boxed, the task stays small and
                    // tokio does not copy the future each time the task changes stage.
                    streams.spawn(async move {
                        let session = ServerSession::new_http2(h2);
                        Box::pin(app.gateway.serve(session, &shutdown, None)).await;
                    });
                }
                Ok(Some(H2Accept::Rejected)) => {}
                Ok(None) => break,
                Err(error) => {
                    tracing::debug!(%error, "HTTP/2 connection ended");
                    break;
                }
            }
        }
        // Streams still finishing (their logs, their backend connections) are not cut off.
        streams.detach_all();
        Some(())
    }
}

/// Bytes taken off the connection at once when a request starts: most request heads fit.
const FIRST_READ: usize = 512;

/// Waits for the next request on an HTTP/1 connection and returns its first bytes, for
/// pingora to parse on. Between requests the connection holds only its stream and this
/// small read: no request future and no 4 KiB head buffer for the whole idle time.
/// `None`: the client closed, the idle timer ended the connection, or the server is
/// shutting down.
async fn wait_for_request(stream: &mut Stream, shutdown: &mut ShutdownWatch) -> Option<BytesMut> {
    let mut first = [0u8; FIRST_READ];
    let read = tokio::select! {
        biased;
        read = stream.read(&mut first) => read,
        _ = shutdown.wait_for(|down| *down) => return None,
    };
    let n = read.ok().filter(|n| *n > 0)?;
    let mut head = BytesMut::with_capacity(HEAD_BUFFER.max(n));
    head.extend_from_slice(&first[..n]);
    Some(head)
}

/// pingora's initial head buffer (4 KiB): what its parser would have allocated.
const HEAD_BUFFER: usize = 4096;

/// pingora reads no request head past this (1 MiB less a byte): a request line that
/// long is its to refuse.
const MAX_HEAD: usize = 1 << 20;

/// Reads on until `head` holds the whole request line, and checks it on the bytes the
/// client sent: pingora's parser rewrites some invalid request lines into valid ones
/// (percent-encoding what it does not accept, which can turn `GET /a /b` into a
/// request for `/a%20/b`), and a request must be refused rather than corrected (RFC
/// 9112 §3). Usually the line is in the first read and this is one `memchr`. Empty
/// lines before it are skipped, as the parser does. `None`: the client closed or the
/// head timer fired.
async fn read_request_line(
    stream: &mut Stream,
    mut head: BytesMut,
) -> Option<(BytesMut, LineCheck)> {
    loop {
        if let Some(line) = first_line(&head) {
            let check = request_line(line);
            return Some((head, check));
        }
        if head.len() >= MAX_HEAD {
            return Some((head, Err("request line longer than pingora reads")));
        }
        // Room for a read of the size pingora's own would be (read_buf alone would
        // grow the buffer 64 bytes at a time).
        head.reserve(HEAD_BUFFER);
        if stream.read_buf(&mut head).await.ok()? == 0 {
            return None;
        }
    }
}

/// The first non-empty line of `head` without its line end (CRLF or a bare LF), once
/// it is complete.
fn first_line(head: &[u8]) -> Option<&[u8]> {
    let mut rest = head;
    loop {
        let end = memchr::memchr(b'\n', rest)?;
        let line = &rest[..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !line.is_empty() {
            return Some(line);
        }
        rest = &rest[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::first_line;

    #[test]
    fn the_request_line_is_the_first_non_empty_line() {
        assert_eq!(
            first_line(b"GET / HTTP/1.1\r\nHost: a\r\n"),
            Some(&b"GET / HTTP/1.1"[..])
        );
        assert_eq!(
            first_line(b"GET / HTTP/1.1\n"),
            Some(&b"GET / HTTP/1.1"[..])
        );
        assert_eq!(
            first_line(b"\r\n\nGET / HTTP/1.1\r\n"),
            Some(&b"GET / HTTP/1.1"[..])
        );
        assert_eq!(
            first_line(b"GET / HTTP/1.1\r\r\n"),
            Some(&b"GET / HTTP/1.1\r"[..])
        );
        assert_eq!(first_line(b"GET / HTTP/1.1\r"), None);
        assert_eq!(first_line(b"\r\n"), None);
        assert_eq!(first_line(b""), None);
    }
}
