//! The shutdown drain waits for responses to be written out, not only for their
//! requests to end: an HTTP/2 response the client is still reading slowly when the
//! drain begins arrives complete, and then the gateway exits 0.
//!
//! The client stops reading until the gateway's socket to it is full (its send queue
//! at the kernel's limit, read with `ss`), then SIGTERM, and the client reads on at
//! about 1 MB/s, slower than the gateway gets the body from the backend, so the socket
//! stays full. When the gateway's stream task has handed its last bytes to h2,
//! megabytes are still queued in the kernel and in h2's buffers, and the GOAWAY's PING
//! waits behind them: a gateway that exits then loses what h2 held, and the client's
//! PING answer, reaching the closed socket, gets the rest reset.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use e2e::{wait_until, Certs, Gateway, Hello};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// The client reads at most `CHUNK` bytes per `TICK` (none while stopped).
const CHUNK: usize = 32 * 1024;
const TICK: Duration = Duration::from_millis(32);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// A reader that takes at most `rate` bytes per `TICK` from `inner` (0: none).
struct Paced<T> {
    inner: T,
    rate: Arc<AtomicUsize>,
    budget: usize,
    tick: Pin<Box<Sleep>>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Paced<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        while self.budget == 0 {
            ready!(self.tick.as_mut().poll(cx));
            self.budget = self.rate.load(Ordering::Relaxed);
            let next = tokio::time::Instant::now() + TICK;
            self.tick.as_mut().reset(next);
        }
        let n = self.budget.min(buf.remaining());
        let mut small = ReadBuf::new(buf.initialize_unfilled_to(n));
        ready!(Pin::new(&mut self.inner).poll_read(cx, &mut small))?;
        let read = small.filled().len();
        buf.advance(read);
        self.budget -= read;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Paced<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The kernel's limit on a socket's send buffer (`tcp_wmem`'s maximum).
fn wmem_max() -> usize {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem").unwrap();
    text.split_whitespace().nth(2).unwrap().parse().unwrap()
}

/// The bytes the gateway's socket on `port` to the client's `peer` port queues (`ss`'s
/// skmem `w`), and its send buffer's size (`tb`).
fn send_queue(port: u16, peer: u16) -> Option<(usize, usize)> {
    let out = std::process::Command::new("ss")
        .args(["-tmnH", "state", "established"])
        .arg(format!("( sport = :{port} and dport = :{peer} )"))
        .output()
        .expect("run ss (apt-get install iproute2)");
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> Option<usize> {
        let skmem = text.split("skmem:(").nth(1)?.split(')').next()?;
        skmem
            .split(',')
            .find_map(|f| f.strip_prefix(name))?
            .parse()
            .ok()
    };
    Some((field("w")?, field("tb")?))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http2_response_being_read_at_sigterm_arrives_complete() {
    // More than the socket and h2's buffers hold together, so the gateway still has
    // some to send once they are full.
    let body_len = wmem_max() + (2 << 20);
    let hello = Hello::spawn("h");
    let certs = Certs::new();
    let tls_dir = certs.server("tls", &["localhost"]);
    let mut gw = Gateway::start(&format!(
        "[server]\nshutdown_delay = \"0s\"\ndrain_timeout = \"{}s\"\n\n{}",
        DRAIN_TIMEOUT.as_secs(),
        e2e::https_config(&[&tls_dir], &[hello.addr], "")
    ));

    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(certs.ca()).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    // Set before connecting: the window the client offers stays this small.
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    let tcp = socket.connect(gw.addr("https")).await.unwrap();
    let local_port = tcp.local_addr().unwrap().port();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let rate = Arc::new(AtomicUsize::new(CHUNK));
    let paced = Paced {
        inner: tls,
        rate: rate.clone(),
        budget: CHUNK,
        tick: Box::pin(tokio::time::sleep(TICK)),
    };
    // HTTP/2 flow control never holds the gateway back: only the reading does.
    let (mut client, conn) = h2::client::Builder::new()
        .initial_window_size(64 << 20)
        .initial_connection_window_size(64 << 20)
        .handshake::<_, Bytes>(paced)
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = http::Request::get(format!("https://localhost/?size={body_len}"))
        .body(())
        .unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut received = body.data().await.unwrap().unwrap().len();

    rate.store(0, Ordering::Relaxed);
    let port = gw.port("https");
    // Full: its send queue within two 64 KiB segments of the send buffer's size, or (the
    // kernel may hold a socket below that under memory pressure, with a loaded machine's
    // other tests running) over 256 KiB and the same for a second.
    let full = tokio::task::spawn_blocking(move || {
        let mut last = (0, 0);
        let mut same_since = Instant::now();
        wait_until(
            Duration::from_secs(60),
            "the socket to the client full",
            || {
                let (w, tb) = send_queue(port, local_port)?;
                if (w, tb) != last {
                    last = (w, tb);
                    same_since = Instant::now();
                }
                let at_limit = w + (128 << 10) >= tb;
                let stalled = w > 256 << 10 && same_since.elapsed() > Duration::from_secs(1);
                (at_limit || stalled).then_some(())
            },
        )
    });
    full.await.unwrap();
    let signalled = Instant::now();
    gw.signal("TERM");
    while !gw.log().contains("closing listeners") {
        assert!(
            signalled.elapsed() < Duration::from_secs(10),
            "no drain\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    rate.store(CHUNK, Ordering::Relaxed);
    let ended = loop {
        match body.data().await {
            Some(Ok(data)) => received += data.len(),
            Some(Err(e)) => break Err(e.to_string()),
            None => break Ok(()),
        }
    };
    assert_eq!(
        (ended, received),
        (Ok(()), body_len),
        "the response arrived complete ({:?} after SIGTERM)\n{}",
        signalled.elapsed(),
        gw.log()
    );
    let status = gw
        .wait_exit(DRAIN_TIMEOUT)
        .unwrap_or_else(|| panic!("still running\n{}", gw.log()));
    assert!(status.success(), "{status}\n{}", gw.log());
}
