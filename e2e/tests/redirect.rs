//! The plain HTTP listener's 308 to HTTPS.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::io::{Read, Write};
use std::net::TcpStream;

use e2e::Gateway;

/// Sends `request` on a new connection and returns the status and Location.
fn send(port: u16, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    // A safety net against a hung test: a read that times out fails it.
    stream.set_read_timeout(Some(e2e::READ_TIMEOUT)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "closed before the response head: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&got).into_owned();
    let status = head[9..12].parse().unwrap();
    let location = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("location")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    (status, location)
}

fn redirecting_gateway(redirect_port: Option<u16>) -> Gateway {
    let port_line = redirect_port.map_or(String::new(), |p| format!("redirect_port = {p}"));
    Gateway::start(&format!(
        r#"
[[listener]]
name = "http"
listen = "127.0.0.1:{{{{port:http}}}}"
redirect_to_https = true
{port_line}

[upstream.hello]
servers = ["127.0.0.1:9"]

[[route]]
upstream = "hello"
"#
    ))
}

#[test]
fn redirect_keeps_path_and_query_and_never_leaks_the_listen_port() {
    let gw = redirecting_gateway(None);
    let port = gw.port("http");
    let (status, location) = send(
        port,
        &format!("GET /a/b?c=d&e=%20f HTTP/1.1\r\nHost: example.com:{port}\r\n\r\n"),
    );
    assert_eq!(status, 308);
    assert_eq!(location, "https://example.com/a/b?c=d&e=%20f");

    let (status, location) = send(port, "GET / HTTP/1.1\r\nHost: Shop.Example.com\r\n\r\n");
    assert_eq!(status, 308);
    assert_eq!(location, "https://Shop.Example.com/");

    let (status, location) = send(port, "GET /x HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n");
    assert_eq!((status, location.as_str()), (308, "https://[::1]/x"));
}

#[test]
fn redirect_port_is_put_in_the_url() {
    let gw = redirecting_gateway(Some(8443));
    let port = gw.port("http");
    let (status, location) = send(
        port,
        &format!("GET /p?q=1 HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n"),
    );
    assert_eq!(status, 308);
    assert_eq!(location, "https://localhost:8443/p?q=1");
}

#[test]
fn request_without_host_gets_400() {
    let gw = redirecting_gateway(None);
    let (status, location) = send(gw.port("http"), "GET / HTTP/1.0\r\n\r\n");
    assert_eq!(status, 400);
    assert_eq!(location, "");
}
