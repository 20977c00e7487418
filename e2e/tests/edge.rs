//! The client-facing policy of a listener: WebSocket upgrades, hop-by-hop and
//! forwarded headers, HSTS, strict SNI, the connection limit and the timers.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::io::{Read, Write};
use std::time::Duration;

use e2e::{
    connect, exchange, read_reply, read_until_close, wait_until, web_and_https_config, websocket,
    Certs, Client, Gateway, Hello, Proto, Transport, WebSocket, READ_TIMEOUT, WS_STEP,
};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// A plain listener `web` and a TLS listener `https` (certificate for `localhost`),
/// each with `listener_extra` lines; routes: `/ws` with WebSocket upgrades, `/` without.
fn gateway(certs: &Certs, hello: &Hello, web_extra: &str, https_extra: &str) -> Gateway {
    let tls = certs.server("tls", &["localhost"]);
    let ws = "\n[[route]]\npath_prefix = \"/ws\"\nupstream = \"hello\"\nwebsocket = true\n";
    Gateway::start(&web_and_https_config(
        &tls,
        hello.addr,
        web_extra,
        https_extra,
        ws,
    ))
}

fn echoed_headers(port: u16, transport: Transport, certs: &Certs, headers: &str) -> String {
    let request = format!("GET /?echo_headers=1 HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n");
    let reply = exchange(port, transport, &certs.ca(), request.as_bytes());
    assert_eq!(reply.status, Some(200), "{}", reply.text);
    reply.text.split_once("\r\n\r\n").unwrap().1.to_lowercase()
}

/// The next message from `ws`, failing the test on an error, the end, or a stall.
async fn next(ws: &mut WebSocket) -> Message {
    tokio::time::timeout(WS_STEP, ws.next())
        .await
        .expect("a message in time")
        .expect("a message, not the end")
        .expect("a valid message")
}

/// Waits for the server to end the connection after the close handshake.
async fn ended(ws: &mut WebSocket) {
    let end = tokio::time::timeout(WS_STEP, ws.next())
        .await
        .expect("the end in time");
    assert!(end.is_none(), "expected the end, got {end:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_upgrades_only_on_routes_that_allow_them() {
    let certs = Certs::new();
    let hello = Hello::spawn("a");
    let gw = gateway(&certs, &hello, "", "");
    // Over 1 MiB (the route's default max_body_size) with the messages before it.
    let large: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    for (transport, port) in [
        (Transport::Tcp, gw.port("web")),
        (Transport::Tls, gw.port("https")),
    ] {
        // A real client: it checks the 101 and Sec-WebSocket-Accept, masks what it
        // sends and refuses masked or malformed frames from the server.
        let (mut ws, response) = websocket(port, transport, &certs.ca(), "/ws")
            .await
            .unwrap();
        assert_eq!(response.status(), 101, "{transport:?}");
        for message in [
            Message::text("hello"),
            Message::binary(vec![0u8, 1, 2, 0xff]),
            Message::text("grüße ✓"),
            Message::binary(large.clone()),
        ] {
            ws.send(message.clone()).await.unwrap();
            assert_eq!(next(&mut ws).await, message, "{transport:?}");
        }
        ws.send(Message::Ping("p1".into())).await.unwrap();
        assert_eq!(
            next(&mut ws).await,
            Message::Pong("p1".into()),
            "{transport:?}"
        );

        // The client closes: the server's close comes back, then the connection ends.
        let bye = CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        };
        ws.close(Some(bye.clone())).await.unwrap();
        assert_eq!(
            next(&mut ws).await,
            Message::Close(Some(bye)),
            "{transport:?}"
        );
        ended(&mut ws).await;

        // The server closes: the client's answer reaches it through the gateway (hello
        // waits for it before ending the connection).
        let (mut ws, _) = websocket(port, transport, &certs.ca(), "/ws")
            .await
            .unwrap();
        ws.send(Message::text("close")).await.unwrap();
        let goodbye = CloseFrame {
            code: CloseCode::Normal,
            reason: "goodbye".into(),
        };
        assert_eq!(
            next(&mut ws).await,
            Message::Close(Some(goodbye)),
            "{transport:?}"
        );
        ended(&mut ws).await;

        // The same request on a route without `websocket = true` is an ordinary
        // request: the backend sees neither Upgrade nor Connection.
        let seen = echoed_headers(
            port,
            transport,
            &certs,
            "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
        );
        assert!(
            !seen.contains("upgrade:") && !seen.contains("connection:"),
            "{seen}"
        );
    }
}

#[test]
fn hop_by_hop_headers_never_reach_the_backend() {
    let certs = Certs::new();
    let hello = Hello::spawn("a");
    let gw = gateway(&certs, &hello, "", "");
    let seen = echoed_headers(
        gw.port("web"),
        Transport::Tcp,
        &certs,
        "Connection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-T\r\nProxy-Connection: keep-alive\r\nX-Kept: 1\r\n",
    );
    for name in [
        "x-secret",
        "keep-alive",
        "te:",
        "trailer",
        "proxy-connection",
    ] {
        assert!(!seen.contains(name), "{name} reached the backend:\n{seen}");
    }
    assert!(seen.contains("x-kept: 1"), "{seen}");
}

/// A backend that answers every request on a connection with hop-by-hop response
/// headers (`Connection` naming `X-Internal`, `Keep-Alive`, `Proxy-Connection`, `TE`,
/// `Trailer`, `Upgrade`) beside end-to-end ones; serves until the test process ends.
fn hop_by_hop_backend() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while conn.read(&mut byte).is_ok_and(|n| n == 1) {
                    head.push(byte[0]);
                    if head.ends_with(b"\r\n\r\n") {
                        head.clear();
                        let answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive, X-Internal\r\nX-Internal: secret\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-T\r\nUpgrade: h2c\r\nX-Kept: 1\r\n\r\nok";
                        if conn.write_all(answer.as_bytes()).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn hop_by_hop_headers_never_reach_the_client() {
    let certs = Certs::new();
    let tls = certs.server("tls", &["localhost"]);
    let backend = hop_by_hop_backend();
    let gw = Gateway::start(&web_and_https_config(&tls, backend, "", "", ""));
    let hop = [
        "x-internal",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    ];
    let port = gw.port("web");
    let ca = certs.ca();
    let reply = tokio::task::spawn_blocking(move || {
        exchange(
            port,
            Transport::Tcp,
            &ca,
            b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        )
    })
    .await
    .unwrap();
    assert_eq!(reply.status, Some(200), "{}", reply.text);
    assert_eq!(reply.header("x-kept"), Some("1"), "{}", reply.text);
    for name in hop {
        assert_eq!(
            reply.header(name),
            None,
            "{name} reached the client:\n{}",
            reply.text
        );
    }
    // The gateway's own Connection header says nothing the backend asked for.
    let connection = reply.header("connection").unwrap_or("").to_lowercase();
    assert!(!connection.contains("x-internal"), "{}", reply.text);
    for proto in [Proto::H1, Proto::H2] {
        let resp = Client::new(&certs.ca())
            .get(gw.addr("https"), "localhost", "/", proto)
            .await;
        assert_eq!(
            (resp.status, resp.text().as_str()),
            (200, "ok"),
            "{proto:?}"
        );
        assert_eq!(resp.header("x-kept"), "1", "{proto:?}");
        // HTTP/2 has no Connection header at all; HTTP/1.1 may carry the gateway's own.
        let mut absent = hop.to_vec();
        if proto == Proto::H2 {
            absent.push("connection");
        }
        for name in absent {
            assert!(resp.headers.get(name).is_none(), "{proto:?}: {name}");
        }
        let connection = resp.header("connection").to_lowercase();
        assert!(!connection.contains("x-internal"), "{proto:?}");
    }
}

#[test]
fn forwarded_headers_are_replaced_unless_the_peer_is_trusted() {
    let certs = Certs::new();
    let hello = Hello::spawn("a");
    let gw = gateway(
        &certs,
        &hello,
        r#"trusted_proxies = ["127.0.0.0/8"]"#,
        r#"trusted_proxies = ["10.0.0.0/8", "fd00::/8"]"#,
    );
    let spoofed = "X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Port: 1\r\nForwarded: for=203.0.113.9\r\n";

    // The TLS listener does not trust 127.0.0.1: the client's claims are replaced.
    let untrusted = echoed_headers(gw.port("https"), Transport::Tls, &certs, spoofed);
    assert!(
        untrusted.contains("x-forwarded-for: 127.0.0.1\n"),
        "{untrusted}"
    );
    assert!(
        untrusted.contains("x-forwarded-proto: https\n"),
        "{untrusted}"
    );
    assert!(
        untrusted.contains("x-forwarded-host: localhost\n"),
        "{untrusted}"
    );
    assert!(!untrusted.contains("203.0.113.9"), "{untrusted}");
    assert!(!untrusted.contains("x-forwarded-port"), "{untrusted}");

    // The plain listener trusts loopback: its chain is kept and the peer appended.
    let trusted = echoed_headers(gw.port("web"), Transport::Tcp, &certs, spoofed);
    assert!(
        trusted.contains("x-forwarded-for: 203.0.113.9, 127.0.0.1\n"),
        "{trusted}"
    );
    assert!(trusted.contains("x-forwarded-proto: http\n"), "{trusted}");
    assert!(
        trusted.contains("forwarded: for=203.0.113.9\n"),
        "{trusted}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hsts_on_https_responses_and_strict_sni_answers_421() {
    let certs = Certs::new();
    let hello = Hello::spawn("a");
    let hsts = "max-age=31536000; includeSubDomains";
    let gw = gateway(
        &certs,
        &hello,
        "",
        &format!("hsts = \"{hsts}\"\nstrict_sni = true"),
    );
    let client = Client::new(&certs.ca());
    for proto in [Proto::H1, Proto::H2] {
        let mut conn = client
            .connect(gw.addr("https"), Some("localhost"), proto)
            .await
            .unwrap();
        let ok = conn.get("/").await.unwrap();
        assert_eq!(ok.status, 200, "{proto:?}");
        assert_eq!(ok.header("strict-transport-security"), hsts, "{proto:?}");
        // Same connection (certificate for localhost), another host: misdirected.
        let other = conn.get_with_host("/", "other.test").await.unwrap();
        assert_eq!(other.status, 421, "{proto:?}: {}", other.text());
        assert_eq!(
            other.text(),
            r#"{"error":"misdirected request"}"#,
            "{proto:?}"
        );
        assert_eq!(other.header("strict-transport-security"), hsts, "{proto:?}");
    }
    // Plain HTTP never carries HSTS; it has no strict_sni either.
    let reply = exchange(
        gw.port("web"),
        Transport::Tcp,
        &certs.ca(),
        b"GET / HTTP/1.1\r\nHost: other.test\r\n\r\n",
    );
    assert_eq!(reply.status, Some(200));
    assert_eq!(reply.header("strict-transport-security"), None);
}

/// How many connections wait in the accept queue of the socket listening on
/// 127.0.0.1:`port` (`/proc/net/tcp`'s rx_queue of a LISTEN socket).
fn accept_queue(port: u16) -> Option<usize> {
    let local = format!("0100007F:{port:04X}");
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        const LISTEN: &str = "0A";
        if fields.get(1) != Some(&local.as_str()) || fields.get(3) != Some(&LISTEN) {
            return None;
        }
        let (_, rx) = fields.get(4)?.split_once(':')?;
        usize::from_str_radix(rx, 16).ok()
    })
}

/// Sends a TLS ClientHello for `localhost` on a new connection to `port` and reads
/// until the gateway closes it: what it answered (nothing, when it did no TLS work).
fn client_hello_answer(port: u16, certs: &Certs) -> Vec<u8> {
    let config = e2e::tls_config(&certs.ca(), &[b"http/1.1"]);
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let mut hello = Vec::new();
    tls.write_tls(&mut hello).unwrap();
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    // Closed at once, the connection may refuse the write: nothing was answered either way.
    let _ = tcp.write_all(&hello);
    read_until_close(&mut tcp)
}

#[test]
fn connections_over_max_connections_are_closed_and_counted() {
    let certs = Certs::new();
    let hello = Hello::spawn("a");
    let limit = "max_connections = 2";
    let gw = gateway(&certs, &hello, limit, limit);
    for (listener, transport) in [("web", Transport::Tcp), ("https", Transport::Tls)] {
        let port = gw.port(listener);
        // The harness's and the readiness probe's connections were connections too: their
        // slots are free once the gateway has accepted them and seen them close (later
        // than the start returns on a loaded machine): none waits in the listening
        // socket's accept queue, and none is counted open.
        let active = format!("gateway_connections_active{{listener=\"{listener}\"}}");
        wait_until(
            Duration::from_secs(10),
            "the probe connections closed",
            || (accept_queue(port) == Some(0) && gw.metric(&active) == Some(0.0)).then_some(()),
        );
        let get = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
        let dropped = format!(
            "gateway_connections_dropped_total{{listener=\"{listener}\",reason=\"max_connections\"}}"
        );
        // Two connections held open, each after a request. A probe connection accepted
        // but not yet seen closed can still hold a slot a moment (its task not run yet
        // on a loaded machine): a connection refused then is tried again, a few times.
        let mut held = Vec::new();
        let mut refused = 0;
        while held.len() < 2 {
            let mut wire = connect(port, transport, &certs.ca());
            let _ = wire.write_all(get);
            match read_reply(&mut *wire).status {
                Some(200) => held.push(wire),
                None if refused < 5 => refused += 1,
                other => panic!("{listener}: {other:?} with {} held", held.len()),
            }
        }
        let before = gw.metric(&dropped).unwrap_or(0.0);
        // A third is closed without an answer; on the TLS listener, before any TLS work:
        // no ServerHello, not even an alert.
        match transport {
            Transport::Tcp => {
                let reply = exchange(port, transport, &certs.ca(), get);
                assert_eq!(reply.status, None, "{}", reply.text);
            }
            Transport::Tls => {
                let answer = client_hello_answer(port, &certs);
                assert!(answer.is_empty(), "the gateway answered {answer:02x?}");
            }
        }
        assert_eq!(gw.metric(&dropped), Some(before + 1.0), "{listener}");
        // Once one closes, new connections are served again.
        held.pop();
        wait_until(Duration::from_secs(10), "a free connection slot", || {
            (exchange(port, transport, &certs.ca(), get).status == Some(200)).then_some(())
        });
    }
}

#[test]
fn idle_keepalive_and_stalled_handshakes_are_closed() {
    let certs = Certs::new();
    let hello = Hello::spawn("a");
    let gw = gateway(
        &certs,
        &hello,
        r#"keepalive_timeout = "1s""#,
        "keepalive_timeout = \"1s\"\ntls_handshake_timeout = \"1s\"",
    );
    // An idle keep-alive connection is closed by the gateway after its response (the
    // default keepalive_timeout, 60 s, would outlast the read timeout and fail this).
    let mut wire = connect(gw.port("web"), Transport::Tcp, &certs.ca());
    wire.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    assert_eq!(read_reply(&mut *wire).status, Some(200));
    assert!(read_until_close(&mut *wire).is_empty());

    // An HTTP/2 connection with no open stream is closed too.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (mut send, conn) = e2e::h2_connect(gw.addr("https"), &certs.ca()).await;
        let req = http::Request::get("https://localhost/").body(()).unwrap();
        let (response, _) = send.send_request(req, true).unwrap();
        assert_eq!(response.await.unwrap().status(), 200);
        // Ends once the gateway closes it; a timeout here fails the test.
        tokio::time::timeout(READ_TIMEOUT, conn)
            .await
            .expect("the idle HTTP/2 connection is closed")
            .unwrap()
            .ok();
    });

    // A TLS connection that never says hello is closed and counted.
    let mut tcp = std::net::TcpStream::connect(gw.addr("https")).unwrap();
    tcp.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    assert!(read_until_close(&mut tcp).is_empty());
    let timeouts =
        r#"gateway_connections_dropped_total{listener="https",reason="tls_handshake_timeout"}"#;
    // Counted just after the close the client saw.
    wait_until(
        Duration::from_secs(10),
        "the handshake timeout counted",
        || (gw.metric(timeouts) == Some(1.0)).then_some(()),
    );
}

#[test]
fn bodies_over_the_route_limit_get_413_while_streaming() {
    let certs = Certs::new();
    let hello = Hello::spawn("a");
    let gw = gateway(&certs, &hello, "", "");
    let mut chunked =
        b"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..4 {
        chunked.extend_from_slice(b"200\r\n");
        chunked.extend_from_slice(&[b'b'; 0x200]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let reply = exchange(gw.port("web"), Transport::Tcp, &certs.ca(), &chunked);
    assert_eq!(reply.status, Some(413), "{}", reply.text);
    // Under the limit, the same framing is served: the backend reads the whole body.
    let small = b"POST /?echo_body=1 HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let reply = exchange(gw.port("web"), Transport::Tcp, &certs.ca(), small);
    assert_eq!(reply.status, Some(200), "{}", reply.text);
    assert_eq!(reply.text.split_once("\r\n\r\n").unwrap().1, "hello world");
}

#[test]
fn listener_policy_changes_apply_on_reload() {
    let certs = Certs::new();
    let hello = Hello::spawn("a");
    let gw = gateway(&certs, &hello, "", "");
    let get = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let https = |gw: &Gateway| exchange(gw.port("https"), Transport::Tls, &certs.ca(), get);
    assert_eq!(https(&gw).header("strict-transport-security"), None);
    // The rendered config, with HSTS and a tiny head limit added to the TLS listener.
    let text = std::fs::read_to_string(gw.config_path()).unwrap();
    let changed = text.replacen(
        "tls = {",
        "hsts = \"max-age=60\"\nmax_header_size = \"1KiB\"\ntls = {",
        1,
    );
    assert_ne!(text, changed);
    std::fs::write(gw.config_path(), changed).unwrap();
    gw.signal("HUP");
    wait_until(Duration::from_secs(10), "HSTS after the reload", || {
        (https(&gw).header("strict-transport-security") == Some("max-age=60")).then_some(())
    });
    let big = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "a".repeat(2048)
    );
    let reply = exchange(
        gw.port("https"),
        Transport::Tls,
        &certs.ca(),
        big.as_bytes(),
    );
    assert_eq!(reply.status, Some(431));
}

#[test]
fn header_timeout_counts_from_the_connection_start_tls_handshake_included() {
    let certs = Certs::new();
    let hello = Hello::spawn("a");
    let header_timeout = Duration::from_secs(6);
    let gw = gateway(
        &certs,
        &hello,
        "",
        r#"header_timeout = "6s"
tls_handshake_timeout = "60s""#,
    );
    let connected = std::time::Instant::now();
    let tcp = std::net::TcpStream::connect(gw.addr("https")).unwrap();
    // A safety net against a hung test: running into it fails the test below.
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // The slow client: its TLS handshake starts 5 s into the connection (well within
    // tls_handshake_timeout), then it sends part of a request head and stalls.
    std::thread::sleep(Duration::from_secs(5));
    let config = e2e::tls_config(&certs.ca(), &[b"http/1.1"]);
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    // The head may be cut off already (a loaded machine): a failed write is a close too.
    let _ = tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n");
    let mut rest = Vec::new();
    let end = tls.read_to_end(&mut rest);
    let closed = connected.elapsed();
    if let Err(e) = &end {
        assert!(
            !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "the connection was not closed in 30 s"
        );
    }
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    // Counted from the connection's start: closed at 6 s. Counted from the handshake's
    // end, it would be 11 s at the earliest.
    assert!(
        closed >= header_timeout && closed < Duration::from_secs(10),
        "closed {closed:?} after the connection's start"
    );
    let dropped = r#"gateway_connections_dropped_total{listener="https",reason="header_timeout"}"#;
    wait_until(
        Duration::from_secs(10),
        "the header timeout counted",
        || (gw.metric(dropped) == Some(1.0)).then_some(()),
    );
}
