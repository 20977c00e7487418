//! HTTP/2 stream-reset floods on the HTTPS listener: Rapid Reset (CVE-2023-44487) and
//! MadeYouReset (CVE-2025-8671). A flooding client on raw `h2` must be cut off with a
//! GOAWAY while a well-behaved client keeps getting 200s from hello. The tests report
//! how many flood requests reached hello (from its request count).
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use e2e::{Certs, Client, Gateway, Hello, Proto};
use h2::client::SendRequest;
use h2::Reason;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Bounds of a whole flood (every connection together). The flood stops as soon as the
/// well-behaved client has made its requests: the time bound only ends a flood that
/// starves it, with room for a loaded machine.
const FLOOD_MAX_STREAMS: u64 = 100_000;
const FLOOD_MAX_TIME: Duration = Duration::from_secs(60);
/// Flood connections at most (each should end in a GOAWAY after a few streams).
const FLOOD_MAX_CONNECTIONS: u32 = 1_000;
/// Well-behaved requests that must succeed while the flood runs, and after it.
const GOOD_DURING: u64 = 20;
const GOOD_AFTER: u64 = 10;
/// Deadline for any single step (a request, a connection, `ready()`, a connection end).
const STEP_DEADLINE: Duration = Duration::from_secs(10);
/// Path of flood requests (well-behaved ones get "/").
const FLOOD_PATH: &str = "/flood";

/// hello behind a gateway with an HTTPS listener for `localhost` and an admin listener.
struct Setup {
    certs: Certs,
    gw: Gateway,
    hello: Hello,
}

impl Setup {
    fn start() -> Self {
        let hello = Hello::spawn("h");
        let certs = Certs::new();
        let tls = certs.server("tls", &["localhost"]);
        let config = format!(
            "[admin]\nlisten = \"127.0.0.1:{{{{port:admin}}}}\"\n\n{}",
            e2e::https_config(&[&tls], &[hello.addr], "")
        );
        let gw = Gateway::start(&config);
        Self { certs, gw, hello }
    }

    /// The `gateway_requests_total` samples, for the report.
    fn request_metrics(&self) -> String {
        let (_, body) = self.gw.admin_get("/metrics");
        body.lines()
            .filter(|l| l.starts_with("gateway_requests_total{"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// What a [`Sniff`] saw of the server's frames.
#[derive(Default)]
struct SniffState {
    /// Server-to-client bytes not yet parsed into whole frames.
    unparsed: Vec<u8>,
    /// The first GOAWAY frame: (last stream id, error code, debug data).
    go_away: Option<(u32, Reason, String)>,
    /// A write failed (the server closed); later writes are dropped.
    write_failed: bool,
}

/// The plaintext below the h2 client: records the server's GOAWAY frame as it is read,
/// and once a write fails (the server closed the socket while the flood was still
/// being written) drops further writes instead of failing, so that h2 goes on reading
/// and gets to the GOAWAY that came before the close.
struct Sniff<T> {
    inner: T,
    state: Arc<std::sync::Mutex<SniffState>>,
}

impl SniffState {
    fn parse(&mut self, bytes: &[u8]) {
        self.unparsed.extend_from_slice(bytes);
        loop {
            let Some(head) = self.unparsed.get(..9) else {
                return;
            };
            let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
            let kind = head[3];
            let Some(payload) = self.unparsed.get(9..9 + len) else {
                return;
            };
            const GOAWAY: u8 = 0x7;
            if kind == GOAWAY && self.go_away.is_none() && len >= 8 {
                let last = u32::from_be_bytes(payload[..4].try_into().unwrap()) & 0x7fff_ffff;
                let code = u32::from_be_bytes(payload[4..8].try_into().unwrap());
                let debug = String::from_utf8_lossy(&payload[8..]).into_owned();
                self.go_away = Some((last, Reason::from(code), debug));
            }
            self.unparsed.drain(..9 + len);
        }
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Sniff<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(())) = poll {
            self.state.lock().unwrap().parse(&buf.filled()[before..]);
        }
        poll
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Sniff<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.state.lock().unwrap().write_failed {
            return std::task::Poll::Ready(Ok(buf.len()));
        }
        match std::pin::Pin::new(&mut self.inner).poll_write(cx, buf) {
            std::task::Poll::Ready(Err(_)) => {
                self.state.lock().unwrap().write_failed = true;
                std::task::Poll::Ready(Ok(buf.len()))
            }
            other => other,
        }
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.state.lock().unwrap().write_failed {
            return std::task::Poll::Ready(Ok(()));
        }
        match std::pin::Pin::new(&mut self.inner).poll_flush(cx) {
            std::task::Poll::Ready(Err(_)) => {
                self.state.lock().unwrap().write_failed = true;
                std::task::Poll::Ready(Ok(()))
            }
            other => other,
        }
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A raw `h2` client connection over TLS (ALPN h2) to `addr`, trusting the dev CA.
/// Returns the request handle, the task driving the connection (its result is how the
/// connection ended) and what was seen of the server's frames.
async fn h2_connect(
    addr: SocketAddr,
    ca: &std::path::Path,
) -> (
    SendRequest<Bytes>,
    JoinHandle<Result<(), h2::Error>>,
    Arc<std::sync::Mutex<SniffState>>,
) {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let state = Arc::new(std::sync::Mutex::new(SniffState::default()));
    let connect = async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from("localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "ALPN");
        let io = Sniff {
            inner: tls,
            state: state.clone(),
        };
        h2::client::handshake(io).await.unwrap()
    };
    let (send, conn) = tokio::time::timeout(STEP_DEADLINE, connect)
        .await
        .expect("h2 connection set up in time");
    (send, tokio::spawn(conn), state)
}

/// How one flood connection ended.
struct ConnEnd {
    /// Streams the client opened on it.
    streams: u64,
    /// The server's GOAWAY: (last stream id it processed, error code, debug data).
    go_away: Option<(u32, Reason, String)>,
    /// How the h2 client saw the end: the error of the flood loop or of the connection.
    error: Option<h2::Error>,
    /// Stopped by our own bounds rather than by the server.
    bounded: bool,
}

impl ConnEnd {
    fn go_away_reason(&self) -> Option<Reason> {
        self.go_away.as_ref().map(|(_, reason, _)| *reason)
    }

    /// Streams the server took before its GOAWAY (client stream ids are 1, 3, 5...).
    fn streams_processed(&self) -> Option<u32> {
        self.go_away.as_ref().map(|(last, _, _)| last.div_ceil(2))
    }
}

/// Opens streams with `open` on one connection until the server ends it, or the flood's
/// remaining budget (`streams_left`, `until`) runs out.
async fn flood_connection(
    addr: SocketAddr,
    ca: &std::path::Path,
    streams_left: u64,
    until: Instant,
    open: Opener,
) -> ConnEnd {
    let (mut client, conn, sniffed) = h2_connect(addr, ca).await;
    let mut streams = 0;
    let mut loop_error = None;
    let mut bounded = false;
    // Handles of streams the server is to reset: dropping them would make h2 reset the
    // stream itself (RST_STREAM CANCEL), which is Rapid Reset again.
    let mut held = Vec::new();
    loop {
        if streams >= streams_left || Instant::now() >= until {
            bounded = true;
            break;
        }
        let ready = std::future::poll_fn(|cx| client.poll_ready(cx));
        match tokio::time::timeout(STEP_DEADLINE, ready).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                loop_error = Some(e);
                break;
            }
            Err(_) => panic!("h2 client stuck for {STEP_DEADLINE:?} after {streams} streams"),
        }
        match open(&mut client) {
            Ok(Some(stream)) => held.push(stream),
            Ok(None) => {}
            Err(e) => {
                loop_error = Some(e);
                break;
            }
        }
        streams += 1;
        // Let the connection task flush what was queued.
        tokio::task::yield_now().await;
    }
    drop(client);
    let conn_result = if bounded {
        conn.abort();
        Ok(())
    } else {
        tokio::time::timeout(STEP_DEADLINE, conn)
            .await
            .expect("flood connection ends after the server gave up on it")
            .expect("connection task")
    };
    // The connection's own error carries the GOAWAY when the loop saw only its echo.
    let error = match (loop_error, conn_result) {
        (Some(e), _) if e.is_go_away() => Some(e),
        (_, Err(e)) => Some(e),
        (e, Ok(())) => e,
    };
    drop(held);
    let go_away = sniffed.lock().unwrap().go_away.take();
    ConnEnd {
        streams,
        go_away,
        error,
        bounded,
    }
}

/// The handles of an open stream.
type Held = (h2::client::ResponseFuture, h2::SendStream<Bytes>);
/// Opens one flood stream; returns its handles when they must outlive the call.
type Opener = fn(&mut SendRequest<Bytes>) -> Result<Option<Held>, h2::Error>;

/// Rapid Reset: HEADERS (GET, END_STREAM) immediately followed by RST_STREAM(CANCEL).
fn open_and_reset(client: &mut SendRequest<Bytes>) -> Result<Option<Held>, h2::Error> {
    let req = http::Request::get(format!("https://localhost{FLOOD_PATH}"))
        .body(())
        .unwrap();
    let (_response, mut stream) = client.send_request(req, true)?;
    stream.send_reset(Reason::CANCEL);
    Ok(None)
}

/// MadeYouReset: a request that makes the *server* reset the stream. The client never
/// sends RST_STREAM; it sends a valid HEADERS (`content-length: 1`, no END_STREAM) and then
/// two bytes of DATA with END_STREAM, overflowing the declared length, which RFC 9113
/// §8.1.1 makes a malformed message: the server must answer RST_STREAM(PROTOCOL_ERROR).
///
/// The primitives of the advisory itself cannot be sent through h2's client API:
/// - WINDOW_UPDATE with a 0 increment (or one overflowing the window): h2 sends
///   WINDOW_UPDATE only by itself, from `FlowControl::release_capacity`, and only for
///   a positive increment within the window; there is no raw-frame API.
/// - DATA or HEADERS on a stream the client already half-closed: `SendStream::send_data`
///   / `send_trailers` after END_STREAM fail locally (`UserError::UnexpectedFrameType`,
///   or `InactiveStreamId` once closed) and nothing goes on the wire.
/// - PRIORITY frames (e.g. a stream depending on itself): h2 has no API for them and its
///   encoder does not implement them.
///
/// The content-length overflow reaches the same server code: h2 (0.4.11+) counts every
/// reset it sends for a peer's error toward `max_local_error_reset_streams` (default 1024)
/// and then sends GOAWAY(ENHANCE_YOUR_CALM, "too_many_internal_resets").
fn open_malformed(client: &mut SendRequest<Bytes>) -> Result<Option<Held>, h2::Error> {
    let req = http::Request::post(format!("https://localhost{FLOOD_PATH}"))
        .header(http::header::CONTENT_LENGTH, "1")
        .body(())
        .unwrap();
    let (response, mut stream) = client.send_request(req, false)?;
    stream.send_data(Bytes::from_static(b"xx"), true)?;
    Ok(Some((response, stream)))
}

/// Well-behaved GETs of "/" on new connections, alternating HTTP/1.1 and HTTP/2, until
/// `stop`; then `GOOD_AFTER` more. Returns (requests done before `stop`, total).
async fn good_client(
    client: Client,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
) -> Result<(u64, u64), String> {
    let mut during = None;
    let mut after = 0;
    let mut n: u64 = 0;
    loop {
        if during.is_none() && stop.load(Ordering::SeqCst) {
            during = Some(n);
        }
        if during.is_some() {
            if after == GOOD_AFTER {
                break;
            }
            after += 1;
        }
        let proto = match n % 2 {
            0 => Proto::H1,
            _ => Proto::H2,
        };
        let request = async {
            let mut conn = client.connect(addr, Some("localhost"), proto).await?;
            conn.get("/").await
        };
        let resp = tokio::time::timeout(STEP_DEADLINE, request)
            .await
            .map_err(|_| format!("request {n} ({proto:?}): no answer in {STEP_DEADLINE:?}"))?
            .map_err(|e| format!("request {n} ({proto:?}): {e}"))?;
        if resp.status != 200 || resp.header("x-hello-instance") != "h" {
            return Err(format!(
                "request {n} ({proto:?}): {} {}",
                resp.status,
                resp.text()
            ));
        }
        n += 1;
        done.store(n, Ordering::SeqCst);
    }
    Ok((during.unwrap_or(n), n))
}

/// Floods connection after connection with `open` until the well-behaved client has
/// done `GOOD_DURING` requests meanwhile (bounded by the flood limits); asserts each
/// flood connection ended in a GOAWAY from the gateway, that the good client never
/// failed, and prints the numbers.
async fn flood_while_serving(variant: &str, open: Opener) {
    let started = Instant::now();
    let setup = Setup::start();
    let addr = setup.gw.addr("https");
    let ca = setup.certs.ca();
    let stop = Arc::new(AtomicBool::new(false));
    let good_done = Arc::new(AtomicU64::new(0));
    let good = tokio::spawn(good_client(
        Client::new(&ca),
        addr,
        stop.clone(),
        good_done.clone(),
    ));

    let until = Instant::now() + FLOOD_MAX_TIME;
    let flood_start = Instant::now();
    let mut ends: Vec<ConnEnd> = Vec::new();
    let mut streams: u64 = 0;
    while (ends.is_empty() || good_done.load(Ordering::SeqCst) < GOOD_DURING)
        && !good.is_finished()
        && streams < FLOOD_MAX_STREAMS
        && Instant::now() < until
        && ends.len() < FLOOD_MAX_CONNECTIONS as usize
    {
        let end = flood_connection(addr, &ca, FLOOD_MAX_STREAMS - streams, until, open).await;
        streams += end.streams;
        let stop_early = end.go_away_reason().is_none();
        ends.push(end);
        if stop_early {
            break;
        }
    }
    let flood_time = flood_start.elapsed();
    stop.store(true, Ordering::SeqCst);
    let good_result = good.await.unwrap();

    let reasons: std::collections::BTreeMap<String, usize> =
        ends.iter().fold(Default::default(), |mut m, e| {
            let key = match (&e.go_away, e.bounded) {
                (_, true) => "not ended by the server (flood bounds reached)".to_owned(),
                (Some((_, r, debug)), _) => format!("GOAWAY {r:?} {debug:?}"),
                (None, _) => format!("no GOAWAY: {:?}", e.error),
            };
            *m.entry(key).or_default() += 1;
            m
        });
    let opened: Vec<u64> = ends.iter().map(|e| e.streams).collect();
    let processed: Vec<u32> = ends.iter().filter_map(ConnEnd::streams_processed).collect();
    let range = |v: &[u64]| {
        let min = v.iter().min().copied().unwrap_or(0);
        let max = v.iter().max().copied().unwrap_or(0);
        format!(
            "first {}, min {min}, max {max}",
            v.first().copied().unwrap_or(0)
        )
    };
    let processed: Vec<u64> = processed.into_iter().map(u64::from).collect();
    println!(
        "[{variant}] flood: {streams} streams opened on {} connections in {flood_time:.2?}; \
         connection ends: {reasons:?}\n\
         [{variant}] per connection: streams opened by the client ({}), streams the server \
         took before its GOAWAY, (last-stream-id + 1) / 2 ({})",
        ends.len(),
        range(&opened),
        range(&processed),
    );
    // Every well-behaved request that got its 200 reached hello once; the rest are the flood's.
    let hello_requests = setup.hello.requests();
    match &good_result {
        Ok((_, good_total)) => {
            let reached = hello_requests.saturating_sub(*good_total);
            println!(
                "[{variant}] flood requests that reached hello: {reached} of {streams} streams \
                 ({:.2}%)",
                if streams == 0 {
                    0.0
                } else {
                    reached as f64 * 100.0 / streams as f64
                }
            );
        }
        Err(_) => println!("[{variant}] requests that reached hello: {hello_requests}"),
    }
    println!(
        "[{variant}] well-behaved client: {good_result:?} (during flood, total)\n\
         [{variant}] gateway metrics:\n{}\n[{variant}] test took {:.2?}",
        setup.request_metrics(),
        started.elapsed()
    );

    let (during, _) =
        good_result.unwrap_or_else(|e| panic!("[{variant}] well-behaved client failed: {e}"));
    for end in &ends {
        assert!(
            !end.bounded,
            "[{variant}] a flood connection ran to the flood bounds ({} streams) without \
             a GOAWAY from the gateway",
            end.streams
        );
        let reason = end.go_away_reason().unwrap_or_else(|| {
            panic!(
                "[{variant}] flood connection after {} streams ended without a GOAWAY: {:?}",
                end.streams, end.error
            )
        });
        assert_ne!(
            reason,
            Reason::NO_ERROR,
            "[{variant}] GOAWAY without an error code: a graceful close, not a defence"
        );
    }
    assert!(
        during >= GOOD_DURING,
        "[{variant}] only {during} well-behaved requests completed while flooding \
         ({FLOOD_MAX_TIME:?}, {streams} streams)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rapid_reset_flood_gets_goaway_and_others_are_still_served() {
    flood_while_serving("rapid reset", open_and_reset).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn made_you_reset_flood_gets_goaway_and_others_are_still_served() {
    flood_while_serving("MadeYouReset", open_malformed).await;
}
