//! A listener's connection layer, in front of pingora's HTTP proxy: the connection
//! limit, the TLS handshake with its timeout, and HTTP/1 head and idle timers.

mod stream;

use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::listeners::tls::Acceptor;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{Stream, ALPN};
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;

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

#[async_trait]
impl ServerApp for EdgeApp {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
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
            None => stream,
            Some(acceptor) => {
                // pingora hands a TCP listener's connections over as boxed L4 streams.
                let Ok(tcp) = stream.into_any().downcast::<L4Stream>() else {
                    tracing::error!("a TLS listener got a connection that is not TCP");
                    return None;
                };
                let handshake = acceptor.tls_handshake(*tcp);
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
        // h2 server; HTTP/1 gets the head and idle timers.
        let stream: Stream = if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            stream
        } else {
            Box::new(TimedStream::new(
                stream,
                edge.header_timeout,
                edge.keepalive_timeout,
                self.stats.clone(),
            ))
        };
        // pingora serves every request of the connection, then hands nothing back.
        let mut next = Some(stream);
        while let Some(stream) = next {
            next = self.proxy.process_new(stream, shutdown).await;
        }
        None
    }

    async fn cleanup(&self) {
        self.proxy.cleanup().await;
    }
}
