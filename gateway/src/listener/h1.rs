//! An HTTP/1 connection's keep-alive loop over the gateway's codec: the head timer (the
//! whole request head within `header_timeout`, counted from the connection's start for
//! the first request, TLS handshake included, and from the first byte for later ones:
//! slowloris), the idle timer (`keepalive_timeout` from the end of the last response),
//! and the shutdown, which closes idle connections at once.

use std::time::Duration;

use pingora::protocols::Stream;
use tokio::time::{sleep_until, Instant};

use crate::deadline::Deadline;
use crate::http1::{HeadLimits, ServerConn, MAX_HEADER_SLOTS};
use crate::lifecycle::Shutdown;
use crate::proxy::Client;
use crate::telemetry::Dropped;

use super::{EdgeApp, Timers};

/// The request heads the codec reads at most (pingora's limit: larger ones are 400);
/// `max_header_size` is checked on the parsed head (431).
const MAX_HEAD: usize = 1 << 20;

/// Room for fields a route's `request_headers` adds, so that a few set or add do not
/// grow (reallocate and rehash) the request's map; the gateway's own fields are
/// written as slices, not added to it.
const RESERVE: usize = 4;

impl EdgeApp {
    /// Serves an HTTP/1 connection that started at `started` until it closes.
    pub(super) async fn serve_h1(
        &self,
        stream: Stream,
        started: Instant,
        edge: &Timers,
        shutdown: &mut Shutdown,
    ) {
        let client = Client::of(&*stream);
        let mut conn = ServerConn::new(stream);
        let limits = HeadLimits {
            max_head: MAX_HEAD,
            max_headers: MAX_HEADER_SLOTS,
            max_target: edge.max_uri_length,
            reserve: RESERVE,
        };
        // One timer for the connection's life, moved from deadline to deadline.
        let timer = sleep_until(started + edge.header_timeout);
        tokio::pin!(timer);
        let mut deadline = Deadline::new(timer);
        let mut first = true;
        loop {
            // Idle: until the next request's first byte (the first request's head
            // deadline already runs).
            if !conn.has_buffered() {
                if !first {
                    deadline.set(Instant::now() + edge.keepalive_timeout);
                }
                tokio::select! {
                    biased;
                    () = &mut *shutdown => break,
                    read = conn.read_more() => match read {
                        Ok(n) if n > 0 => {}
                        _ => break,
                    },
                    () = deadline.passed() => {
                        if first {
                            self.stats.dropped(Dropped::HeaderTimeout);
                        }
                        break;
                    }
                }
            }
            if !first {
                deadline.set(Instant::now() + edge.header_timeout);
            }
            let head = tokio::select! {
                biased;
                head = conn.read_request(&limits) => head,
                () = deadline.passed() => {
                    self.stats.dropped(Dropped::HeaderTimeout);
                    break;
                }
            };
            let head = match head {
                Ok(Some(head)) => Ok(head),
                Ok(None) => break,
                Err(e) if e.is_connection() => {
                    tracing::debug!(error = %e, "reading the request head failed");
                    break;
                }
                Err(e) => Err(e),
            };
            // Boxed for the request's time only: inline, the request's state would be
            // held by every idle connection for its whole life.
            let reusable = Box::pin(self.gateway.serve_h1(&mut conn, head, &client)).await;
            if !reusable {
                close(&mut conn, edge.keepalive_timeout).await;
                return;
            }
            // An idle connection holds no buffer.
            conn.release_buffers();
            first = false;
        }
    }
}

/// Writes out what is left and closes the connection's write side (a TLS connection
/// says `close_notify`), within `within`.
async fn close(conn: &mut ServerConn<Stream>, within: Duration) {
    if let Ok(Err(error)) = tokio::time::timeout(within, conn.shutdown()).await {
        tracing::debug!(%error, "closing the connection failed");
    }
}
