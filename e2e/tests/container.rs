//! The container image (`docker/Dockerfile`), built and run for real with Debian's Docker
//! engine: the hello flow over verified TLS through the container, a kubelet-style swap
//! in the mounted config dir taking effect, and `docker stop` draining and exiting 0.
//!
//! Opt-in, as it needs root and takes minutes (a release build inside the image): it is
//! `#[ignore]`d, so `cargo test` reports it as ignored, and runs with `--ignored` or
//! `--include-ignored` (`.ci/run` passes the latter). `e2e/container/run.sh up` installs
//! `docker.io` and `debootstrap` if missing, starts `dockerd` if none answers, builds the
//! local base images (no registry is reachable) and the gateway image; `run.sh down`
//! stops the `dockerd` it started. The container runs like the Kubernetes pod: host
//! network, read-only root, user 65532, no capabilities, the config dir at
//! `/etc/gateway/config` and the cert dir beside it at `/etc/gateway/tls`, both
//! kubelet-style volumes, as `config/k8s/frontend.yaml` mounts them.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use e2e::{wait_until, Certs, Client, Hello, Ports, Proto, Volume};

/// Containers of this test carry this label (`run.sh down` removes any left behind).
const LABEL: &str = "gateway-e2e=container";
/// "At once" must be well within the delay and "once drained" well before the drain
/// timeout (and docker's SIGKILL), by seconds on a loaded machine.
const SHUTDOWN_DELAY: Duration = Duration::from_secs(5);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
/// docker stop's grace before SIGKILL: after the drain timeout.
const STOP_GRACE: &str = "120";
/// How long a started container gets to become ready, and a swap to take effect.
const DEADLINE: Duration = Duration::from_secs(30);
const SUCCESS: &str = "gateway_config_reloads_total{result=\"success\"}";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn image() -> String {
    std::env::var("GATEWAY_IMAGE").unwrap_or_else(|_| "gateway:test".into())
}

/// The docker.io client (the one `run.sh` uses), else `docker` on PATH.
fn docker(args: &[&str]) -> Output {
    let bin = if Path::new("/usr/bin/docker").exists() {
        "/usr/bin/docker"
    } else {
        "docker"
    };
    Command::new(bin).args(args).output().expect("run docker")
}

/// `docker args...`, which must succeed: its stdout.
fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The engine and the image: `run.sh up` when made, `run.sh down` when dropped (also
/// when `up` failed half-way).
struct Engine;

impl Engine {
    fn up() -> Self {
        let engine = Engine;
        let start = Instant::now();
        let status = Command::new("bash")
            .arg(repo().join("e2e/container/run.sh"))
            .arg("up")
            .status()
            .expect("run e2e/container/run.sh up");
        assert!(status.success(), "e2e/container/run.sh up failed");
        eprintln!("engine and image ready in {:?}", start.elapsed());
        engine
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let status = Command::new("bash")
            .arg(repo().join("e2e/container/run.sh"))
            .arg("down")
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("e2e/container/run.sh down failed: {status:?}");
        }
    }
}

/// A running container; removed (`docker rm -f`) when dropped.
struct Container {
    name: String,
}

impl Container {
    fn run(args: &[&str]) -> Self {
        let name = format!("gateway-e2e-{}", std::process::id());
        let _ = docker(&["rm", "-f", &name]);
        let mut all = vec!["run", "--detach", "--name", &name, "--label", LABEL];
        all.extend_from_slice(args);
        docker_ok(&all);
        Self { name }
    }

    fn logs(&self) -> String {
        let out = docker(&["logs", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// `docker inspect --format FORMAT`.
    fn inspect(&self, format: &str) -> String {
        docker_ok(&["inspect", "--format", format, &self.name])
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- container log ---\n{}", self.logs());
        }
        let _ = docker(&["rm", "-f", &self.name]);
    }
}

fn metric(port: u16, name: &str) -> Option<f64> {
    let (_, body) = e2e::admin_get(port, "/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Panics unless the files the test writes are readable by the container's user
/// (65532): the volumes are written with the test's umask, as the kubelet writes 0644.
fn assert_world_readable(file: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(file).unwrap().permissions().mode();
    assert!(
        mode & 0o004 != 0,
        "{} has mode {mode:o}: run the test with a umask that lets others read (022)",
        file.display()
    );
}

/// The config: an admin listener and one HTTPS listener on host ports, `/` routed to
/// upstream `target` (`a` or `b`), the Secret volume's mount as the cert dir.
fn config(ports: &mut Ports, a: &Hello, b: &Hello, target: &str) -> String {
    ports.render(&format!(
        r#"[admin]
listen = "127.0.0.1:{{{{port:admin}}}}"

[server]
shutdown_delay = "{delay}s"
drain_timeout = "{drain}s"

[[listener]]
name = "https"
listen = "127.0.0.1:{{{{port:https}}}}"
tls = {{ certs = ["/etc/gateway/tls"] }}

[upstream.a]
servers = ["{a}"]

[upstream.b]
servers = ["{b}"]

[[route]]
path_prefix = "/"
upstream = "{target}"
"#,
        delay = SHUTDOWN_DELAY.as_secs(),
        drain = DRAIN_TIMEOUT.as_secs(),
        a = a.addr,
        b = b.addr,
    ))
}

#[test]
#[ignore = "opt-in (root, installs docker.io and debootstrap, ~14 min): \
            cargo test -p e2e --all-features --test container -- --ignored"]
fn image_serves_tls_reloads_a_configmap_swap_and_drains_on_docker_stop() {
    let _engine = Engine::up();
    let image = image();

    // The image is what the Kubernetes manifests expect.
    let config_json = docker_ok(&["image", "inspect", "--format", "{{json .Config}}", &image]);
    let image_config: serde_json::Value = serde_json::from_str(&config_json).unwrap();
    assert_eq!(image_config["User"], "65532:65532", "{image_config}");
    assert_eq!(
        image_config["Entrypoint"],
        serde_json::json!(["/usr/local/bin/gateway"])
    );
    assert_eq!(
        image_config["Cmd"],
        serde_json::json!(["run", "--config", "/etc/gateway/config/gateway.toml"])
    );
    for port in ["8080/tcp", "8443/tcp", "9090/tcp"] {
        assert!(
            image_config["ExposedPorts"].get(port).is_some(),
            "{image_config}"
        );
    }
    let version = docker_ok(&["run", "--rm", "--network", "none", &image, "--version"]);
    assert_eq!(version, format!("gateway {}", env!("CARGO_PKG_VERSION")));

    // Two replicas, a Secret-style cert volume and a ConfigMap-style config volume.
    let a = Hello::spawn("a");
    let b = Hello::spawn("b");
    let certs = Certs::new();
    let server = certs.server("tls", &["localhost"]);
    let dirs = tempfile::tempdir().unwrap();
    let crt = std::fs::read(server.join("tls.crt")).unwrap();
    let key = std::fs::read(server.join("tls.key")).unwrap();
    let secret = Volume::create(
        &dirs.path().join("secret"),
        &[("tls.crt", &crt), ("tls.key", &key)],
    );
    let mut ports = Ports::new();
    let text = config(&mut ports, &a, &b, "a");
    let mut configmap = Volume::create(
        &dirs.path().join("configmap"),
        &[("gateway.toml", text.as_bytes())],
    );
    assert_world_readable(&secret.dir().join("tls.key"));
    assert_world_readable(&configmap.dir().join("gateway.toml"));
    let admin = ports.get("admin").unwrap();
    let https = SocketAddr::from(([127, 0, 0, 1], ports.get("https").unwrap()));

    let configmap_mount = format!("{}:/etc/gateway/config:ro", configmap.dir().display());
    let secret_mount = format!("{}:/etc/gateway/tls:ro", secret.dir().display());
    let started = Instant::now();
    let container = Container::run(&[
        "--network",
        "host",
        "--read-only",
        "--user",
        "65532:65532",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--volume",
        &configmap_mount,
        "--volume",
        &secret_mount,
        &image,
    ]);
    wait_until(DEADLINE, "the container's /readyz to answer 200", || {
        if container.inspect("{{.State.Running}}") != "true" {
            panic!("the container exited:\n{}", container.logs());
        }
        (e2e::admin_get(admin, "/readyz").0 == 200).then_some(())
    });
    eprintln!("container ready in {:?}", started.elapsed());

    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = Client::new(&certs.ca());
    let instance = |proto: Proto| {
        let resp = rt.block_on(client.get(https, "localhost", "/", proto));
        assert_eq!(resp.status, 200, "{}", resp.text());
        resp.header("x-hello-instance").to_owned()
    };

    // (1) The hello flow over TLS, verified against the CA, HTTP/1.1 and HTTP/2.
    let resp = rt.block_on(client.get(https, "localhost", "/", Proto::H1));
    assert_eq!(resp.status, 200);
    let body: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(body, serde_json::json!({ "message": "Hello" }));
    assert_eq!(resp.header("x-hello-instance"), "a");
    assert_eq!(instance(Proto::H2), "a");

    // (2) A kubelet-style swap of the mounted config dir moves `/` to replica b.
    let text = config(&mut ports, &a, &b, "b");
    let swapped = configmap.update(&[("gateway.toml", text.as_bytes())]);
    wait_until(DEADLINE, "traffic to move to b after the swap", || {
        (instance(Proto::H1) == "b").then_some(())
    });
    eprintln!("swap applied in {:?}", swapped.elapsed());
    assert_eq!(metric(admin, SUCCESS), Some(1.0));
    assert!(container
        .logs()
        .contains("config and certificates reloaded"));

    // (3) `docker stop`: readiness fails at once, a request in flight and new requests
    // during the shutdown delay are served, and the gateway exits 0 once drained.
    let slow_client = client.clone();
    let slow = rt.spawn(async move {
        slow_client
            .get(https, "localhost", "/?delay_ms=10000", Proto::H1)
            .await
    });
    wait_until(DEADLINE, "the slow request to be in flight", || {
        (metric(admin, "gateway_requests_in_flight")? >= 1.0).then_some(())
    });
    let name = container.name.clone();
    let stopped = Instant::now();
    let stop = std::thread::spawn(move || docker(&["stop", "--time", STOP_GRACE, &name]));
    wait_until(
        SHUTDOWN_DELAY,
        "/readyz to answer 503 after docker stop",
        || (e2e::admin_get(admin, "/readyz").0 == 503).then_some(()),
    );
    assert!(
        stopped.elapsed() < SHUTDOWN_DELAY,
        "{:?}",
        stopped.elapsed()
    );
    assert_eq!(instance(Proto::H1), "b", "a new request during the delay");
    let slow = rt.block_on(slow).unwrap();
    assert_eq!(slow.status, 200, "the request in flight completes");
    let stop = stop.join().unwrap();
    assert!(
        stop.status.success(),
        "docker stop: {}",
        String::from_utf8_lossy(&stop.stderr)
    );
    let took = stopped.elapsed();
    eprintln!("docker stop took {took:?}");
    assert_eq!(container.inspect("{{.State.Running}}"), "false");
    assert_eq!(
        container.inspect("{{.State.ExitCode}}"),
        "0",
        "{}",
        container.logs()
    );
    // Drained and exited by itself when the slow request ended (~10 s): well before
    // the drain timeout (65 s) and docker's SIGKILL (120 s).
    assert!(
        took < SHUTDOWN_DELAY + DRAIN_TIMEOUT / 2,
        "docker stop took {took:?}"
    );
    assert_eq!(container.inspect("{{.State.OOMKilled}}"), "false");
}
