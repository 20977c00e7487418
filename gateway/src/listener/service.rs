//! A listener's socket and accept loop, run as a pingora service on pingora's runtime:
//! one small task per connection. pingora's own listening service spawns a task sized
//! for its TLS handshake (~8.8 KB, kept for the connection's life) and gives every
//! connection a 1.5 KiB write buffer; connections here hold neither.
//!
//! The runtime is pingora's "no steal" one: a single-threaded tokio runtime per worker
//! thread, each connection served wholly on one of them (as nginx's workers do).

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{GetSocketDigest, SocketDigest};
use pingora::server::{ListenFds, ShutdownWatch};
use pingora::services::Service;
use tokio::net::{TcpSocket, TcpStream};

use super::EdgeApp;

/// Connections waiting to be accepted (pingora's listeners use the same).
const BACKLOG: u32 = 65_535;

/// Pause after a failed accept (out of file descriptors, say) before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// One listener: its bound socket and the connection logic.
pub struct EdgeService {
    name: String,
    socket: Option<TcpSocket>,
    app: Arc<EdgeApp>,
    /// Worker threads: with more than one, connections are spread over them.
    threads: usize,
}

impl EdgeService {
    /// Binds `addr` now (so a taken port fails the start); accepting starts with the service.
    pub fn bind(name: String, addr: SocketAddr, app: EdgeApp, threads: usize) -> io::Result<Self> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        Ok(Self {
            name,
            socket: Some(socket),
            app: Arc::new(app),
            threads,
        })
    }
}

#[async_trait]
impl Service for EdgeService {
    async fn start_service(
        &mut self,
        _fds: Option<ListenFds>,
        mut shutdown: ShutdownWatch,
        _listeners_per_fd: usize,
    ) {
        let Some(socket) = self.socket.take() else {
            return;
        };
        let listener = match socket.listen(BACKLOG) {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!(service = %self.name, %error, "cannot listen; exiting");
                std::process::exit(1);
            }
        };
        loop {
            let accepted = tokio::select! {
                biased;
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        crate::lifecycle::stop();
                        break;
                    }
                    continue;
                }
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((tcp, peer)) if self.threads == 1 => {
                    tokio::spawn(serve(self.app.clone(), tcp, peer, shutdown.clone()));
                }
                Ok((tcp, peer)) => self.spread(tcp, peer, &shutdown),
                Err(error) => {
                    tracing::warn!(service = %self.name, %error, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
        drop(listener);
        tracing::info!(service = %self.name, "stopped accepting");
    }

    fn name(&self) -> &str {
        &self.name
    }
}

impl EdgeService {
    /// Serves an accepted connection on a worker thread picked at random. The socket is
    /// registered again with that thread's event loop: left with the accepting thread's,
    /// its readiness would have to cross threads on every event.
    fn spread(&self, tcp: TcpStream, peer: SocketAddr, shutdown: &ShutdownWatch) {
        let tcp = match tcp.into_std() {
            Ok(tcp) => tcp,
            Err(error) => {
                tracing::debug!(%error, "cannot move the connection to a worker; closing");
                return;
            }
        };
        let app = self.app.clone();
        let shutdown = shutdown.clone();
        pingora_runtime::current_handle().spawn(async move {
            match TcpStream::from_std(tcp) {
                Ok(tcp) => serve(app, tcp, peer, shutdown).await,
                Err(error) => tracing::debug!(%error, "cannot register the connection; closing"),
            }
        });
    }
}

/// Serves one accepted connection until it closes.
async fn serve(app: Arc<EdgeApp>, tcp: TcpStream, peer: SocketAddr, shutdown: ShutdownWatch) {
    if let Err(error) = tcp.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY; closing");
        return;
    }
    app.serve(L4Stream::from(tcp), peer, &shutdown).await;
}

/// Gives `stream` the socket digest pingora's listener gives one, with `client` as its
/// peer address: the TCP peer's, or the PROXY protocol header's.
pub(super) fn set_client(stream: &mut L4Stream, client: SocketAddr) {
    let digest = SocketDigest::from_raw_fd(stream.as_raw_fd());
    let _ = digest.peer_addr.set(Some(client.into()));
    stream.set_socket_digest(digest);
}
