//! The tutorial's path: client -> gateway (verified TLS) -> three hello replicas.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::collections::HashMap;

use bytes::Bytes;
use e2e::{Certs, Client, Gateway, Hello, Proto};
use http_body_util::{Full, StreamBody};
use hyper::body::Frame;

/// A gateway with an HTTPS listener for `localhost` in front of `replicas`,
/// plus an upstream whose only server refuses connections, routed at `/dead`.
fn gateway(certs: &Certs, replicas: &[&Hello]) -> Gateway {
    let tls = certs.server("tls", &["localhost"]);
    let servers: Vec<String> = replicas.iter().map(|h| format!("\"{}\"", h.addr)).collect();
    // A port that was free a moment ago: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    Gateway::start(&format!(
        r#"
[[listener]]
name = "https"
listen = "127.0.0.1:{{{{port:https}}}}"
tls = {{ certs = ["{tls}"] }}

[upstream.hello]
servers = [{servers}]

[upstream.dead]
servers = ["{closed}"]

[[route]]
path_prefix = "/"
upstream = "hello"

[[route]]
path_prefix = "/dead"
upstream = "dead"

[[route]]
host = "api.test"
path_prefix = "/v1"
upstream = "hello"
"#,
        tls = tls.display(),
        servers = servers.join(", "),
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn hello_over_verified_tls_on_http1_and_http2() {
    let certs = Certs::new();
    let a = Hello::spawn("a");
    let gw = gateway(&certs, &[&a]);
    let client = Client::new(&certs.ca());
    for (proto, version) in [
        (Proto::H1, http::Version::HTTP_11),
        (Proto::H2, http::Version::HTTP_2),
    ] {
        let resp = client.get(gw.addr("https"), "localhost", "/", proto).await;
        assert_eq!(resp.status, 200, "{proto:?}");
        assert_eq!(resp.version, version);
        assert_eq!(resp.text(), r#"{"message":"Hello"}"#);
        assert_eq!(resp.header("content-type"), "application/json");
        assert_eq!(resp.header("x-hello-instance"), "a");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn thirty_requests_reach_three_replicas_in_round_robin_order() {
    let certs = Certs::new();
    let replicas = [Hello::spawn("a"), Hello::spawn("b"), Hello::spawn("c")];
    let gw = gateway(&certs, &replicas.iter().collect::<Vec<_>>());
    let client = Client::new(&certs.ca());
    let mut conn = client
        .connect(gw.addr("https"), Some("localhost"), Proto::H1)
        .await
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..30 {
        let resp = conn.get("/").await.unwrap();
        assert_eq!(resp.status, 200);
        seen.push(resp.header("x-hello-instance").to_owned());
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for name in &seen {
        *counts.entry(name).or_default() += 1;
    }
    assert_eq!(counts.len(), 3, "{seen:?}");
    assert!(counts.values().all(|&n| n == 10), "{counts:?}");
    // Round-robin: each window of three consecutive requests visits every replica.
    for window in seen.chunks(3) {
        let mut w = window.to_vec();
        w.sort();
        assert_eq!(w, ["a", "b", "c"], "{seen:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_connections_are_pooled_and_reused() {
    let certs = Certs::new();
    let a = Hello::spawn("a");
    let gw = gateway(&certs, &[&a]);
    let client = Client::new(&certs.ca());
    let mut upstream_connections = std::collections::HashSet::new();
    // New client connections each time: only the gateway's upstream pool can reuse.
    for _ in 0..20 {
        let resp = client
            .get(gw.addr("https"), "localhost", "/", Proto::H1)
            .await;
        assert_eq!(resp.status, 200);
        upstream_connections.insert(resp.header("x-hello-connection").to_owned());
    }
    assert!(
        upstream_connections.len() <= 2,
        "20 requests used {} upstream connections",
        upstream_connections.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_route_is_404_and_unreachable_upstream_is_502_with_json_bodies() {
    let certs = Certs::new();
    let a = Hello::spawn("a");
    // Routes only for api.test/v1 and the catch-all; an unknown host with the
    // catch-all removed is exercised through the host-specific route below.
    let gw = gateway(&certs, &[&a]);
    let client = Client::new(&certs.ca());
    for proto in [Proto::H1, Proto::H2] {
        let mut conn = client
            .connect(gw.addr("https"), Some("localhost"), proto)
            .await
            .unwrap();
        let resp = conn.get("/dead/x").await.unwrap();
        assert_eq!(resp.status, 502, "{proto:?}");
        assert_eq!(resp.header("content-type"), "application/json");
        assert_eq!(resp.text(), r#"{"error":"bad gateway"}"#);
    }

    let tls = certs.path("tls");
    let only_api = Gateway::start(&e2e::https_config(
        &[&tls],
        &[a.addr],
        "host = \"api.test\"\npath_prefix = \"/v1\"",
    ));
    let mut conn = client
        .connect(only_api.addr("https"), Some("localhost"), Proto::H1)
        .await
        .unwrap();
    let resp = conn.get("/v1").await.unwrap();
    assert_eq!(resp.status, 404);
    assert_eq!(resp.header("content-type"), "application/json");
    assert_eq!(resp.text(), r#"{"error":"no route"}"#);
    let resp = conn.get_with_host("/v1/x", "API.test").await.unwrap();
    assert_eq!(resp.status, 200, "host match ignores case");
    let resp = conn.get_with_host("/v2", "api.test").await.unwrap();
    assert_eq!(resp.status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_sees_client_host_and_forwarded_headers() {
    let certs = Certs::new();
    let a = Hello::spawn("a");
    let gw = gateway(&certs, &[&a]);
    let client = Client::new(&certs.ca());
    for proto in [Proto::H1, Proto::H2] {
        let mut conn = client
            .connect(gw.addr("https"), Some("localhost"), proto)
            .await
            .unwrap();
        let host = format!("localhost:{}", gw.port("https"));
        let resp = conn.get_with_host("/?echo_headers=1", &host).await.unwrap();
        assert_eq!(resp.status, 200);
        let seen = resp.text();
        let header = |name: &str| {
            seen.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                .map(str::to_owned)
        };
        assert_eq!(
            header("host").as_deref(),
            Some(host.as_str()),
            "{proto:?}: {seen}"
        );
        assert_eq!(
            header("x-forwarded-for").as_deref(),
            Some("127.0.0.1"),
            "{seen}"
        );
        assert_eq!(
            header("x-forwarded-proto").as_deref(),
            Some("https"),
            "{seen}"
        );
        assert_eq!(
            header("x-forwarded-host").as_deref(),
            Some(host.as_str()),
            "{seen}"
        );
    }
}

/// POSTs `body` to `path` on a new connection over `proto`: as two DATA frames without
/// a length (`streamed`, HTTP/2 only), or with its Content-Length. The response text.
async fn post(
    client: &Client,
    gw: &Gateway,
    proto: Proto,
    path: &str,
    body: [&'static [u8]; 2],
    streamed: bool,
) -> String {
    let mut conn = client
        .connect(gw.addr("https"), Some("localhost"), proto)
        .await
        .unwrap();
    let req = match proto {
        Proto::H1 => http::Request::post(path).header(http::header::HOST, "localhost"),
        Proto::H2 => {
            http::Request::post(format!("https://localhost{path}")).version(http::Version::HTTP_2)
        }
    };
    let resp = if streamed {
        let frames = futures_util::stream::iter(body.map(|c| Ok(Frame::data(Bytes::from(c)))));
        conn.send(req.body(StreamBody::new(frames)).unwrap()).await
    } else {
        let whole = Bytes::from([body[0], body[1]].concat());
        conn.send(req.body(Full::new(whole)).unwrap()).await
    }
    .unwrap();
    assert_eq!(resp.status, 200, "{proto:?} {path}");
    resp.text()
}

#[tokio::test(flavor = "multi_thread")]
async fn request_bodies_reach_the_backend_framed_on_http1_and_http2() {
    let certs = Certs::new();
    let a = Hello::spawn("a");
    let gw = gateway(&certs, &[&a]);
    let client = Client::new(&certs.ca());
    let body: [&[u8]; 2] = [b"hello ", b"world"];
    // Two DATA frames and no length: HTTP/2 needs no Content-Length, HTTP/1.1 does (or
    // chunked), so the gateway sends this one chunked. hello reads the whole body
    // before answering, and echoes it with `echo_body`.
    let seen = post(&client, &gw, Proto::H2, "/?echo_headers=1", body, true).await;
    assert!(seen.contains("transfer-encoding: chunked\n"), "{seen}");
    assert!(!seen.contains("content-length"), "{seen}");
    let received = post(&client, &gw, Proto::H2, "/?echo_body=1", body, true).await;
    assert_eq!(received, "hello world");
    // With a length, on either protocol, the length goes up as it came, and the body.
    for proto in [Proto::H1, Proto::H2] {
        let seen = post(&client, &gw, proto, "/?echo_headers=1", body, false).await;
        assert!(seen.contains("content-length: 11\n"), "{proto:?}: {seen}");
        assert!(!seen.contains("transfer-encoding"), "{proto:?}: {seen}");
        let received = post(&client, &gw, proto, "/?echo_body=1", body, false).await;
        assert_eq!(received, "hello world", "{proto:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn access_log_has_one_line_per_request_and_no_error_for_client_disconnects() {
    let certs = Certs::new();
    let a = Hello::spawn("a");
    let gw = gateway(&certs, &[&a]);
    let client = Client::new(&certs.ca());
    // A client that completes TLS and leaves without a request, then one that sends
    // a request and hangs up before reading the answer.
    drop(
        client
            .connect(gw.addr("https"), Some("localhost"), Proto::H2)
            .await
            .unwrap(),
    );
    {
        use tokio::io::AsyncWriteExt;
        let mut raw = tokio::net::TcpStream::connect(gw.addr("https"))
            .await
            .unwrap();
        raw.write_all(b"\x16\x03\x01\x00\x05garbage").await.unwrap();
    }
    // A client that sends a request and hangs up before the answer.
    let mut impatient = client
        .connect(gw.addr("https"), Some("localhost"), Proto::H1)
        .await
        .unwrap();
    // The client gives up after 1 s (time to send its request on a loaded machine);
    // hello answers after 3 s.
    let cut = std::time::Duration::from_secs(1);
    let hung_up = tokio::time::timeout(cut, impatient.get("/?delay_ms=3000")).await;
    assert!(hung_up.is_err(), "the request was cut short");
    drop(impatient);
    let resp = client
        .get(gw.addr("https"), "localhost", "/a/path?q=1", Proto::H1)
        .await;
    assert_eq!(resp.status, 200);
    let line = e2e::wait_until(std::time::Duration::from_secs(5), "access log line", || {
        gw.log()
            .lines()
            .find(|l| l.contains("path=\"/a/path\""))
            .map(str::to_owned)
    });
    for field in [
        "method=GET",
        "status=200",
        &format!("upstream={}", a.addr),
        "duration_ms=",
    ] {
        assert!(line.contains(field), "{field} missing in {line}");
    }
    assert!(line.contains("host=\"localhost\""), "{line}");
    // The hung-up request is over once its access line is written (after hello's 3 s).
    e2e::wait_until(
        std::time::Duration::from_secs(30),
        "the hung-up request ended",
        || gw.log().contains("path=\"/\"").then_some(()),
    );
    // A last request, whose line comes after the others: then count them. The two
    // connections that sent no request have none; each request has exactly one.
    let marker = client
        .get(gw.addr("https"), "localhost", "/marker", Proto::H2)
        .await;
    assert_eq!(marker.status, 200);
    e2e::wait_until(
        std::time::Duration::from_secs(5),
        "the marker's access line",
        || gw.log().contains("path=\"/marker\"").then_some(()),
    );
    let log = gw.log();
    let access: Vec<&str> = log.lines().filter(|l| l.contains(" access: ")).collect();
    let count = |path: &str| access.iter().filter(|l| l.contains(path)).count();
    assert_eq!(count("path=\"/a/path\""), 1, "{log}");
    assert_eq!(count("path=\"/\""), 1, "{log}");
    assert_eq!(access.len(), 3, "one access line per request:\n{log}");
    // What these clients did is logged at DEBUG at most, never WARN or ERROR.
    let loud: Vec<&str> = log
        .lines()
        .filter(|l| matches!(l.split_whitespace().nth(1), Some("WARN" | "ERROR")))
        .collect();
    assert!(
        loud.is_empty(),
        "client behaviour logged loudly:\n{loud:#?}"
    );
}
