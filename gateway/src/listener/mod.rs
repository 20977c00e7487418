//! A listener's connection layer, in front of the request path: the accept loop, the
//! connection limit, the TLS handshake with its timeout, the HTTP/1 keep-alive loop
//! over the gateway's own codec with its head and idle timers, and the HTTP/2
//! connection on h2's server, its streams served in the connection's task.

mod flushing;
mod h1;
mod h2;
pub mod proxy_protocol;
mod service;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pingora::listeners::tls::Acceptor;
use pingora::protocols::http::v2::server::H2Options;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;

pub use service::EdgeService;

use crate::lifecycle::Shutdown;
use crate::proxy::Gateway;
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
    /// Serves one accepted connection from `peer` until it closes (`None` ends it early).
    pub async fn serve(
        &self,
        mut tcp: L4Stream,
        peer: SocketAddr,
        shutdown: &ShutdownWatch,
    ) -> Option<()> {
        let (edge, proxy_header) = {
            let snapshot = self.snapshot.load();
            let e = &snapshot.listeners.get(self.index)?.edge;
            // Without a PROXY header to read, the peer is the client: admitted or not now.
            let proxy_header = match &e.proxy_protocol {
                None if e.access.admits(peer.ip()) => None,
                None => {
                    self.stats.dropped(Dropped::Denied);
                    tracing::debug!(%peer, "client address denied");
                    return None;
                }
                Some(trusted) if trusted.contains(peer.ip()) => Some(e.access.clone()),
                Some(_) => {
                    self.stats.dropped(Dropped::ProxyProtocolUntrusted);
                    tracing::debug!(%peer, "PROXY protocol from an untrusted peer");
                    return None;
                }
            };
            let timers = Timers {
                max_connections: e.max_connections,
                tls_handshake_timeout: e.tls_handshake_timeout,
                header_timeout: e.header_timeout,
                keepalive_timeout: e.keepalive_timeout,
                max_header_size: e.max_header_size,
                max_uri_length: e.max_uri_length,
                h2_max_concurrent_streams: e.h2_max_concurrent_streams,
            };
            (timers, proxy_header)
        };
        // The first request head is due within `header_timeout` of this, the PROXY
        // header and the TLS handshake included.
        let started = tokio::time::Instant::now();
        // Dropping the stream closes a connection over the limit.
        let _open = self.stats.open(edge.max_connections)?;
        let client = match proxy_header {
            None => peer,
            Some(access) => {
                let client = self
                    .proxy_header(&mut tcp, peer, edge.header_timeout)
                    .await?;
                if !access.admits(client.ip()) {
                    self.stats.dropped(Dropped::Denied);
                    tracing::debug!(%client, %peer, "client address denied");
                    return None;
                }
                client
            }
        };
        service::set_client(&mut tcp, client);
        let stream: Stream = match &self.tls {
            None => Box::new(tcp),
            Some(acceptor) => {
                // Boxed: its state is freed once the handshake is done, not kept for the
                // connection's life inside this future.
                let handshake = Box::pin(tls::recording_served(first_byte_then(tcp, acceptor)));
                match tokio::time::timeout(edge.tls_handshake_timeout, handshake).await {
                    Ok(Ok(tls)) => Box::new(tls),
                    Ok(Err(Handshake::Silent)) => {
                        // Not the gateway's doing (a load balancer's TCP probe): not a
                        // dropped connection.
                        tracing::debug!("client closed before its TLS handshake");
                        return None;
                    }
                    Ok(Err(Handshake::Failed(error))) => {
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
            Box::pin(self.serve_h2(stream, &mut shutdown, &edge)).await;
            return Some(());
        }
        self.serve_h1(stream, started, &edge, &mut shutdown).await;
        Some(())
    }
}

impl EdgeApp {
    /// The client a trusted peer's PROXY protocol header names (the peer itself for a
    /// `LOCAL` header); `None` when the header is missing, malformed or late.
    async fn proxy_header(
        &self,
        tcp: &mut L4Stream,
        peer: SocketAddr,
        within: Duration,
    ) -> Option<SocketAddr> {
        match tokio::time::timeout(within, proxy_protocol::read(tcp)).await {
            Ok(Ok(proxy_protocol::Origin::Client(client))) => Some(client),
            Ok(Ok(proxy_protocol::Origin::Peer)) => Some(peer),
            Ok(Err(proxy_protocol::Malformed::Silent)) => {
                tracing::debug!(%peer, "closed before its PROXY protocol header");
                None
            }
            Ok(Err(error)) => {
                self.stats.dropped(Dropped::ProxyProtocolInvalid);
                tracing::debug!(%peer, %error, "bad PROXY protocol header");
                None
            }
            Err(_) => {
                self.stats.dropped(Dropped::ProxyProtocolTimeout);
                tracing::debug!(%peer, "no PROXY protocol header within header_timeout");
                None
            }
        }
    }
}

/// How a TLS handshake did not happen.
enum Handshake {
    /// The client closed (or reset) the connection without sending a byte.
    Silent,
    /// The handshake itself failed.
    Failed(Box<pingora::Error>),
}

/// Waits for the client's first byte (put back for the handshake to read), then runs the
/// TLS handshake: a connection closed before it sent anything is told apart from a
/// handshake that failed.
async fn first_byte_then(
    mut tcp: L4Stream,
    acceptor: &Acceptor,
) -> Result<pingora::protocols::tls::TlsStream<L4Stream>, Handshake> {
    use tokio::io::AsyncReadExt;
    // As much as a ClientHello usually takes: rustls then reads it whole, as it would
    // from the socket (put back a byte at a time, the hello costs an idle TLS
    // connection ~4 KiB more for its life: measured with compare.sh's scenario 5).
    let mut first = [0u8; 2048];
    match tcp.read(&mut first).await {
        Ok(0) | Err(_) => return Err(Handshake::Silent),
        Ok(n) => tcp.rewind(first.get(..n).unwrap_or_default()),
    }
    acceptor.tls_handshake(tcp).await.map_err(Handshake::Failed)
}
