//! Idle keep-alive connections to one backend. A connection is checked when it is taken
//! (closed or sending unasked bytes: dropped) and kept at most the upstream's `idle`
//! timeout; a sweep closes expired ones on an idle upstream. Taking and returning one is
//! a lock-free queue operation: no task per idle connection, no lock on the request path.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use crossbeam_queue::SegQueue;
use pingora::protocols::Stream;
use tokio::io::{AsyncRead, ReadBuf};

/// Idle connections kept per backend at most; more are closed when returned.
const MAX_IDLE: usize = 1024;

/// The idle connections of one backend.
pub struct Pool {
    idle: SegQueue<Idle>,
    /// Connections in `idle` (the queue's own length is not kept exactly under races).
    count: AtomicUsize,
    /// Idle connections kept at most.
    max: usize,
}

impl Default for Pool {
    fn default() -> Self {
        Self::with_max(MAX_IDLE)
    }
}

struct Idle {
    stream: Stream,
    since: Instant,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("idle", &self.len()).finish()
    }
}

impl Pool {
    fn with_max(max: usize) -> Self {
        Self {
            idle: SegQueue::new(),
            count: AtomicUsize::new(0),
            max,
        }
    }

    /// An idle connection that is still open and idle for less than `max_idle`.
    pub fn take(&self, max_idle: Duration) -> Option<Stream> {
        while let Some(mut idle) = self.idle.pop() {
            self.count.fetch_sub(1, Ordering::Relaxed);
            if idle.since.elapsed() < max_idle && quiet(&mut idle.stream) {
                return Some(idle.stream);
            }
        }
        None
    }

    /// Keeps `stream` for the next request (closed instead when the pool is full).
    pub fn put(&self, stream: Stream) {
        if self.count.fetch_add(1, Ordering::Relaxed) >= self.max {
            self.count.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        self.idle.push(Idle {
            stream,
            since: Instant::now(),
        });
    }

    /// Closes the connections idle for `max_idle` or closed by the backend; keeps the rest.
    pub fn sweep(&self, max_idle: Duration) {
        for _ in 0..self.len() {
            let Some(mut idle) = self.idle.pop() else {
                return;
            };
            self.count.fetch_sub(1, Ordering::Relaxed);
            if idle.since.elapsed() < max_idle && quiet(&mut idle.stream) {
                self.count.fetch_add(1, Ordering::Relaxed);
                self.idle.push(idle);
            }
        }
    }

    /// Idle connections now.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}

/// Whether an idle connection is open with nothing to read: a read would wait. A closed
/// connection reads its end; bytes the backend sent unasked make it unusable too.
fn quiet(stream: &mut Stream) -> bool {
    let mut byte = [0u8; 1];
    let mut buf = ReadBuf::new(&mut byte);
    let mut cx = Context::from_waker(Waker::noop());
    Pin::new(stream).poll_read(&mut cx, &mut buf).is_pending()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::protocols::l4::stream::Stream as L4Stream;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    async fn pair() -> (Stream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Box::new(L4Stream::from(client)), server)
    }

    #[tokio::test]
    async fn open_connections_come_back_and_closed_or_chatty_ones_do_not() {
        let pool = Pool::default();
        let (open, _server_a) = pair().await;
        pool.put(open);
        assert_eq!(pool.len(), 1);
        assert!(pool.take(Duration::from_secs(60)).is_some());
        assert!(pool.take(Duration::from_secs(60)).is_none());

        let (closed, server_b) = pair().await;
        drop(server_b);
        let (chatty, mut server_c) = pair().await;
        server_c.write_all(b"HTTP/1.1 408\r\n\r\n").await.unwrap();
        pool.put(closed);
        pool.put(chatty);
        // Wait until the kernel has delivered the close and the bytes.
        let deadline = Instant::now() + Duration::from_secs(10);
        while pool.len() > 0 && Instant::now() < deadline {
            pool.sweep(Duration::from_secs(60));
            tokio::task::yield_now().await;
        }
        assert_eq!(pool.len(), 0);
        assert!(pool.take(Duration::from_secs(60)).is_none());
    }

    #[tokio::test]
    async fn connections_idle_too_long_are_closed() {
        let pool = Pool::default();
        let (open, _server) = pair().await;
        pool.put(open);
        assert!(pool.take(Duration::ZERO).is_none());
        assert_eq!(pool.len(), 0);
    }

    #[test]
    fn a_backend_keeps_1024_idle_connections() {
        assert_eq!(Pool::default().max, 1024, "the README's figure");
    }

    #[tokio::test]
    async fn a_connection_returned_to_a_full_pool_is_closed() {
        let pool = Pool::with_max(2);
        let mut servers = Vec::new();
        for _ in 0..3 {
            let (stream, server) = pair().await;
            pool.put(stream);
            servers.push(server);
        }
        assert_eq!(pool.len(), 2);
        let mut byte = [0u8; 1];
        let extra = tokio::time::timeout(Duration::from_secs(10), servers[2].read(&mut byte));
        assert_eq!(
            extra.await.expect("closed").unwrap(),
            0,
            "the third one is closed"
        );
        for kept in &servers[..2] {
            let mut byte = [0u8; 1];
            assert!(
                kept.try_read(&mut byte).is_err(),
                "still open, nothing sent"
            );
        }
    }
}
