//! The gRPC test pieces on their own, without the gateway: the `greeter` backend (h2c,
//! TLS, mTLS; the four call kinds, 16 MiB messages, error statuses with trailers,
//! health, counts, graceful stop), its tonic client, the grpcio client
//! (e2e/grpc/greeter_client.py), and `hello` as an HTTPS backend.

use std::time::Duration;

use e2e::grpc::{hello, HelloRequest, DETAIL_TRAILER, SERVICE};
use e2e::{curl, wait_until, Certs, Client, Greeter, GreeterClient, Hello, Proto};
use futures_util::stream;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

const SIXTEEN_MIB: usize = 16 << 20;

fn any_port() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().expect("literal address")
}

/// The messages of a stream's replies, to its end (panics on an error status).
async fn all(mut replies: tonic::Streaming<e2e::grpc::HelloReply>) -> Vec<String> {
    let mut messages = Vec::new();
    while let Some(reply) = replies.message().await.expect("a reply") {
        messages.push(reply.message);
    }
    messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_serves_every_call_kind_and_counts_them() {
    let greeter = Greeter::spawn("g1");
    let mut client = greeter.client().await;
    e2e::every_call_kind(&mut client, "g1").await;
    assert_eq!(greeter.stats(), (4, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_needs_a_client_certificate_the_ca_signed() {
    let certs = Certs::new();
    let tls = certs.server("greeter", &["localhost"]);
    let client = certs.client("client", "tonic client");
    let ca = certs.ca();
    let flags = [
        "--tls-dir",
        tls.to_str().expect("utf-8 path"),
        "--client-ca",
        ca.to_str().expect("utf-8 path"),
    ];
    let greeter = Greeter::spawn_with("secure", any_port(), &flags);
    let (crt, key) = (client.join("tls.crt"), client.join("tls.key"));
    let mut mtls = GreeterClient::mtls(greeter.addr, &ca, "localhost", &crt, &key)
        .await
        .expect("mTLS connect");
    e2e::every_call_kind(&mut mtls, "secure").await;
    let reply = mtls
        .say_hello(HelloRequest {
            payload: vec![b'p'; SIXTEEN_MIB],
            reply_size: SIXTEEN_MIB as u32,
            ..hello("big")
        })
        .await
        .expect("16 MiB each way over TLS");
    assert_eq!(reply.into_inner().payload.len(), SIXTEEN_MIB);
    assert_eq!(mtls.stats().await.expect("Stats").calls, 5);

    // Without a certificate: the handshake or the first call fails (TLS 1.3 clients
    // learn of the rejection only after their side of the handshake).
    let refused = match GreeterClient::tls(greeter.addr, &ca, "localhost").await {
        Err(e) => e,
        Ok(mut c) => c
            .say_hello(hello("x"))
            .await
            .expect_err("no client cert")
            .to_string(),
    };
    assert!(!refused.is_empty());
    // A server name the certificate does not hold is refused by the client.
    let wrong = GreeterClient::mtls(greeter.addr, &ca, "other.test", &crt, &key).await;
    let wrong = match wrong {
        Err(e) => e,
        Ok(mut c) => c
            .say_hello(hello("x"))
            .await
            .expect_err("wrong name")
            .to_string(),
    };
    assert!(wrong.contains("certificate"), "{wrong}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_mib_messages_pass_both_ways() {
    let greeter = Greeter::spawn("big");
    let mut client = greeter.client().await;
    let reply = client
        .say_hello(HelloRequest {
            payload: vec![b'p'; SIXTEEN_MIB],
            reply_size: SIXTEEN_MIB as u32,
            ..hello("big")
        })
        .await
        .expect("16 MiB each way")
        .into_inner();
    assert_eq!(reply.payload.len(), SIXTEEN_MIB);
    let requests = (0..2).map(|_| HelloRequest {
        payload: vec![b'p'; SIXTEEN_MIB],
        ..hello("big")
    });
    let reply = client
        .collect_hellos(stream::iter(requests))
        .await
        .expect("two 16 MiB requests")
        .into_inner();
    assert_eq!(reply.received_bytes, 2 * SIXTEEN_MIB as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_asked_for_status_comes_with_its_trailer() {
    let greeter = Greeter::spawn("err");
    let mut client = greeter.client().await;
    let status = client
        .say_hello(HelloRequest {
            status: 5,
            ..hello("e")
        })
        .await
        .expect_err("status 5");
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), "asked for status 5");
    assert_eq!(
        status.metadata().get(DETAIL_TRAILER).expect("trailer"),
        "why"
    );

    // A stream ends with it after its replies.
    let request = HelloRequest {
        count: 2,
        status: 14,
        ..hello("s")
    };
    let mut replies = client.stream_hellos(request).await.expect("headers");
    let replies = replies.get_mut();
    for _ in 0..2 {
        assert!(replies.message().await.expect("a reply").is_some());
    }
    let status = replies
        .message()
        .await
        .expect_err("status 14 after the replies");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(
        status.metadata().get(DETAIL_TRAILER).expect("trailer"),
        "why"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_serving_unless_told_otherwise() {
    let serving = Greeter::spawn("up");
    let mut client = serving.client().await;
    for service in ["", SERVICE] {
        assert_eq!(
            client.health(service).await.expect("Check"),
            ServingStatus::Serving
        );
    }
    let unknown = client.health("no.such.Service").await.expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound);

    let not_serving = Greeter::spawn_with("down", any_port(), &["--not-serving"]);
    let mut client = not_serving.client().await;
    for service in ["", SERVICE] {
        let status = client.health(service).await.expect("Check");
        assert_eq!(status, ServingStatus::NotServing);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_whose_client_went_away_are_counted_as_cancelled() {
    let greeter = Greeter::spawn("c");
    let mut client = greeter.client().await;
    let request = HelloRequest {
        count: 50,
        delay_ms: 50,
        ..hello("s")
    };
    let mut replies = client.stream_hellos(request).await.expect("headers");
    assert!(replies.get_mut().message().await.expect("one").is_some());
    drop(replies);
    wait_until(Duration::from_secs(10), "a dropped stream counted", || {
        (greeter.stats() == (1, 1)).then_some(())
    });

    let mut request = tonic::Request::new(HelloRequest {
        delay_ms: 5_000,
        ..hello("slow")
    });
    request.set_timeout(Duration::from_millis(200));
    let status = client.say_hello(request).await.expect_err("deadline");
    // tonic's server enforces the `grpc-timeout` it was sent, and answers CANCELLED.
    assert!(
        matches!(status.code(), Code::Cancelled | Code::DeadlineExceeded),
        "{status:?}"
    );
    wait_until(
        Duration::from_secs(10),
        "a call past its deadline counted",
        || (greeter.stats() == (2, 2)).then_some(()),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_finishes_the_calls_in_flight() {
    let mut greeter = Greeter::spawn("draining");
    let mut client = greeter.client().await;
    let mut unary = client.clone();
    let slow = tokio::spawn(async move {
        let request = HelloRequest {
            delay_ms: 2_000,
            ..hello("slow")
        };
        unary
            .say_hello(request)
            .await
            .map(|r| r.into_inner().message)
    });
    let request = HelloRequest {
        count: 4,
        delay_ms: 500,
        ..hello("stream")
    };
    let replies = client.stream_hellos(request).await.expect("headers");
    let streamed = tokio::spawn(all(replies.into_inner()));
    wait_until(Duration::from_secs(10), "both calls started", || {
        (greeter.stats().0 == 2).then_some(())
    });

    assert!(
        !slow.is_finished() && !streamed.is_finished(),
        "too late to test"
    );
    let status = tokio::task::block_in_place(|| greeter.graceful_stop());
    assert!(status.success(), "{status:?}");
    assert_eq!(slow.await.expect("task").expect("SayHello"), "Hello, slow");
    assert_eq!(streamed.await.expect("task"), vec!["Hello, stream"; 4]);
    assert!(
        GreeterClient::h2c(greeter.addr).await.is_err(),
        "still accepting"
    );
}

#[test]
fn grpcio_calls_the_greeter_over_tls() {
    let certs = Certs::new();
    let tls = certs.server("greeter", &["greeter.test"]);
    let greeter = Greeter::spawn_with(
        "py",
        any_port(),
        &["--tls-dir", tls.to_str().expect("utf-8")],
    );
    let target = greeter.addr.to_string();
    let ca = certs.ca();
    let base = [
        "--target",
        &target,
        "--ca",
        ca.to_str().expect("utf-8"),
        "--server-name",
        "greeter.test",
    ];
    let run = |extra: &[&str]| e2e::grpcio(&[&base[..], extra].concat());

    let unary = run(&["unary", "--name", "pat"]);
    assert_eq!(unary["ok"], true, "{unary}");
    assert_eq!(unary["messages"], serde_json::json!(["Hello, pat"]));
    assert_eq!(unary["servers"], serde_json::json!(["py"]));

    let streamed = run(&["server_stream", "--count", "3", "--reply-size", "7"]);
    assert_eq!(streamed["ok"], true, "{streamed}");
    assert_eq!(streamed["messages"].as_array().map(Vec::len), Some(3));
    assert_eq!(streamed["payload_sizes"], serde_json::json!([7, 7, 7]));

    let failed = run(&["unary", "--status", "7"]);
    assert_eq!(failed["code"], "PERMISSION_DENIED", "{failed}");
    assert_eq!(failed["details"], "asked for status 7");
    assert_eq!(failed["trailers"][DETAIL_TRAILER], "why");

    // The call ends at its deadline, not after the server's 3 s. gRPC core reports that
    // as DEADLINE_EXCEEDED, or (its timer and the stream racing, seen once under CI load)
    // as CANCELLED "Timeout expired".
    let late = run(&["unary", "--delay-ms", "3000", "--timeout", "0.3"]);
    let by_deadline = late["code"] == "DEADLINE_EXCEEDED"
        || (late["code"] == "CANCELLED" && late["details"] == "Timeout expired");
    assert!(by_deadline, "{late}");

    let health = run(&["health", "--service", SERVICE]);
    assert_eq!(health["status"], "SERVING", "{health}");
    assert_eq!(greeter.stats().0, 4);
}

#[tokio::test]
async fn hello_serves_https_by_alpn() {
    let certs = Certs::new();
    let tls = certs.server("hello", &["localhost"]);
    let hello = Hello::spawn_with(
        "tls",
        any_port(),
        &["--tls-dir", tls.to_str().expect("utf-8")],
    );
    let client = Client::new(&certs.ca());
    for proto in [Proto::H1, Proto::H2] {
        let resp = client.get(hello.addr, "localhost", "/", proto).await;
        assert_eq!((resp.status, resp.header("x-hello-instance")), (200, "tls"));
        assert_eq!(resp.header("x-client-cn"), "");
    }
}

#[test]
fn hello_can_require_a_client_certificate() {
    let certs = Certs::new();
    let tls = certs.server("hello", &["localhost"]);
    let client = certs.client("client", "curl client");
    let ca = certs.ca();
    let flags = [
        "--tls-dir",
        tls.to_str().expect("utf-8"),
        "--client-ca",
        ca.to_str().expect("utf-8"),
    ];
    let hello = Hello::spawn_with("mtls", any_port(), &flags);
    let url = format!("https://localhost:{}/", hello.addr.port());
    let (crt, key) = (client.join("tls.crt"), client.join("tls.key"));
    let with_cert = [
        "--cacert",
        ca.to_str().expect("utf-8"),
        "--cert",
        crt.to_str().expect("utf-8"),
        "--key",
        key.to_str().expect("utf-8"),
        "-D",
        "-",
    ];
    for version in ["--http1.1", "--http2"] {
        let got = curl("127.0.0.1", &url, &[&with_cert[..], &[version]].concat());
        assert_eq!(got.status, "200", "{version}: {got:?}");
        assert!(
            got.body.contains("x-client-cn: curl client"),
            "{version}: {got:?}"
        );
    }
    let without = curl(
        "127.0.0.1",
        &url,
        &["--cacert", ca.to_str().expect("utf-8")],
    );
    assert_eq!(without.status, "000", "{without:?}");
}
