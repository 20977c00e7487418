//! A listener's connection layer, in front of pingora's HTTP proxy: the accept loop, the
//! connection limit, the TLS handshake with its timeout, HTTP/1 head and idle timers, and
//! the HTTP/1 keep-alive loop.

mod service;
mod stream;

use std::sync::Arc;

use bytes::BytesMut;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::listeners::tls::Acceptor;
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{Stream, ALPN};
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use tokio::io::AsyncReadExt;

pub use service::EdgeService;
pub use stream::TimedStream;

use crate::proxy::Gateway;
use crate::state::SharedSnapshot;
use crate::telemetry::{ConnectionStats, Dropped};

/// One listener's connections: admitted under `max_connections`, TLS-terminated
/// within `tls_handshake_timeout` when the listener has TLS, then served by the proxy.
pub struct EdgeApp {
    proxy: Arc<HttpProxy<Gateway>>,
    tls: Option<Acceptor>,
    stats: Arc<ConnectionStats>,
    snapshot: SharedSnapshot,
    /// This listener's index in the snapshot.
    index: usize,
}

impl EdgeApp {
    pub fn new(
        proxy: HttpProxy<Gateway>,
        tls: Option<Acceptor>,
        stats: Arc<ConnectionStats>,
        snapshot: SharedSnapshot,
        index: usize,
    ) -> Self {
        Self {
            proxy: Arc::new(proxy),
            tls,
            stats,
            snapshot,
            index,
        }
    }
}

/// The listener settings a new connection takes (the snapshot's at its accept).
struct Timers {
    max_connections: u32,
    tls_handshake_timeout: std::time::Duration,
    header_timeout: std::time::Duration,
    keepalive_timeout: std::time::Duration,
}

impl EdgeApp {
    /// Ends the keep-alive waits inside pingora (the service stopped accepting).
    pub async fn cleanup(&self) {
        self.proxy.cleanup().await;
    }

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
            }
        };
        // Dropping the stream closes a connection over the limit.
        let _open = self.stats.open(edge.max_connections)?;
        let stream: Stream = match &self.tls {
            None => Box::new(tcp),
            Some(acceptor) => {
                // Boxed: its state is freed once the handshake is done, not kept for the
                // connection's life inside this future.
                let handshake = Box::pin(acceptor.tls_handshake(tcp));
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
        // HTTP/2 has its own limits (streams, idle timeout, reset floods) in pingora's
        // h2 server, which serves the whole connection.
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            let mut next = Some(stream);
            while let Some(stream) = next {
                next = self.proxy.process_new(stream, shutdown).await;
            }
            return Some(());
        }
        // HTTP/1 gets the head and idle timers, and one pingora session per request.
        let mut stream: Stream = Box::new(TimedStream::new(
            stream,
            edge.header_timeout,
            edge.keepalive_timeout,
            self.stats.clone(),
        ));
        let mut settings = None;
        let mut down = shutdown.clone();
        loop {
            let first = wait_for_request(&mut stream, &mut down).await?;
            let mut session = ServerSession::new_http1(stream);
            match settings {
                Some(settings) => HttpPersistentSettings::apply_to_session(settings, &mut session),
                // pingora's default for a new connection; request_filter raises it to
                // the listener's keepalive_timeout.
                None => session.set_keepalive(Some(PINGORA_KEEPALIVE_SECS)),
            }
            if *shutdown.borrow() {
                session.set_keepalive(None);
            }
            session.set_pipelined_prefix(first);
            (stream, settings) = self
                .proxy
                .process_new_http(session, shutdown)
                .await?
                .consume();
        }
    }
}

/// How long pingora keeps an idle HTTP/1 client connection unless told otherwise.
pub(crate) const PINGORA_KEEPALIVE_SECS: u64 = 60;

/// Bytes taken off the connection at once when a request starts: most request heads fit.
const FIRST_READ: usize = 512;

/// Waits for the next request on an HTTP/1 connection and returns its first bytes, for
/// pingora to parse on. Between requests the connection holds only its stream and this
/// small read: pingora's own loop would keep its per-request state (a ~13 KB future and a
/// 4 KiB head buffer) for the whole idle time. `None`: the client closed, the idle timer
/// ended the connection, or the server is shutting down.
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
