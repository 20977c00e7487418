//! gRPC through the gateway: tonic's client over TLS to the gateway, the `greeter`
//! (tonic) behind it on h2c and on TLS with mTLS. The four call kinds, trailers (status,
//! message, custom metadata), a 16 MiB message each way, a client cancelling a stream,
//! `grpc-timeout` enforced by the gateway itself, and its own failures as gRPC statuses.

use std::time::{Duration, Instant};

use bytes::Bytes;
use e2e::grpc::{hello, HelloRequest, DETAIL_TRAILER};
use e2e::{grpc_gateway, h2_connect, servers, wait_until, Certs, Greeter, GreeterClient, Hello};
use futures_util::stream;
use tonic::Code;

const SIXTEEN_MIB: usize = 16 << 20;

fn any_port() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().expect("literal address")
}

async fn client(gw: &e2e::Gateway, certs: &Certs) -> GreeterClient {
    GreeterClient::tls(gw.addr("https"), &certs.ca(), "localhost")
        .await
        .expect("connect to the gateway")
}

#[tokio::test]
async fn every_call_kind_passes_to_an_h2c_backend() {
    let greeter = Greeter::spawn("plain");
    let certs = Certs::new();
    let gw = e2e::h2c_gateway(&certs, &[&greeter], "");
    let mut client = client(&gw, &certs).await;
    e2e::every_call_kind(&mut client, "plain").await;
    assert_eq!(greeter.stats().0, 4);
}

#[tokio::test]
async fn every_call_kind_passes_to_a_tls_backend_that_requires_a_client_certificate() {
    let certs = Certs::new();
    let backend = certs.server("greeter", &["greeter.internal"]);
    let ca = certs.ca();
    let flags = [
        "--tls-dir",
        backend.to_str().expect("utf-8"),
        "--client-ca",
        ca.to_str().expect("utf-8"),
    ];
    let greeter = Greeter::spawn_with("secure", any_port(), &flags);
    let ca_dir = ca.parent().expect("ca dir").display().to_string();
    let identity = certs.client("gateway", "frontend");
    let upstream = format!(
        "{}\nprotocol = \"h2\"\ntls = {{ ca = \"{ca_dir}\", server_name = \"greeter.internal\", client_cert = \"{}\" }}",
        servers(&[&greeter]),
        identity.display()
    );
    let gw = grpc_gateway(&certs, &upstream, "");
    let mut client = client(&gw, &certs).await;
    e2e::every_call_kind(&mut client, "secure").await;

    // Without the client certificate the backend refuses the handshake: UNAVAILABLE.
    let anonymous = format!(
        "{}\nprotocol = \"h2\"\nretries = 0\ntls = {{ ca = \"{ca_dir}\", server_name = \"greeter.internal\" }}",
        servers(&[&greeter])
    );
    let gw = grpc_gateway(&certs, &anonymous, "");
    let status = client_for(&gw, &certs)
        .await
        .say_hello(hello("x"))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
}

async fn client_for(gw: &e2e::Gateway, certs: &Certs) -> GreeterClient {
    client(gw, certs).await
}

#[tokio::test]
async fn statuses_messages_and_custom_trailers_pass_through() {
    let greeter = Greeter::spawn("g");
    let certs = Certs::new();
    let gw = e2e::h2c_gateway(&certs, &[&greeter], "");
    let mut client = client(&gw, &certs).await;
    let status = client
        .say_hello(HelloRequest {
            status: 9,
            ..hello("x")
        })
        .await
        .expect_err("asked for FAILED_PRECONDITION");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(status.message(), "asked for status 9");
    let detail = status
        .metadata()
        .get(DETAIL_TRAILER)
        .map(|v| v.to_str().unwrap_or(""));
    assert_eq!(detail, Some("why"));
    // After two replies of a stream, in trailers after DATA frames.
    let request = HelloRequest {
        count: 2,
        status: 5,
        ..hello("y")
    };
    let mut replies = client
        .stream_hellos(request)
        .await
        .expect("StreamHellos")
        .into_inner();
    assert!(replies.message().await.expect("first").is_some());
    assert!(replies.message().await.expect("second").is_some());
    let status = replies.message().await.expect_err("NOT_FOUND at the end");
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(
        status
            .metadata()
            .get(DETAIL_TRAILER)
            .map(|v| v.to_str().unwrap_or("")),
        Some("why")
    );
}

#[tokio::test]
async fn sixteen_mib_messages_stream_both_ways() {
    let greeter = Greeter::spawn("big");
    let certs = Certs::new();
    // A call's messages together count against the route's max_body_size (1 MiB by
    // default).
    let gw = e2e::h2c_gateway(&certs, &[&greeter], "max_body_size = \"64MiB\"");
    let mut client = client(&gw, &certs).await;
    let reply = client
        .say_hello(HelloRequest {
            payload: vec![7; SIXTEEN_MIB],
            reply_size: SIXTEEN_MIB as u32,
            ..hello("z")
        })
        .await
        .expect("a 16 MiB call")
        .into_inner();
    assert_eq!(reply.payload.len(), SIXTEEN_MIB);
    let requests = (0..2).map(|_| HelloRequest {
        payload: vec![1; SIXTEEN_MIB],
        ..hello("z")
    });
    let reply = client
        .collect_hellos(stream::iter(requests))
        .await
        .expect("two")
        .into_inner();
    assert_eq!(reply.received_bytes, 2 * SIXTEEN_MIB as u64);
}

// Multi-threaded: the client's connection task sends its RST_STREAM while the test
// thread waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cancelling_a_stream_cancels_it_at_the_backend() {
    let greeter = Greeter::spawn("c");
    let certs = Certs::new();
    let gw = e2e::h2c_gateway(&certs, &[&greeter], "");
    let mut client = client(&gw, &certs).await;
    let request = HelloRequest {
        count: 10_000,
        delay_ms: 20,
        ..hello("c")
    };
    let mut replies = client
        .stream_hellos(request)
        .await
        .expect("StreamHellos")
        .into_inner();
    assert!(replies.message().await.expect("a reply").is_some());
    drop(replies);
    wait_until(
        Duration::from_secs(20),
        "the backend's stream cancelled",
        || (greeter.stats().1 == 1).then_some(()),
    );
}

/// The gateway's answer to a gRPC call on a raw HTTP/2 stream: status and fields.
async fn raw_call(
    gw: &e2e::Gateway,
    certs: &Certs,
    path: &str,
    fields: &[(&str, &str)],
) -> http::Response<h2::RecvStream> {
    let (mut send, _conn) = h2_connect(gw.addr("https"), &certs.ca()).await;
    let mut request = http::Request::post(format!("https://localhost{path}"));
    for (name, value) in [("content-type", "application/grpc"), ("te", "trailers")]
        .iter()
        .chain(fields)
    {
        request = request.header(*name, *value);
    }
    let request = request.body(()).expect("request");
    let (response, mut body) = send.send_request(request, false).expect("send");
    body.send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), true)
        .expect("message");
    response.await.expect("a response")
}

#[tokio::test]
async fn grpc_timeout_is_the_calls_deadline_at_the_gateway() {
    // hello ignores grpc-timeout: only the gateway can end the call at 300 ms.
    let slow = Hello::spawn("slow");
    let certs = Certs::new();
    let upstream = format!("servers = [\"{}\"]\nprotocol = \"h2c\"", slow.addr);
    let gw = grpc_gateway(&certs, &upstream, "");
    let started = Instant::now();
    let response = raw_call(&gw, &certs, "/?delay_ms=5000", &[("grpc-timeout", "300m")]).await;
    let took = started.elapsed();
    assert!(took < Duration::from_millis(4500), "took {took:?}");
    assert_eq!(response.status(), 200);
    assert!(response.body().is_end_stream(), "a trailers-only answer");
    assert_eq!(response.headers()["grpc-status"], "4", "DEADLINE_EXCEEDED");
    assert_eq!(response.headers()["content-type"], "application/grpc");
}

#[tokio::test]
async fn the_gateways_own_failures_are_grpc_statuses() {
    let certs = Certs::new();
    // Nothing listens on the backend's port: UNAVAILABLE, not a JSON 502.
    let gw = grpc_gateway(
        &certs,
        "servers = [\"127.0.0.1:1\"]\nprotocol = \"h2c\"",
        "",
    );
    let response = raw_call(&gw, &certs, "/greeter.v1.Greeter/SayHello", &[]).await;
    assert_eq!(response.status(), 200);
    assert!(response.body().is_end_stream());
    assert_eq!(response.headers()["grpc-status"], "14", "UNAVAILABLE");
    assert_eq!(response.headers()["grpc-message"], "bad gateway");
    let status = client(&gw, &certs)
        .await
        .say_hello(hello("x"))
        .await
        .expect_err("down");
    assert_eq!(status.code(), Code::Unavailable);
    // Counted under the HTTP status the answer stands for.
    let series =
        "gateway_requests_total{listener=\"https\",route=\"/\",upstream=\"greeter\",code=\"502\"}";
    assert_eq!(gw.metric(series), Some(2.0), "{series}");

    // No route: UNIMPLEMENTED. Over the route's rate limit: RESOURCE_EXHAUSTED.
    let greeter = Greeter::spawn("limited");
    let tls = certs.server("front2", &["localhost"]);
    let gw = e2e::Gateway::start(&format!(
        "{}\n[upstream.greeter]\n{}\nprotocol = \"h2c\"\n\n[[route]]\npath_prefix = \"/greeter.v1.Greeter/\"\nupstream = \"greeter\"\nrate_limit = {{ requests = 1, per = \"1m\", burst = 0 }}\n",
        e2e::https_listener(&tls),
        servers(&[&greeter])
    ));
    let mut client = client(&gw, &certs).await;
    client
        .say_hello(hello("first"))
        .await
        .expect("within the limit");
    let status = client
        .say_hello(hello("second"))
        .await
        .expect_err("over the limit");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let unrouted = raw_call(&gw, &certs, "/other.Service/Call", &[]).await;
    assert_eq!(unrouted.headers()["grpc-status"], "12", "UNIMPLEMENTED");
}
