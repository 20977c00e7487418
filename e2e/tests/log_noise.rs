//! What a client alone can make happen is logged at DEBUG, never at WARN or ERROR, so no
//! client can flood the log: a TLS renegotiation attempt, a TLS record out of order, a
//! broken request body, an HTTP/2 PING ack for a ping never sent, HTTP/2 streams reset
//! while their responses wait for flow-control capacity. Each test waits for the DEBUG
//! line of what it provoked (so it did happen, and at DEBUG), then finds no WARN or ERROR
//! line in the whole log, and the gateway still serving.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use e2e::{exchange, tls_config, wait_until, Certs, Client, Gateway, Hello, Proto, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The default filter with rustls, h2 and the request path at DEBUG: what they log about
/// the client shows up, at the level it is logged at.
const FILTER: &str = "info,pingora_core=warn,rustls=debug,h2=debug,gateway=debug";

/// How long a log line may take to appear (a safety net, not a measured bound).
const LOG_DEADLINE: Duration = Duration::from_secs(30);

struct Setup {
    certs: Certs,
    gw: Gateway,
    _hello: Hello,
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
        let gw = Gateway::start_with_env(&config, &[("RUST_LOG", FILTER)]);
        Self {
            certs,
            gw,
            _hello: hello,
        }
    }

    /// Waits for a log line that contains `text`; every such line must be at `level`.
    fn wait_for_line(&self, level: &str, text: &str) {
        let lines = wait_until(LOG_DEADLINE, &format!("a line with {text:?}"), || {
            let log = self.gw.log();
            let lines: Vec<String> = log
                .lines()
                .filter(|l| l.contains(text))
                .map(str::to_owned)
                .collect();
            (!lines.is_empty()).then_some(lines)
        });
        for line in lines {
            assert_eq!(level_of(&line), Some(level), "{line}");
        }
    }

    /// Panics if the log has a WARN or ERROR line.
    fn assert_no_warnings(&self) {
        let log = self.gw.log();
        let loud: Vec<&str> = log
            .lines()
            .filter(|l| matches!(level_of(l), Some("WARN" | "ERROR")))
            .collect();
        assert!(loud.is_empty(), "WARN/ERROR lines:\n{}", loud.join("\n"));
    }

    /// Asserts that the gateway still answers 200 over HTTP/1.1 and HTTP/2.
    async fn assert_serving(&self) {
        let client = Client::new(&self.certs.ca());
        for proto in [Proto::H1, Proto::H2] {
            let resp = client
                .get(self.gw.addr("https"), "localhost", "/", proto)
                .await;
            assert_eq!(resp.status, 200, "{proto:?}");
        }
    }
}

/// A child process, killed when dropped (a failed test leaves none behind).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The level of a text log line (`2026-12-01T09:00:00.000000Z  WARN target: ...`).
fn level_of(line: &str) -> Option<&str> {
    line.split_whitespace().nth(1)
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_renegotiation_out_of_order_records_and_broken_bodies_are_debug() {
    let s = Setup::start();
    let port = s.gw.port("https");

    // TLS 1.2 renegotiation (`R` on openssl's command line): rustls refuses it with a
    // warning alert.
    let openssl = Command::new("openssl")
        .args([
            "s_client",
            "-tls1_2",
            "-servername",
            "localhost",
            "-connect",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run openssl s_client");
    let mut openssl = KillOnDrop(openssl);
    openssl.0.stdin.as_mut().unwrap().write_all(b"R\n").unwrap();
    s.wait_for_line("DEBUG", "Sending warning alert NoRenegotiation");
    drop(openssl);

    // An application-data record where the ClientHello is due.
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(LOG_DEADLINE)).unwrap();
    tcp.write_all(&[0x17, 0x03, 0x03, 0x00, 0x01, 0x00])
        .unwrap();
    let mut rest = Vec::new();
    let _ = tcp.read_to_end(&mut rest);
    s.wait_for_line(
        "DEBUG",
        "Received a ApplicationData message while expecting [Handshake]",
    );

    // Broken request framing: answered 400, the request's failure is the client's.
    for request in [
        &b"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: localhost\r\nContent-Length: abc\r\n\r\n",
    ] {
        let reply = exchange(port, Transport::Tls, &s.certs.ca(), request);
        assert_eq!(reply.status, Some(400), "{}", reply.text);
    }
    s.wait_for_line("DEBUG", "InvalidChunk");

    s.assert_serving().await;
    s.assert_no_warnings();
}

/// An HTTP/2 connection over TLS with the client preface and an empty SETTINGS sent.
async fn raw_h2(s: &Setup) -> tokio_rustls::client::TlsStream<TcpStream> {
    let config = tls_config(&s.certs.ca(), &[b"h2"]);
    let tcp = TcpStream::connect(s.gw.addr("https")).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    tls
}

/// A PING frame (stream 0) with `payload`, an ack or not.
fn ping(ack: bool, payload: [u8; 8]) -> Vec<u8> {
    let mut frame = vec![0, 0, 8, 0x6, u8::from(ack), 0, 0, 0, 0];
    frame.extend_from_slice(&payload);
    frame
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_ping_acks_and_streams_reset_while_waiting_are_debug() {
    let s = Setup::start();

    // PING acks for pings the gateway never sent, then a real PING: its ack shows the
    // gateway has read the others.
    let mut tls = raw_h2(&s).await;
    let mut frames = Vec::new();
    for i in 0..20u8 {
        frames.extend(ping(true, [i; 8]));
    }
    frames.extend(ping(false, *b"syncsync"));
    tls.write_all(&frames).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(8).any(|w| w == b"syncsync") {
        let n = tokio::time::timeout(LOG_DEADLINE, tls.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed");
        seen.extend_from_slice(&buf[..n]);
    }
    s.wait_for_line("DEBUG", "recv PING ack that we never sent");

    // Responses the client gives no flow-control window, reset while the gateway waits
    // for capacity to send their bodies.
    let tcp = TcpStream::connect(s.gw.addr("https")).await.unwrap();
    let config = tls_config(&s.certs.ca(), &[b"h2"]);
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    let (mut client, conn) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, Bytes>(tls)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    for _ in 0..5 {
        let req = http::Request::get("https://localhost/?size=65536")
            .body(())
            .unwrap();
        client = client.ready().await.unwrap();
        let (response, mut stream) = client.send_request(req, true).unwrap();
        let response = tokio::time::timeout(LOG_DEADLINE, response)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(response.status(), 200);
        stream.send_reset(h2::Reason::CANCEL);
    }
    drop(client);
    conn.abort();

    s.wait_for_line("DEBUG", "cannot reserve capacity");

    s.assert_serving().await;
    s.assert_no_warnings();
}
