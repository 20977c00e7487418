//! `gateway_upstream_requests_total`: each backend attempt counted once, by what the
//! backend did, never by what the client or the gateway's own limits did.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::io::{Read, Write};
use std::time::Duration;

use e2e::{wait_until, Gateway, Hello};

const DEADLINE: Duration = Duration::from_secs(10);

/// The backend's attempts by outcome: success, connect_failure, error, cancelled (0
/// when the series is absent).
fn outcomes(gw: &Gateway, backend: std::net::SocketAddr) -> [f64; 4] {
    ["success", "connect_failure", "error", "cancelled"].map(|outcome| {
        gw.metric(&format!(
            "gateway_upstream_requests_total{{upstream=\"hello\",backend=\"{backend}\",outcome=\"{outcome}\"}}"
        ))
        .unwrap_or(0.0)
    })
}

/// Waits until the gateway has finished every request.
fn settled(gw: &Gateway) {
    wait_until(DEADLINE, "no request in flight", || {
        (gw.metric("gateway_requests_in_flight")? == 0.0).then_some(())
    });
}

#[test]
fn each_attempt_counts_once_by_what_the_backend_did() {
    let hello = Hello::spawn("h");
    let gw = Gateway::start(&format!(
        "[admin]\nlisten = \"127.0.0.1:{{{{port:admin}}}}\"\n[[listener]]\nname = \"http\"\nlisten = \"127.0.0.1:{{{{port:http}}}}\"\n[upstream.hello]\nservers = [\"{}\"]\nread_timeout = \"1s\"\nretries = 0\n[[route]]\nupstream = \"hello\"\nmax_body_size = \"1KiB\"\n",
        hello.addr
    ));
    let port = gw.port("http");
    let backend = hello.addr;

    // A request answered normally: one success, nothing else.
    assert_eq!(e2e::http_get(port, "/", "").0, 200);
    settled(&gw);
    assert_eq!(outcomes(&gw, backend), [1.0, 0.0, 0.0, 0.0]);

    // A client that leaves in the middle of a 64 MiB response: the backend answered.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /?size=67108864 HTTP/1.1\r\nHost: hello\r\n\r\n")
        .unwrap();
    let mut start = [0u8; 4096];
    s.read_exact(&mut start).unwrap();
    assert!(start.starts_with(b"HTTP/1.1 200"));
    drop(s);
    settled(&gw);
    assert_eq!(outcomes(&gw, backend), [2.0, 0.0, 0.0, 0.0]);

    // A chunked body cut off at the route's max_body_size (413) before hello, which
    // reads the whole body first, answered: not the backend's failure.
    let mut chunked =
        b"POST / HTTP/1.1\r\nHost: hello\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..4 {
        chunked.extend_from_slice(b"200\r\n");
        chunked.extend_from_slice(&[b'b'; 0x200]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let reply = e2e::exchange(
        port,
        e2e::Transport::Tcp,
        std::path::Path::new("/"),
        &chunked,
    );
    assert_eq!(reply.status, Some(413), "{}", reply.text);
    settled(&gw);
    assert_eq!(outcomes(&gw, backend), [2.0, 0.0, 0.0, 1.0]);

    // A client that leaves in the middle of its request body, before any answer: the
    // attempt was cancelled, not the backend's failure.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: hello\r\nContent-Length: 1000\r\n\r\npart")
        .unwrap();
    wait_until(DEADLINE, "the request in flight", || {
        (gw.metric("gateway_requests_in_flight")? >= 1.0).then_some(())
    });
    drop(s);
    settled(&gw);
    assert_eq!(outcomes(&gw, backend), [2.0, 0.0, 0.0, 2.0]);

    // A backend silent past read_timeout (1 s; hello answers after 30 s): its error, 504.
    let (status, _) = e2e::http_get(port, "/?delay_ms=30000", "");
    assert_eq!(status, 504);
    settled(&gw);
    assert_eq!(outcomes(&gw, backend), [2.0, 0.0, 1.0, 2.0]);

    // A backend that refuses connections: a connect failure.
    drop(hello);
    assert_eq!(e2e::http_get(port, "/", "").0, 502);
    settled(&gw);
    assert_eq!(outcomes(&gw, backend), [2.0, 1.0, 1.0, 2.0]);
}
