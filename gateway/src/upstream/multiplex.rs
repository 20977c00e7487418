//! HTTP/2 connections to one backend, shared by concurrent requests: each carries up to
//! `max_streams` streams before another is opened. A connection the backend is closing
//! (`GOAWAY`) or that failed is left out at once and dropped from the list; one idle
//! past the upstream's idle timeout is closed by the sweep. Leasing a stream is a read
//! of the list and one atomic add: no lock on the request path (opening a connection,
//! rare, is serialised per backend so that a burst opens one, not one per request).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use h2::client::SendRequest;
use pingora::protocols::Stream;

use super::backend::now_ms;

/// Per-stream receive window asked of backends (h2's default is 64 KiB, which holds a
/// large response to a round trip per 64 KiB).
const STREAM_WINDOW: u32 = 2 << 20;
/// Connection receive window.
const CONNECTION_WINDOW: u32 = 16 << 20;

/// One HTTP/2 connection to a backend.
pub struct H2Conn {
    /// The backend's address.
    pub addr: std::net::SocketAddr,
    send: SendRequest<Bytes>,
    /// Streams leased now.
    streams: AtomicU32,
    /// Set when the connection's task ended or the backend refused a new stream on it.
    closed: Arc<AtomicBool>,
    /// Set once the backend said it is going away (`GOAWAY`).
    draining: AtomicBool,
    /// `now_ms()` when its last stream ended.
    idle_since: AtomicU64,
}

impl std::fmt::Debug for H2Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Conn")
            .field("streams", &self.streams.load(Ordering::Relaxed))
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish()
    }
}

impl H2Conn {
    /// The HTTP/2 handshake over `stream` (a new connection); the connection is then
    /// driven by a task of its own until it closes.
    pub async fn start(stream: Stream, addr: std::net::SocketAddr) -> Result<Arc<Self>, h2::Error> {
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .enable_push(false)
            .handshake::<_, Bytes>(stream)
            .await?;
        let closed = Arc::new(AtomicBool::new(false));
        let flag = closed.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "backend HTTP/2 connection ended");
            }
            flag.store(true, Ordering::Relaxed);
        });
        Ok(Arc::new(Self {
            addr,
            send,
            streams: AtomicU32::new(0),
            closed,
            draining: AtomicBool::new(false),
            idle_since: AtomicU64::new(now_ms()),
        }))
    }

    fn is_open(&self) -> bool {
        !self.closed.load(Ordering::Relaxed)
    }

    /// The backend sent `GOAWAY`: no new stream goes on it, and a stream it has not
    /// answered when the connection then closes was not processed (a graceful
    /// shutdown finishes the streams it keeps before closing).
    pub fn retire(&self) {
        self.draining.store(true, Ordering::Relaxed);
        self.closed.store(true, Ordering::Relaxed);
    }

    /// Whether the backend has said it is going away.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// A stream's place on a connection; given back when dropped.
pub struct Lease {
    conn: Arc<H2Conn>,
}

impl Lease {
    /// A handle to open the stream with.
    pub fn sender(&self) -> SendRequest<Bytes> {
        self.conn.send.clone()
    }

    pub fn conn(&self) -> &Arc<H2Conn> {
        &self.conn
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.conn.streams.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.conn.idle_since.store(now_ms(), Ordering::Relaxed);
        }
    }
}

/// The HTTP/2 connections of one backend.
#[derive(Debug, Default)]
pub struct Multiplex {
    conns: ArcSwap<Vec<Arc<H2Conn>>>,
    /// Held while a connection is being opened.
    opening: tokio::sync::Mutex<()>,
}

impl Multiplex {
    /// A stream on an open connection with fewer than `max` streams, if there is one.
    pub fn lease(&self, max: u32) -> Option<Lease> {
        let conns = self.conns.load();
        let mut stale = false;
        for conn in conns.iter() {
            if !conn.is_open() {
                stale = true;
                continue;
            }
            let taken = conn
                .streams
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n < max).then_some(n + 1)
                });
            if taken.is_ok() {
                return Some(Lease { conn: conn.clone() });
            }
        }
        drop(conns);
        if stale {
            self.prune();
        }
        None
    }

    /// Opens the way for a new connection: while the guard is held no other request
    /// opens one, and [`Multiplex::lease`] should be asked again first (another request
    /// may just have added one).
    pub async fn opening(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.opening.lock().await
    }

    /// Adds a new connection and leases its first stream.
    pub fn add(&self, conn: Arc<H2Conn>) -> Lease {
        conn.streams.fetch_add(1, Ordering::Relaxed);
        self.conns.rcu(|conns| {
            let mut next: Vec<Arc<H2Conn>> =
                conns.iter().filter(|c| c.is_open()).cloned().collect();
            next.push(conn.clone());
            next
        });
        Lease { conn }
    }

    /// Drops the closed connections from the list.
    fn prune(&self) {
        self.conns.rcu(|conns| {
            conns
                .iter()
                .filter(|c| c.is_open())
                .cloned()
                .collect::<Vec<_>>()
        });
    }

    /// Closes the connections without streams for `max_idle`, and drops closed ones.
    pub fn sweep(&self, max_idle: Duration) {
        let limit = u64::try_from(max_idle.as_millis()).unwrap_or(u64::MAX);
        let now = now_ms();
        let idle = |c: &H2Conn| {
            c.streams.load(Ordering::Relaxed) == 0
                && now.saturating_sub(c.idle_since.load(Ordering::Relaxed)) >= limit
        };
        if self.conns.load().iter().any(|c| !c.is_open() || idle(c)) {
            self.conns.rcu(|conns| {
                conns
                    .iter()
                    .filter(|c| c.is_open() && !idle(c))
                    .cloned()
                    .collect::<Vec<_>>()
            });
        }
    }

    /// Open connections now.
    pub fn open(&self) -> usize {
        self.conns.load().iter().filter(|c| c.is_open()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::protocols::l4::stream::Stream as L4Stream;
    use tokio::net::{TcpListener, TcpStream};

    /// An HTTP/2 connection to a server that accepts it and then goes away when told.
    async fn connection() -> (Arc<H2Conn>, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (close, closed) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut conn = h2::server::handshake(tcp).await.unwrap();
            tokio::select! {
                _ = async { while conn.accept().await.is_some() {} } => {}
                _ = closed => {}
            }
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let conn = H2Conn::start(Box::new(L4Stream::from(tcp)), addr)
            .await
            .unwrap();
        (conn, close)
    }

    #[tokio::test]
    async fn streams_are_leased_up_to_max_streams_and_a_closed_connection_is_left_out() {
        let pool = Multiplex::default();
        assert!(pool.lease(2).is_none(), "no connection yet");
        let (conn, close) = connection().await;
        let first = pool.add(conn);
        let second = pool.lease(2).expect("room for a second stream");
        assert!(pool.lease(2).is_none(), "two streams is the most");
        drop(second);
        let third = pool.lease(2).expect("a stream given back is leased again");
        assert_eq!(pool.open(), 1);
        drop((first, third));
        // The server goes away: the connection's task ends and it is left out.
        drop(close);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while pool.lease(2).is_some() {
            assert!(std::time::Instant::now() < deadline, "still leased");
            tokio::task::yield_now().await;
        }
        assert_eq!(pool.open(), 0);
    }

    #[tokio::test]
    async fn the_sweep_closes_connections_idle_too_long() {
        let pool = Multiplex::default();
        let (conn, _close) = connection().await;
        let lease = pool.add(conn);
        pool.sweep(Duration::ZERO);
        assert_eq!(pool.open(), 1, "a connection with a stream is not idle");
        drop(lease);
        pool.sweep(Duration::from_secs(60));
        assert_eq!(pool.open(), 1, "idle for less than the timeout");
        pool.sweep(Duration::ZERO);
        assert_eq!(pool.open(), 0);
    }
}
