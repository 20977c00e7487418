//! A listener's connection layer, in front of the request path: the accept loop, the
//! connection limit, the TLS handshake with its timeout, the HTTP/1 keep-alive loop
//! over the gateway's own codec with its head and idle timers, and the HTTP/2
//! connection's stream loop.

mod flushing;
mod h1;
mod service;

use std::sync::Arc;
use std::time::Duration;

use pingora::listeners::tls::Acceptor;
use pingora::protocols::http::v2::server::{self as h2, H2Accept, H2Options};
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::Digest;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;
use tokio::task::JoinSet;

use flushing::Flushing;
pub use service::EdgeService;

use crate::lifecycle::{Shutdown, WritingGuard};
use crate::proxy::{Client, Gateway};
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
    max_uri_length: usize,
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
                max_uri_length: e.max_uri_length,
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
        let mut shutdown = Shutdown::new(shutdown);
        // HTTP/2 has its own limits (streams, reset floods) in h2's server.
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            // Boxed: HTTP/1 connections do not carry its state.
            return Box::pin(self.serve_h2(stream, &mut shutdown, &edge)).await;
        }
        self.serve_h1(stream, started, &edge, &mut shutdown).await;
        Some(())
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
        shutdown: &mut Shutdown,
        edge: &Timers,
    ) -> Option<()> {
        let digest = Arc::new(Digest {
            ssl_digest: stream.get_ssl_digest(),
            timing_digest: stream.get_timing_digest(),
            proxy_digest: stream.get_proxy_digest(),
            socket_digest: stream.get_socket_digest(),
        });
        let client = Client::of(&*stream);
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
        let mut draining = shutdown.now();
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
                () = &mut *shutdown, if !draining => {
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
                    let client = client.clone();
                    // The request's future is large: boxed, the task stays small and
                    // tokio does not copy the future each time the task changes stage.
                    streams.spawn(async move {
                        Box::pin(app.gateway.serve_h2(h2, &client)).await;
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
