//! gRPC backends coming and going: a backend's graceful restart (GOAWAY) under load
//! fails no call, `grpc.health.v1` checks keep calls off a NOT_SERVING backend, and an
//! independent client implementation (Python's grpcio) gets the same answers as tonic.
//! A gRPC call over HTTP/1.1 is refused with a clear status.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use e2e::grpc::{hello, HelloRequest};
use e2e::{curl, grpc_gateway, servers, wait_until, Certs, Greeter, GreeterClient};

async fn client(gw: &e2e::Gateway, certs: &Certs) -> GreeterClient {
    GreeterClient::tls(gw.addr("https"), &certs.ca(), "localhost")
        .await
        .expect("connect to the gateway")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backends_graceful_restart_under_load_fails_no_call() {
    let mut leaving = Greeter::spawn("leaving");
    let staying = Greeter::spawn("staying");
    let certs = Certs::new();
    let gw = e2e::h2c_gateway(&certs, &[&leaving, &staying], "");
    let done = Arc::new(AtomicU64::new(0));
    let mut callers = Vec::new();
    for i in 0..8 {
        let mut client = client(&gw, &certs).await;
        let done = done.clone();
        callers.push(tokio::spawn(async move {
            let mut failed = Vec::new();
            for n in 0..150 {
                let request = HelloRequest {
                    delay_ms: 5,
                    ..hello(&format!("{i}-{n}"))
                };
                match client.say_hello(request).await {
                    Ok(_) => {}
                    Err(status) => failed.push(format!("{status:?}")),
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            failed
        }));
    }
    // Mid-load, the backend restarts gracefully: GOAWAY, its calls in flight finish.
    let counted = done.clone();
    wait_until(Duration::from_secs(30), "load under way", || {
        (counted.load(Ordering::Relaxed) >= 300).then_some(())
    });
    let served_before = leaving.stats().0;
    assert!(served_before > 0, "the leaving backend took calls");
    let exit = tokio::task::spawn_blocking(move || leaving.graceful_stop())
        .await
        .expect("stop");
    assert!(exit.success(), "{exit:?}");
    let mut failures = Vec::new();
    for caller in callers {
        failures.extend(caller.await.expect("caller"));
    }
    if !failures.is_empty() {
        let log = gw.log();
        let warns: std::collections::BTreeSet<&str> = log
            .lines()
            .filter(|l| l.contains("WARN"))
            .map(|l| l.split_once("error=").map_or(l, |x| x.1))
            .collect();
        panic!(
            "{} failed calls: {:?}\n{warns:#?}",
            failures.len(),
            failures.first()
        );
    }
    assert_eq!(done.load(Ordering::Relaxed), 8 * 150);
    assert!(staying.stats().0 > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_checks_keep_calls_off_a_backend_not_serving() {
    let up = Greeter::spawn("up");
    let down = Greeter::spawn_with(
        "down",
        "127.0.0.1:0".parse().expect("addr"),
        &["--not-serving"],
    );
    let certs = Certs::new();
    let upstream = format!(
        "{}\nprotocol = \"h2c\"\nhealth = {{ grpc = true, interval = \"100ms\", timeout = \"1s\", unhealthy_after = 1 }}",
        servers(&[&up, &down])
    );
    let gw = grpc_gateway(&certs, &upstream, "");
    let mut client = client(&gw, &certs).await;
    let mut in_a_row = 0;
    for _ in 0..200 {
        let reply = client
            .say_hello(hello("h"))
            .await
            .expect("a call")
            .into_inner();
        in_a_row = if reply.server == "up" {
            in_a_row + 1
        } else {
            0
        };
        if in_a_row == 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(in_a_row, 20, "calls still reach the NOT_SERVING backend");
    wait_until(Duration::from_secs(10), "the verdict in the log", || {
        let backend = format!("backend={}", down.addr);
        let log = gw.log();
        let mut lines = log.lines();
        lines
            .any(|l| l.contains("backend is now unhealthy (active check)") && l.contains(&backend))
            .then_some(())
    });
}

#[test]
fn grpcio_calls_through_the_gateway() {
    let greeter = Greeter::spawn("py");
    let certs = Certs::new();
    let gw = e2e::h2c_gateway(&certs, &[&greeter], "");
    let target = gw.addr("https").to_string();
    let ca = certs.ca();
    let base = [
        "--target",
        &target,
        "--ca",
        ca.to_str().expect("utf-8"),
        "--server-name",
        "localhost",
    ];
    let run = |extra: &[&str]| e2e::grpcio(&[&base[..], extra].concat());

    let unary = run(&["unary", "--name", "pat"]);
    assert_eq!(unary["ok"], true, "{unary}");
    assert_eq!(unary["messages"], serde_json::json!(["Hello, pat"]));
    assert_eq!(unary["servers"], serde_json::json!(["py"]));
    let streamed = run(&["server_stream", "--count", "3", "--reply-size", "7"]);
    assert_eq!(
        streamed["payload_sizes"],
        serde_json::json!([7, 7, 7]),
        "{streamed}"
    );
    let collected = run(&["client_stream", "--count", "4", "--payload-size", "10"]);
    assert_eq!(collected["ok"], true, "{collected}");
    let chatted = run(&["bidi", "--count", "3"]);
    assert_eq!(
        chatted["messages"].as_array().map(Vec::len),
        Some(3),
        "{chatted}"
    );
    let failed = run(&["unary", "--status", "7"]);
    assert_eq!(failed["code"], "PERMISSION_DENIED", "{failed}");
    assert_eq!(failed["trailers"][e2e::grpc::DETAIL_TRAILER], "why");
    let late = run(&["unary", "--delay-ms", "3000", "--timeout", "0.3"]);
    assert_eq!(late["code"], "DEADLINE_EXCEEDED", "{late}");
    // Every call but the late one reached the greeter once.
    wait_until(Duration::from_secs(10), "the calls counted", || {
        (greeter.stats().0 == 6).then_some(())
    });
    drop(greeter);
    let down = run(&["unary"]);
    assert_eq!(down["code"], "UNAVAILABLE", "{down}");
}

#[test]
fn a_grpc_call_over_http1_is_refused() {
    let greeter = Greeter::spawn("g");
    let certs = Certs::new();
    let gw = e2e::h2c_gateway(&certs, &[&greeter], "");
    let url = format!(
        "https://127.0.0.1:{}/greeter.v1.Greeter/SayHello",
        gw.port("https")
    );
    let extra = [
        "--http1.1",
        "-H",
        "content-type: application/grpc",
        "--data-binary",
        "x",
    ];
    let got = curl("127.0.0.1", &url, &extra);
    assert_eq!(got.status, "505", "{}", got.body);
    assert_eq!(got.body, r#"{"error":"gRPC needs HTTP/2"}"#);
    assert_eq!(greeter.stats().0, 0, "nothing reached the backend");
}
