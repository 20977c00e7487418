//! An HTTP/2 connection, driven on h2's server connection directly: its streams served
//! inside the connection's own task (no task per stream), GOAWAY when the server shuts
//! down, the connection closed after `keepalive_timeout` without a stream, and a
//! connection whose client keeps sending malformed requests sent away.

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use pingora::protocols::Stream;
use tokio::time::{sleep, Instant};

use crate::lifecycle::{Shutdown, WritingGuard};
use crate::proxy::Client;

use super::flushing::Flushing;
use super::{EdgeApp, Timers};

/// Requests refused as malformed on one connection before it gets GOAWAY
/// (`ENHANCE_YOUR_CALM`): each is cheap to send and costs the gateway its checks and
/// an answer. (pingora-core's HTTP/2 server meant to bound its own refusals so, but its
/// count restarted with each stream.) h2 bounds the streams it resets itself
/// (`max_local_error_reset_streams`, set in `app.rs`).
const MAX_REFUSED_STREAMS: u32 = 32;

impl EdgeApp {
    /// Serves an HTTP/2 connection until it closes. Its SETTINGS carry the listener's
    /// stream limit and `max_header_size` as SETTINGS_MAX_HEADER_LIST_SIZE.
    ///
    /// A stream's request ends once its response is handed to h2, which writes it out
    /// from this loop, so the shutdown drain also waits for connections: one with a
    /// stream open during the drain holds it until the connection closes (h2 closes it
    /// once every frame is written and the client has answered the GOAWAY's PING;
    /// exiting earlier loses the response's tail, in h2's buffers or in the kernel's,
    /// where the client's late answer to a closed socket gets it reset), and any
    /// connection holds it while it has bytes it could not write yet ([`Flushing`]).
    /// Connections idle when the drain starts, those of vanished clients included, do
    /// not hold it.
    pub(super) async fn serve_h2(&self, stream: Stream, shutdown: &mut Shutdown, edge: &Timers) {
        let client = Client::of(&*stream);
        let mut options = self.h2.clone();
        options.max_concurrent_streams(edge.h2_max_concurrent_streams);
        options.max_header_list_size(u32::try_from(edge.max_header_size).unwrap_or(u32::MAX));
        let idle = edge.keepalive_timeout;
        let handshake = options.handshake::<_, Bytes>(Flushing::new(stream));
        let mut conn = match tokio::time::timeout(idle, handshake).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(error)) => {
                tracing::debug!(%error, "HTTP/2 handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!("HTTP/2 handshake timed out");
                return;
            }
        };
        let mut draining = shutdown.now();
        if draining {
            conn.graceful_shutdown();
        }
        let mut streams = FuturesUnordered::new();
        let mut refused = 0;
        let mut sending: Option<WritingGuard> = None;
        // Moved on each time the connection becomes idle.
        let timer = sleep(idle);
        tokio::pin!(timer);
        let mut idle_since_reset = true;
        loop {
            if draining && sending.is_none() && !streams.is_empty() {
                sending = Some(WritingGuard::new());
            }
            if streams.is_empty() && !idle_since_reset {
                timer.as_mut().reset(Instant::now() + idle);
                idle_since_reset = true;
            }
            tokio::select! {
                biased;
                () = &mut *shutdown, if !draining => {
                    conn.graceful_shutdown();
                    draining = true;
                }
                Some(was_refused) = streams.next(), if !streams.is_empty() => {
                    if was_refused {
                        refused += 1;
                        if refused == MAX_REFUSED_STREAMS {
                            tracing::debug!("too many malformed requests on one HTTP/2 connection: GOAWAY");
                            conn.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
                        }
                    }
                }
                // `accept` drives the whole connection: polled until it ends.
                accepted = conn.accept() => match accepted {
                    Some(Ok((request, respond))) => {
                        idle_since_reset = false;
                        streams.push(self.gateway.serve_h2(request, respond, &client));
                    }
                    Some(Err(error)) => {
                        tracing::debug!(%error, "HTTP/2 connection ended");
                        break;
                    }
                    None => break,
                },
                () = &mut timer, if streams.is_empty() => break,
            }
        }
        // Requests still finishing (their logs, their backend connections) are not cut
        // off; the connection is gone, so their writes fail at once.
        drop(conn);
        while streams.next().await.is_some() {}
    }
}
