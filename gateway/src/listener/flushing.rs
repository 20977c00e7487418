//! An HTTP/2 connection's stream that counts for the shutdown drain while it has bytes
//! it could not write out yet. h2 writes a stream's response from the connection's
//! task, after the stream's own task (and its request's count) has ended: without
//! this, the drain could exit with the end of a response still unwritten.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use pingora::protocols::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::lifecycle::WritingGuard;

/// A stream counted as writing from a write or flush that could not complete (the
/// peer reads slower than h2 writes) until a flush completes. h2 flushes after every
/// batch of frames it writes, so between two batches nothing is held back.
#[derive(Debug)]
pub(super) struct Flushing {
    inner: Stream,
    writing: Option<WritingGuard>,
}

impl Flushing {
    pub(super) fn new(inner: Stream) -> Self {
        Self {
            inner,
            writing: None,
        }
    }

    fn note<T>(&mut self, polled: &Poll<T>) {
        if polled.is_pending() && self.writing.is_none() {
            self.writing = Some(WritingGuard::new());
        }
    }
}

impl AsyncRead for Flushing {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Flushing {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        match polled {
            Poll::Ready(_) => self.writing = None,
            Poll::Pending => self.note(&polled),
        }
        polled
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        match polled {
            Poll::Ready(_) => self.writing = None,
            Poll::Pending => self.note(&polled),
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::writing;

    use std::time::Duration;

    #[tokio::test]
    async fn a_write_the_peer_does_not_take_counts_until_flushed() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        const SIZE: usize = 4 << 20;
        // Small socket buffers, so that a write blocks while the peer reads nothing.
        let listening = tokio::net::TcpSocket::new_v4().unwrap();
        listening.set_recv_buffer_size(4096).unwrap();
        listening.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = listening.listen(1).unwrap();
        let connecting = tokio::net::TcpSocket::new_v4().unwrap();
        connecting.set_send_buffer_size(4096).unwrap();
        let near = connecting
            .connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut far, _) = listener.accept().await.unwrap();
        let stream: Stream = Box::new(pingora::protocols::l4::stream::Stream::from(near));
        let mut flushing = Flushing::new(stream);
        assert_eq!(writing(), 0);
        let write = tokio::spawn(async move {
            flushing.write_all(&vec![7u8; SIZE]).await.unwrap();
            flushing.flush().await.unwrap();
            flushing
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while writing() == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the write never blocked"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let mut read = vec![0u8; SIZE];
        far.read_exact(&mut read).await.unwrap();
        let flushing = write.await.unwrap();
        assert_eq!(writing(), 0, "released once written out");
        drop(flushing);
    }
}
