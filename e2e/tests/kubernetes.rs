//! EndpointSlice discovery against the FAKE Kubernetes API server (there is no real
//! API server on these machines): endpoints follow the slices, readiness and
//! termination are honoured, and broken or expired watches recover without losing
//! the backend set.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::net::IpAddr;
use std::time::Duration;

use e2e::{spread, wait_until, FakeKubeApi, Gateway, Hello, Ports};

const DEADLINE: Duration = Duration::from_secs(10);

fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// A plain-HTTP gateway whose upstream `hello` watches Service `hello` through `api`.
fn gateway(api: &FakeKubeApi, dir: &std::path::Path) -> Gateway {
    let kubeconfig = api.kubeconfig(dir);
    let mut ports = Ports::new();
    let text = ports.render(
        "[admin]\nlisten = \"127.0.0.1:{{port:admin}}\"\n[[listener]]\nname = \"http\"\nlisten = \"127.0.0.1:{{port:http}}\"\n[upstream.hello]\nkubernetes = { service = \"hello\", port = \"http\" }\n[[route]]\nupstream = \"hello\"\n",
    );
    let path = dir.join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    Gateway::run(
        &path,
        &ports,
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    )
}

/// Waits until exactly `names` answer (over 12 requests each round).
fn wait_serving(gw: &Gateway, names: &[&str]) {
    let mut want: Vec<&str> = names.to_vec();
    want.sort();
    wait_until(DEADLINE, &format!("{want:?} serving"), || {
        let seen = spread(gw.port("http"), 12);
        let mut got: Vec<&str> = seen.keys().map(String::as_str).collect();
        got.sort();
        (got == want).then_some(())
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn traffic_follows_endpoint_slices_and_their_conditions() {
    let r = Hello::spawn_set(&[11, 12, 13]);
    let port = r[0].addr.port();
    let api = FakeKubeApi::start("ns1", "hello").await;
    api.set_slice(
        "hello-a",
        &[(ip(11), true, false), (ip(12), true, false)],
        "http",
        port,
    );
    let dir = tempfile::tempdir().unwrap();
    let gw = tokio::task::block_in_place(|| gateway(&api, dir.path()));
    tokio::task::block_in_place(|| {
        wait_serving(&gw, &["r11", "r12"]);
        // A second slice of the same Service adds r13.
        api.set_slice("hello-b", &[(ip(13), true, false)], "http", port);
        wait_serving(&gw, &["r11", "r12", "r13"]);
        // Not ready, then terminating: no new requests.
        api.set_slice(
            "hello-a",
            &[(ip(11), false, false), (ip(12), true, false)],
            "http",
            port,
        );
        wait_serving(&gw, &["r12", "r13"]);
        api.set_slice(
            "hello-a",
            &[(ip(11), true, false), (ip(12), true, true)],
            "http",
            port,
        );
        wait_serving(&gw, &["r11", "r13"]);
        api.delete_slice("hello-b");
        wait_serving(&gw, &["r11"]);
    });
    assert_eq!(
        gw.metric("gateway_upstream_backends{upstream=\"hello\",state=\"healthy\"}"),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_and_expired_watches_recover_without_losing_the_set() {
    let r = Hello::spawn_set(&[21, 22, 23]);
    let port = r[0].addr.port();
    let api = FakeKubeApi::start("ns1", "hello").await;
    api.set_slice(
        "hello-a",
        &[(ip(21), true, false), (ip(22), true, false)],
        "http",
        port,
    );
    let dir = tempfile::tempdir().unwrap();
    let gw = tokio::task::block_in_place(|| gateway(&api, dir.path()));
    tokio::task::block_in_place(|| {
        wait_serving(&gw, &["r21", "r22"]);

        // The watch breaks; a change made meanwhile arrives through the re-watch.
        let (_, watches) = api.requests();
        api.break_watches();
        api.set_slice(
            "hello-a",
            &[
                (ip(21), true, false),
                (ip(22), true, false),
                (ip(23), true, false),
            ],
            "http",
            port,
        );
        wait_serving(&gw, &["r21", "r22", "r23"]);
        assert!(api.requests().1 > watches, "re-watched");

        // 410 Gone: the client lists again; the set is kept meanwhile and after.
        let (lists, _) = api.requests();
        api.expire();
        wait_until(DEADLINE, "a relist after 410", || {
            (api.requests().0 > lists).then_some(())
        });
        wait_serving(&gw, &["r21", "r22", "r23"]);
        api.set_slice("hello-a", &[(ip(23), true, false)], "http", port);
        wait_serving(&gw, &["r23"]);
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_api_server_keeps_the_last_good_set() {
    let r = Hello::spawn_set(&[31, 32]);
    let port = r[0].addr.port();
    let api = FakeKubeApi::start("ns1", "hello").await;
    api.set_slice(
        "hello-a",
        &[(ip(31), true, false), (ip(32), true, false)],
        "http",
        port,
    );
    let dir = tempfile::tempdir().unwrap();
    let gw = tokio::task::block_in_place(|| gateway(&api, dir.path()));
    tokio::task::block_in_place(|| wait_serving(&gw, &["r31", "r32"]));
    drop(api);
    tokio::task::block_in_place(|| {
        wait_until(DEADLINE, "the watch failure logged", || {
            gw.log()
                .contains("EndpointSlice watch failed")
                .then_some(())
        });
        wait_serving(&gw, &["r31", "r32"]);
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_waits_for_the_first_answer_of_discovery() {
    let r = Hello::spawn_set(&[41]);
    let port = r[0].addr.port();
    let api = FakeKubeApi::start("ns1", "hello").await;
    api.set_slice("hello-a", &[(ip(41), true, false)], "http", port);
    api.hold_lists();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path());
    // The admin port under another placeholder name, so the harness does not wait for
    // readiness itself.
    let mut ports = Ports::new();
    let text = ports.render(
        "[admin]\nlisten = \"127.0.0.1:{{port:probe}}\"\n[[listener]]\nname = \"http\"\nlisten = \"127.0.0.1:{{port:http}}\"\n[upstream.hello]\nkubernetes = { service = \"hello\", port = \"http\" }\n[[route]]\nupstream = \"hello\"\n",
    );
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    let gw = tokio::task::block_in_place(|| {
        Gateway::run(
            &path,
            &ports,
            &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
        )
    });
    let probe = gw.port("probe");
    tokio::task::block_in_place(|| {
        // The gateway has asked, and has no answer: not ready, and nothing to serve yet.
        wait_until(DEADLINE, "the LIST request", || {
            (api.lists_received() >= 1).then_some(())
        });
        for _ in 0..3 {
            assert_eq!(e2e::admin_get(probe, "/readyz").0, 503);
        }
        assert_eq!(e2e::http_get(gw.port("http"), "/", "").0, 502);
        api.release_lists();
        wait_until(DEADLINE, "ready after the answer", || {
            (e2e::admin_get(probe, "/readyz").0 == 200).then_some(())
        });
        assert_eq!(
            e2e::http_get(gw.port("http"), "/", ""),
            (200, "r41".to_owned())
        );
    });
}
