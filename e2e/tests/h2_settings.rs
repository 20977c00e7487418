//! The SETTINGS an HTTPS listener's HTTP/2 connections advertise: `max_header_size` as
//! SETTINGS_MAX_HEADER_LIST_SIZE and `h2_max_concurrent_streams`, read off the wire by a
//! client that speaks raw HTTP/2 frames, and following a reload for new connections.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use e2e::{wait_until, Certs, Gateway, Hello};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
const SETTINGS_MAX_HEADER_LIST_SIZE: u16 = 0x6;
const DEADLINE: Duration = Duration::from_secs(10);

/// Opens an HTTP/2 connection (TLS, ALPN h2) and returns the parameters of the server's
/// first SETTINGS frame, which RFC 9113 3.4 makes the first frame it sends.
async fn server_settings(addr: SocketAddr, ca: &Path) -> HashMap<u16, u32> {
    let config = e2e::tls_config(ca, &[b"h2"]);
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "ALPN");
    // The client preface: the magic string, then an empty SETTINGS frame.
    let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    preface.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
    tls.write_all(&preface).await.unwrap();
    let read = async {
        let mut head = [0u8; 9];
        tls.read_exact(&mut head).await.unwrap();
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        assert_eq!(
            (head[3], head[4] & 0x1),
            (0x4, 0),
            "a SETTINGS frame, not an ACK"
        );
        let mut payload = vec![0u8; len];
        tls.read_exact(&mut payload).await.unwrap();
        payload
    };
    let payload = tokio::time::timeout(DEADLINE, read)
        .await
        .expect("SETTINGS in time");
    payload
        .chunks_exact(6)
        .map(|p| {
            let id = u16::from_be_bytes([p[0], p[1]]);
            (id, u32::from_be_bytes([p[2], p[3], p[4], p[5]]))
        })
        .collect()
}

fn config(tls: &Path, hello: &Hello, max_header_size: &str, streams: u32) -> String {
    format!(
        "[admin]\nlisten = \"127.0.0.1:{{{{port:admin}}}}\"\n[[listener]]\nname = \"https\"\nlisten = \"127.0.0.1:{{{{port:https}}}}\"\ntls = {{ certs = [\"{}\"] }}\nmax_header_size = \"{max_header_size}\"\nh2_max_concurrent_streams = {streams}\n[upstream.hello]\nservers = [\"{}\"]\n[[route]]\nupstream = \"hello\"\n",
        tls.display(),
        hello.addr
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn h2_advertises_max_header_size_and_the_stream_limit_and_follows_reloads() {
    let hello = Hello::spawn("h");
    let certs = Certs::new();
    let tls = certs.server("tls", &["localhost"]);
    let gw = Gateway::start(&config(&tls, &hello, "16KiB", 7));
    let settings = server_settings(gw.addr("https"), &certs.ca()).await;
    assert_eq!(
        settings.get(&SETTINGS_MAX_HEADER_LIST_SIZE),
        Some(&16_384),
        "{settings:?}"
    );
    assert_eq!(
        settings.get(&SETTINGS_MAX_CONCURRENT_STREAMS),
        Some(&7),
        "{settings:?}"
    );

    // A reload changes what new connections advertise.
    let text = std::fs::read_to_string(gw.config_path()).unwrap();
    let text = text
        .replace("\"16KiB\"", "\"20KiB\"")
        .replace("= 7\n", "= 9\n");
    std::fs::write(gw.config_path(), text).unwrap();
    let success = "gateway_config_reloads_total{result=\"success\"}";
    tokio::task::block_in_place(|| {
        wait_until(DEADLINE, "the reload", || {
            (gw.metric(success)? >= 1.0).then_some(())
        })
    });
    let settings = server_settings(gw.addr("https"), &certs.ca()).await;
    assert_eq!(
        settings.get(&SETTINGS_MAX_HEADER_LIST_SIZE),
        Some(&20_480),
        "{settings:?}"
    );
    assert_eq!(
        settings.get(&SETTINGS_MAX_CONCURRENT_STREAMS),
        Some(&9),
        "{settings:?}"
    );
    assert!(!gw.log().contains("need a restart"), "{}", gw.log());
}
