//! EndpointSlice discovery against the FAKE Kubernetes API server (there is no real
//! API server on these machines): endpoints follow the slices, readiness and
//! termination are honoured, and broken or expired watches recover without losing
//! the backend set.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::net::IpAddr;
use std::time::Duration;

use e2e::{spread, wait_until, Certs, FakeKubeApi, Gateway, Hello, Ports};

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

#[tokio::test(flavor = "multi_thread")]
async fn a_port_given_by_number_picks_the_endpoints_port_of_that_number() {
    // Two replicas on one pod address, one per port of the slice.
    let web = Hello::spawn_on("web", std::net::SocketAddr::new(ip(51), 0));
    let admin = Hello::spawn_on("admin", std::net::SocketAddr::new(ip(51), 0));
    let (web_port, admin_port) = (web.addr.port(), admin.addr.port());
    let api = FakeKubeApi::start("ns1", "hello").await;
    api.set_slice_ports(
        "hello-a",
        &[(ip(51), true, false)],
        &[("http", web_port), ("admin", admin_port)],
    );
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path());
    // A number no port of the slice has (ephemeral ports are far above it).
    let unused = 1;
    let mut ports = Ports::new();
    let text = ports.render(&format!(
        "[admin]\nlisten = \"127.0.0.1:{{{{port:admin}}}}\"\n[[listener]]\nname = \"http\"\nlisten = \"127.0.0.1:{{{{port:http}}}}\"\n[upstream.by_number]\nkubernetes = {{ service = \"hello\", port = {admin_port} }}\n[upstream.by_name]\nkubernetes = {{ service = \"hello\", port = \"http\" }}\n[upstream.no_such_port]\nkubernetes = {{ service = \"hello\", port = {unused} }}\n[[route]]\npath_prefix = \"/number\"\nupstream = \"by_number\"\n[[route]]\npath_prefix = \"/name\"\nupstream = \"by_name\"\n[[route]]\npath_prefix = \"/none\"\nupstream = \"no_such_port\"\n"
    ));
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    tokio::task::block_in_place(|| {
        let gw = Gateway::run(
            &path,
            &ports,
            &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
        );
        let http = gw.port("http");
        for _ in 0..3 {
            assert_eq!(
                e2e::http_get(http, "/number", ""),
                (200, "admin".to_owned())
            );
            assert_eq!(e2e::http_get(http, "/name", ""), (200, "web".to_owned()));
            // A number no port of the slice has: no backends.
            assert_eq!(e2e::http_get(http, "/none", "").0, 502);
        }
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn in_a_pod_the_service_account_gives_server_and_namespace_and_a_kubeconfig_comes_first() {
    let r = Hello::spawn_set(&[52]);
    let certs = Certs::new();
    let api_cert = certs.server("api", &["127.0.0.1"]);
    let api = FakeKubeApi::start_tls("team-a", "hello", &api_cert).await;
    api.set_slice(
        "hello-a",
        &[(ip(52), true, false)],
        "http",
        r[0].addr.port(),
    );
    // A pod's in-cluster config: KUBERNETES_SERVICE_HOST/PORT and the service account's
    // files, mounted over /var/run in the gateway's own mount namespace; no kubeconfig.
    let dir = tempfile::tempdir().unwrap();
    let account = dir.path().join("run/secrets/kubernetes.io/serviceaccount");
    std::fs::create_dir_all(&account).unwrap();
    std::fs::write(account.join("namespace"), "team-a").unwrap();
    std::fs::write(account.join("token"), "fake-token").unwrap();
    std::fs::copy(certs.ca(), account.join("ca.crt")).unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let run = dir.path().join("run");
    let template = "[admin]\nlisten = \"127.0.0.1:{{port:admin}}\"\n[[listener]]\nname = \"http\"\nlisten = \"127.0.0.1:{{port:http}}\"\n[upstream.hello]\nkubernetes = { service = \"hello\", port = \"http\" }\n[[route]]\nupstream = \"hello\"\n";
    let api_port = api.addr.port().to_string();
    // In a pod: the service account's files and the API server's address; a kubeconfig
    // only when given.
    let start = |kubeconfig: Option<&std::path::Path>| {
        tokio::task::block_in_place(|| {
            Gateway::start_with(template, |mut command| {
                match kubeconfig {
                    Some(path) => command.env("KUBECONFIG", path),
                    None => command.env_remove("KUBECONFIG"),
                };
                command
                    .env("HOME", &home)
                    .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
                    .env("KUBERNETES_SERVICE_PORT", &api_port);
                e2e::with_mounts(&command, &[(&run, std::path::Path::new("/var/run"))])
            })
        })
    };
    let gw = start(None);
    tokio::task::block_in_place(|| {
        assert_eq!(
            e2e::http_get(gw.port("http"), "/", ""),
            (200, "r52".to_owned())
        );
    });
    let asked = api.namespaces();
    assert!(
        !asked.is_empty() && asked.iter().all(|ns| ns == "team-a"),
        "{asked:?}"
    );
    drop(gw);

    // With a kubeconfig as well ($KUBECONFIG), the kubeconfig is used: its server, and
    // its context's namespace.
    let other = Hello::spawn_set(&[53]);
    let local = FakeKubeApi::start("team-b", "hello").await;
    local.set_slice(
        "hello-b",
        &[(ip(53), true, false)],
        "http",
        other[0].addr.port(),
    );
    let kubeconfig = local.kubeconfig(dir.path());
    let gw = start(Some(&kubeconfig));
    tokio::task::block_in_place(|| {
        assert_eq!(
            e2e::http_get(gw.port("http"), "/", ""),
            (200, "r53".to_owned())
        );
    });
    assert!(local.namespaces().iter().all(|ns| ns == "team-b"));
    assert_eq!(
        api.namespaces().len(),
        asked.len(),
        "the in-cluster server not asked"
    );
}
