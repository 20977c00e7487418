//! Calls the gRPC tests make through any path: the four call kinds on a tonic client,
//! and grpcio's answers through `grpc/greeter_client.py`.

use std::path::Path;
use std::process::Command;

use futures_util::stream;

use crate::grpc::{hello, HelloRequest};
use crate::GreeterClient;

/// The four call kinds on `client`, answered by the greeter named `server`.
pub async fn every_call_kind(client: &mut GreeterClient, server: &str) {
    let reply = client.say_hello(hello("ann")).await.expect("SayHello");
    let reply = reply.into_inner();
    assert_eq!(
        (reply.message.as_str(), reply.server.as_str()),
        ("Hello, ann", server)
    );

    let request = HelloRequest {
        count: 3,
        reply_size: 10,
        ..hello("bo")
    };
    let mut replies = client.stream_hellos(request).await.expect("StreamHellos");
    let mut got = Vec::new();
    while let Some(reply) = replies.get_mut().message().await.expect("a reply") {
        got.push((reply.message, reply.payload.len()));
    }
    assert_eq!(got, vec![("Hello, bo".to_owned(), 10); 3]);

    let requests = (1..=4).map(|i| HelloRequest {
        payload: vec![b'p'; 100 * i],
        ..hello(&format!("cy {i}"))
    });
    let reply = client
        .collect_hellos(stream::iter(requests))
        .await
        .expect("CollectHellos")
        .into_inner();
    assert_eq!(
        (reply.message.as_str(), reply.received, reply.received_bytes),
        ("Hello, cy 1", 4, 1000)
    );

    // Chat answers each request before the next one is sent.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let requests = stream::unfold(rx, |mut rx| async { rx.recv().await.map(|r| (r, rx)) });
    tx.send(hello("di 1")).await.expect("send");
    let mut replies = client.chat(requests).await.expect("Chat").into_inner();
    for i in 1..=3u64 {
        let reply = replies
            .message()
            .await
            .expect("a reply")
            .expect("not the end");
        assert_eq!(
            (reply.message, reply.received),
            (format!("Hello, di {i}"), i)
        );
        if i < 3 {
            tx.send(hello(&format!("di {}", i + 1)))
                .await
                .expect("send");
        }
    }
    drop(tx);
    assert!(replies.message().await.expect("the end").is_none());
}

/// greeter_client.py (grpcio, an implementation independent of tonic) with `args`: its
/// JSON line.
pub fn grpcio(args: &[&str]) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("grpc/greeter_client.py");
    let out = Command::new(crate::python3())
        .arg(script)
        .args(args)
        .output()
        .expect("run python3 (e2e/setup.sh test makes its virtualenv)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "greeter_client.py {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).expect("one JSON line")
}
