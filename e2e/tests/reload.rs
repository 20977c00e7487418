//! Live reload: ConfigMap edits and Secret rotation apply by themselves, without a
//! restart or a failed request; bad files never replace a good state.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use e2e::{
    wait_until, Certs, Client, Gateway, Hello, KeyFormat, KeyType, Load, Ports, Proto, Volume,
};

/// How long a change may take to apply: a safety net (the watcher applies one in well
/// under a second). The configs here re-read their files only hourly, so a change
/// applies through the watcher (or SIGHUP) or not at all.
const APPLY: Duration = Duration::from_secs(30);
const SUCCESS: &str = "gateway_config_reloads_total{result=\"success\"}";
const FAILURE: &str = "gateway_config_reloads_total{result=\"failure\"}";
const LAST_OK: &str = "gateway_config_last_reload_success";

/// Two replica sets, `a` and `b`, a ConfigMap-style config volume, a Secret-style
/// cert volume and a gateway running on them.
struct Setup {
    certs: Certs,
    a: [Hello; 2],
    b: [Hello; 2],
    secret: Volume,
    config: Volume,
    ports: Ports,
    gw: Gateway,
    _dirs: tempfile::TempDir,
}

fn files(dir: &Path) -> [(&'static str, Vec<u8>); 2] {
    [
        ("tls.crt", std::fs::read(dir.join("tls.crt")).unwrap()),
        ("tls.key", std::fs::read(dir.join("tls.key")).unwrap()),
    ]
}

fn as_refs<'a>(files: &'a [(&'static str, Vec<u8>)]) -> Vec<(&'static str, &'a [u8])> {
    files.iter().map(|(n, c)| (*n, c.as_slice())).collect()
}

impl Setup {
    fn new() -> Self {
        let certs = Certs::new();
        let dirs = tempfile::tempdir().unwrap();
        let initial = certs.server_with("rsa", &["localhost"], KeyType::Rsa, KeyFormat::Pkcs8);
        let secret = Volume::create(&dirs.path().join("tls"), &as_refs(&files(&initial)));
        let a = [Hello::spawn("a1"), Hello::spawn("a2")];
        let b = [Hello::spawn("b1"), Hello::spawn("b2")];
        let mut ports = Ports::new();
        let setup_config = |target: &str, ports: &mut Ports| {
            ports.render(&config_text(secret.dir(), &a, &b, target, "https"))
        };
        let text = setup_config("a", &mut ports);
        let config = Volume::create(
            &dirs.path().join("config"),
            &[("gateway.toml", text.as_bytes())],
        );
        let gw = Gateway::run(
            &config.dir().join("gateway.toml"),
            &ports,
            &[("RUST_LOG", "info,gateway=debug")],
        );
        Self {
            certs,
            a,
            b,
            secret,
            config,
            ports,
            gw,
            _dirs: dirs,
        }
    }

    /// The config routing `/` to replica set `target`, with `listener` as the HTTPS
    /// listener's port name.
    fn config(&mut self, target: &str, listener: &str) -> String {
        let text = config_text(self.secret.dir(), &self.a, &self.b, target, listener);
        self.ports.render(&text)
    }

    fn swap_config(&mut self, text: &str) {
        self.config.update(&[("gateway.toml", text.as_bytes())]);
    }

    fn swap_cert(&mut self, dir: &Path) {
        self.secret.update(&as_refs(&files(dir)));
    }

    fn client(&self) -> Client {
        Client::new(&self.certs.ca())
    }

    /// Waits until the metric `name` reaches `value`.
    fn wait_metric(&self, name: &str, value: f64) {
        wait_until(APPLY, &format!("{name} = {value}"), || {
            (self.gw.metric(name) == Some(value)).then_some(())
        });
    }

    /// Which replica set answers a request on a new connection.
    async fn serving_set(&self) -> char {
        let resp = self
            .client()
            .get(self.gw.addr("https"), "localhost", "/", Proto::H1)
            .await;
        assert_eq!(resp.status, 200);
        resp.header("x-hello-instance").chars().next().unwrap()
    }

    async fn wait_serving(&self, set: char) {
        let start = std::time::Instant::now();
        while self.serving_set().await != set {
            assert!(
                start.elapsed() < APPLY,
                "traffic did not move to {set}\n{}",
                self.gw.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn config_text(
    secret: &Path,
    a: &[Hello; 2],
    b: &[Hello; 2],
    target: &str,
    listener: &str,
) -> String {
    format!(
        r#"
[admin]
listen = "127.0.0.1:{{{{port:admin}}}}"

[reload]
poll_interval = "1h"

[[listener]]
name = "https"
listen = "127.0.0.1:{{{{port:{listener}}}}}"
tls = {{ certs = ["{secret}"] }}

[upstream.a]
servers = ["{a0}", "{a1}"]

[upstream.b]
servers = ["{b0}", "{b1}"]

[[route]]
path_prefix = "/"
upstream = "{target}"
"#,
        secret = secret.display(),
        a0 = a[0].addr,
        a1 = a[1].addr,
        b0 = b[0].addr,
        b1 = b[1].addr,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn route_moves_from_a_to_b_by_configmap_swap_with_no_failed_request() {
    let mut s = Setup::new();
    assert_eq!(s.gw.admin_get("/healthz").0, 200);
    assert_eq!(s.gw.admin_get("/readyz").0, 200);
    assert_eq!(s.gw.metric(LAST_OK), Some(1.0));
    let load = Load::start(&s.client(), s.gw.addr("https"), "localhost", 8, Proto::H1);
    load.wait_for_more(200, APPLY).await;
    let text = s.config("b", "https");
    s.swap_config(&text);
    s.wait_serving('b').await;
    load.wait_for_more(200, APPLY).await;
    let report = load.stop().await;
    assert!(
        report.failures.is_empty(),
        "{:?}",
        &report.failures[..report.failures.len().min(5)]
    );
    assert!(report.by_instance.contains_key("a1") && report.by_instance.contains_key("b1"));
    assert_eq!(s.gw.metric(SUCCESS), Some(1.0));
    assert!(s.gw.log().contains("config and certificates reloaded"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_in_flight_finishes_on_the_state_it_started_with() {
    let mut s = Setup::new();
    let client = s.client();
    let addr = s.gw.addr("https");
    let slow = tokio::spawn(async move {
        client
            .get(addr, "localhost", "/?delay_ms=1500", Proto::H1)
            .await
    });
    // The slow request is on its way to set a before the swap.
    let metrics_in_flight = || s.gw.metric("gateway_requests_in_flight").unwrap_or(0.0);
    tokio::task::block_in_place(|| {
        wait_until(APPLY, "request in flight", || {
            (metrics_in_flight() >= 1.0).then_some(())
        })
    });
    let to_b = s.config("b", "https");
    s.swap_config(&to_b);
    s.wait_serving('b').await;
    let resp = slow.await.unwrap();
    assert_eq!(resp.status, 200);
    assert!(
        resp.header("x-hello-instance").starts_with('a'),
        "{}",
        resp.header("x-hello-instance")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rotated_certificate_serves_new_handshakes_while_an_open_h2_connection_keeps_working() {
    let mut s = Setup::new();
    let client = s.client();
    let addr = s.gw.addr("https");
    let mut before = client
        .connect(addr, Some("localhost"), Proto::H2)
        .await
        .unwrap();
    assert_eq!(before.get("/").await.unwrap().status, 200);
    // The certificate the Secret held at start is the one served.
    let old_cert = CertificateDer::from_pem_file(s.certs.path("rsa").join("tls.crt")).unwrap();
    assert_eq!(before.peer_cert, old_cert);

    // Valid for 90 days, the first one for 30: the expiry metric tells them apart.
    let ecdsa =
        s.certs
            .server_for_days("ecdsa", &["localhost"], KeyType::Ecdsa, KeyFormat::Sec1, 90);
    let expiry = format!(
        "gateway_tls_certificate_expiry_timestamp_seconds{{cert=\"{}\"}}",
        s.secret.dir().display()
    );
    let day = 86_400.0;
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    let first = s.gw.metric(&expiry).unwrap();
    assert!(
        first > now() + 29.0 * day && first < now() + 31.0 * day,
        "{first}"
    );
    s.swap_cert(&ecdsa);
    let new_cert = CertificateDer::from_pem_file(ecdsa.join("tls.crt")).unwrap();
    let start = std::time::Instant::now();
    loop {
        let conn = client
            .connect(addr, Some("localhost"), Proto::H2)
            .await
            .unwrap();
        if conn.peer_cert == new_cert {
            break;
        }
        assert_eq!(conn.peer_cert, old_cert);
        assert!(
            start.elapsed() < APPLY,
            "new certificate not served\n{}",
            s.gw.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The connection opened before the rotation still works (it keeps the certificate
    // its handshake was served: TLS has no way to change it).
    for _ in 0..3 {
        assert_eq!(before.get("/").await.unwrap().status, 200);
    }
    // The expiry shown is the new certificate's.
    let second = s.gw.metric(&expiry).unwrap();
    assert!(
        second > now() + 89.0 * day && second < now() + 91.0 * day,
        "{second}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_config_and_mismatched_cert_keep_the_old_state_and_are_counted() {
    let mut s = Setup::new();
    let good = s.config("a", "https");
    s.swap_config(&good.replace("[[route]]", "[[route]]\nupstrem = \"b\""));
    s.wait_metric(FAILURE, 1.0);
    assert_eq!(s.gw.metric(LAST_OK), Some(0.0));
    assert_eq!(s.serving_set().await, 'a');
    let log = s.gw.log();
    assert!(
        log.contains("ERROR") && log.contains("unknown field `upstrem`"),
        "{log}"
    );
    assert!(log.contains("gateway.toml: invalid config"), "{log}");

    // Back to a valid config (the same as the one serving), so certificates are read again.
    s.swap_config(&good);
    s.wait_metric(LAST_OK, 1.0);

    // A Secret whose key belongs to another certificate: refused as a pair.
    let other = s.certs.server("other", &["localhost"]);
    let rsa = s.certs.path("rsa");
    s.secret.update(&[
        ("tls.crt", &std::fs::read(rsa.join("tls.crt")).unwrap()),
        ("tls.key", &std::fs::read(other.join("tls.key")).unwrap()),
    ]);
    s.wait_metric(FAILURE, 2.0);
    assert!(
        s.gw.log().contains("tls.key does not match"),
        "{}",
        s.gw.log()
    );
    assert_eq!(s.serving_set().await, 'a');

    // A valid change applies and clears the failure.
    s.swap_cert(&rsa);
    let to_b = s.config("b", "https");
    s.swap_config(&to_b);
    s.wait_serving('b').await;
    s.wait_metric(LAST_OK, 1.0);
    assert_eq!(s.gw.metric(FAILURE), Some(2.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn unchanged_content_is_not_reloaded() {
    let mut s = Setup::new();
    let same = s.config("a", "https");
    let logged_before = s.gw.log().len();
    s.swap_config(&same); // same bytes, new generation
                          // Read (logged at DEBUG) and found unchanged: no reload, nothing above DEBUG.
    let read = "config and certificates unchanged cause=\"file change\"";
    let log = wait_until(APPLY, "the identical swap read", || {
        let log = s.gw.log();
        log.contains(read).then_some(log)
    });
    assert_eq!(s.gw.metric(SUCCESS), Some(0.0), "{log}");
    assert!(!log.contains("config and certificates reloaded"), "{log}");
    let since = &log[logged_before..];
    let loud: Vec<&str> = since
        .lines()
        .filter(|l| l.split_whitespace().nth(1) != Some("DEBUG"))
        .collect();
    assert!(
        loud.is_empty(),
        "above DEBUG after an identical swap: {loud:#?}"
    );
    // A real change after it is one reload.
    let to_b = s.config("b", "https");
    s.swap_config(&to_b);
    s.wait_serving('b').await;
    assert_eq!(s.gw.metric(SUCCESS), Some(1.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_that_need_a_restart_warn_once_and_the_rest_applies() {
    let mut s = Setup::new();
    // A moved listener, a new one, another thread count and a moved admin listener, with
    // a route change that does apply.
    let moved = s.config("b", "https_moved");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) + 3;
    let moved = moved.replacen(
        "[admin]\nlisten",
        "[admin]\nlisten = \"127.0.0.1:{{port:admin_moved}}\"\n#",
        1,
    );
    let moved = s.ports.render(&format!(
        "[server]\nthreads = {threads}\n{moved}\n[[listener]]\nname = \"extra\"\nlisten = \"127.0.0.1:{{{{port:extra}}}}\"\n"
    ));
    s.swap_config(&moved);
    s.wait_serving('b').await;
    let log = wait_until(APPLY, "restart warning", || {
        let log = s.gw.log();
        log.contains("need a restart").then_some(log)
    });
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("need a restart"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    let warning = warnings[0];
    assert!(warning.contains("WARN"), "{warning}");
    for field in [
        "listener \"https\" listen",
        "listener \"extra\" added",
        "server.threads",
        "admin.listen",
    ] {
        assert!(warning.contains(field), "{field} not in {warning}");
    }
    // The admin listener stays where it started.
    assert_eq!(s.gw.metric(SUCCESS), Some(1.0));
}

/// A config in a plain directory, edited the ways people and tools edit files.
#[tokio::test(flavor = "multi_thread")]
async fn in_place_edits_editor_renames_and_sighup_apply() {
    let certs = Certs::new();
    let tls = certs.server("tls", &["localhost"]);
    let (a, b) = (Hello::spawn("a1"), Hello::spawn("b1"));
    let dir = tempfile::tempdir().unwrap();
    let mut ports = Ports::new();
    let text = |ports: &mut Ports, target: &Hello, extra: &str| {
        ports.render(&format!(
            "[admin]\nlisten = \"127.0.0.1:{{{{port:admin}}}}\"\n[reload]\npoll_interval = \"1h\"\n[[listener]]\nname = \"https\"\nlisten = \"127.0.0.1:{{{{port:https}}}}\"\ntls = {{ certs = [\"{}\"] }}\n[upstream.u]\nservers = [\"{}\"]\n[[route]]\nupstream = \"u\"\n{extra}",
            tls.display(),
            target.addr
        ))
    };
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, text(&mut ports, &a, "")).unwrap();
    let gw = Gateway::run(&path, &ports, &[]);
    let client = Client::new(&certs.ca());
    let serving = || async {
        let resp = client
            .get(gw.addr("https"), "localhost", "/", Proto::H1)
            .await;
        resp.header("x-hello-instance").to_owned()
    };
    let wait_serving = |name: &'static str| {
        let serving = &serving;
        let gw = &gw;
        async move {
            let start = std::time::Instant::now();
            while serving().await != name {
                assert!(start.elapsed() < APPLY, "{name} not serving\n{}", gw.log());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let wait = |name: &str, value: f64| {
        wait_until(APPLY, name, || {
            (gw.metric(name) == Some(value)).then_some(())
        });
    };

    // In place: invalid, then valid.
    std::fs::write(&path, text(&mut ports, &b, "bogus = 1\n")).unwrap();
    wait(FAILURE, 1.0);
    assert_eq!(serving().await, "a1");
    std::fs::write(&path, text(&mut ports, &b, "")).unwrap();
    wait_serving("b1").await;
    wait(LAST_OK, 1.0);

    // Editor style: write a temporary file, rename it over the config.
    let tmp = dir.path().join(".gateway.toml.swp");
    std::fs::write(
        &tmp,
        text(&mut ports, &a, "[[route]]\nupstream = \"nope\"\n"),
    )
    .unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    wait(FAILURE, 2.0);
    std::fs::write(&tmp, text(&mut ports, &a, "")).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    wait_serving("a1").await;

    // Deleted and recreated.
    std::fs::remove_file(&path).unwrap();
    wait(FAILURE, 3.0);
    assert_eq!(serving().await, "a1");
    std::fs::write(&path, text(&mut ports, &b, "")).unwrap();
    wait_serving("b1").await;
    wait(LAST_OK, 1.0);

    // SIGHUP forces a reload even when nothing changed.
    let before = gw.metric(SUCCESS).unwrap();
    gw.signal("HUP");
    wait(SUCCESS, before + 1.0);
    assert!(gw.log().contains("cause=\"SIGHUP\""), "{}", gw.log());
}

/// A config reached through a symlink into a directory nobody watches: only SIGHUP
/// (or the periodic re-read) can see its changes.
#[tokio::test(flavor = "multi_thread")]
async fn sighup_applies_a_change_the_watcher_cannot_see() {
    let (a, b) = (Hello::spawn("a1"), Hello::spawn("b1"));
    let hidden = tempfile::tempdir().unwrap();
    let visible = tempfile::tempdir().unwrap();
    let mut ports = Ports::new();
    let text = |ports: &mut Ports, target: &Hello| {
        ports.render(&format!(
            "[admin]\nlisten = \"127.0.0.1:{{{{port:admin}}}}\"\n[reload]\npoll_interval = \"1h\"\n[[listener]]\nname = \"http\"\nlisten = \"127.0.0.1:{{{{port:http}}}}\"\n[upstream.u]\nservers = [\"{}\"]\n[[route]]\nupstream = \"u\"\n",
            target.addr
        ))
    };
    let real: PathBuf = hidden.path().join("real.toml");
    std::fs::write(&real, text(&mut ports, &a)).unwrap();
    let path = visible.path().join("gateway.toml");
    std::os::unix::fs::symlink(&real, &path).unwrap();
    let gw = Gateway::run(&path, &ports, &[]);
    std::fs::write(&real, text(&mut ports, &b)).unwrap();
    gw.signal("HUP");
    wait_until(APPLY, "SIGHUP reload", || {
        (gw.metric(SUCCESS) == Some(1.0)).then_some(())
    });
    let (status, _) = gw.admin_get("/healthz");
    assert_eq!(status, 200);
    let (_, body) = e2e::raw_get(gw.port("http"), "x", "/", "");
    assert!(body.contains("x-hello-instance: b1"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_config_swaps_and_ten_cert_swaps_under_load_fail_no_request() {
    let mut s = Setup::new();
    let rsa = s.certs.path("rsa");
    let ecdsa = s
        .certs
        .server_with("ecdsa", &["localhost"], KeyType::Ecdsa, KeyFormat::Pkcs8);
    let load = Load::start(&s.client(), s.gw.addr("https"), "localhost", 32, Proto::H1);
    load.wait_for_more(100, APPLY).await;
    let mut applied = 0.0;
    for i in 0..60 {
        if i % 6 == 5 {
            s.swap_cert(if (i / 6) % 2 == 0 { &ecdsa } else { &rsa });
        } else {
            let text = s.config(if i % 2 == 0 { "b" } else { "a" }, "https");
            s.swap_config(&format!("{text}# swap {i}\n"));
        }
        applied += 1.0;
        s.wait_metric(SUCCESS, applied);
        load.wait_for_more(32, APPLY).await;
    }
    let report = load.stop().await;
    assert_eq!(s.gw.metric(FAILURE), Some(0.0));
    assert!(
        report.failures.is_empty(),
        "{} failures of {}: {:?}",
        report.failures.len(),
        report.ok,
        &report.failures[..report.failures.len().min(5)]
    );
    assert!(report.ok > 60 * 32);
}

/// Accepts any server certificate: lets a client send a server name the certificate
/// does not cover, as a connection-reusing client or a domain fronter does.
#[derive(Debug)]
struct AcceptAny;

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A TLS 1.3 connection whose client has read the server's whole flight (the server
/// has chosen and sent its certificate) but not yet sent its own Finished: the
/// server's handshake is still open.
struct HalfOpen {
    tcp: std::net::TcpStream,
    tls: rustls::ClientConnection,
}

impl HalfOpen {
    fn start(addr: std::net::SocketAddr, sni: &str) -> Self {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(std::sync::Arc::new(AcceptAny))
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name = rustls_pki_types::ServerName::try_from(sni.to_owned()).unwrap();
        let mut tls = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        tls.write_tls(&mut tcp).unwrap(); // ClientHello
        while tls.is_handshaking() {
            assert!(tls.read_tls(&mut tcp).unwrap() > 0, "server closed");
            tls.process_new_packets().unwrap();
        }
        assert!(tls.wants_write(), "the client's Finished is held back");
        Self { tcp, tls }
    }

    /// Completes the handshake, sends one GET with `host` and returns its status.
    fn get(mut self, host: &str) -> u16 {
        use std::io::{Read, Write};
        write!(
            self.tls.writer(),
            "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        while self.tls.wants_write() {
            self.tls.write_tls(&mut self.tcp).unwrap();
        }
        let mut stream = rustls::Stream::new(&mut self.tls, &mut self.tcp);
        let mut out = Vec::new();
        let _ = stream.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out);
        text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn strict_sni_follows_the_certificate_the_connection_was_served() {
    let certs = Certs::new();
    let first = certs.server("first", &["a.test"]);
    let second = certs.server("second", &["b.test"]);
    let dirs = tempfile::tempdir().unwrap();
    let mut secret = Volume::create(&dirs.path().join("tls"), &as_refs(&files(&first)));
    let hello = Hello::spawn("h");
    let gw = Gateway::start(&format!(
        "[admin]\nlisten = \"127.0.0.1:{{{{port:admin}}}}\"\n[[listener]]\nname = \"https\"\nlisten = \"127.0.0.1:{{{{port:https}}}}\"\ntls = {{ certs = [\"{}\"] }}\nstrict_sni = true\n[upstream.u]\nservers = [\"{}\"]\n[[route]]\nupstream = \"u\"\n",
        secret.dir().display(),
        hello.addr
    ));
    let addr = gw.addr("https");
    tokio::task::block_in_place(|| {
        // Both handshakes get the first certificate (a.test), the only one.
        let covered = HalfOpen::start(addr, "a.test");
        let not_covered = HalfOpen::start(addr, "b.test");
        // The Secret now holds a certificate for b.test only: what the snapshot would
        // select for each name is the opposite of what was served.
        secret.update(&as_refs(&files(&second)));
        wait_until(APPLY, "the certificate reload", || {
            (gw.metric(SUCCESS)? >= 1.0).then_some(())
        });
        assert_eq!(covered.get("a.test"), 200, "{}", gw.log());
        assert_eq!(not_covered.get("b.test"), 421, "{}", gw.log());
        // New connections get the new certificate, and the same rule.
        assert_eq!(HalfOpen::start(addr, "b.test").get("b.test"), 200);
        assert_eq!(HalfOpen::start(addr, "a.test").get("a.test"), 421);
    });
}

/// A plain-HTTP config in a directory of its own: `/` to upstream `u` of `servers`,
/// re-read every `poll`, with `extra` lines (more routes) at the end.
fn plain_config(ports: &mut Ports, servers: &str, poll: &str, extra: &str) -> String {
    ports.render(&format!(
        "[admin]\nlisten = \"127.0.0.1:{{{{port:admin}}}}\"\n[reload]\npoll_interval = \"{poll}\"\n[[listener]]\nname = \"http\"\nlisten = \"127.0.0.1:{{{{port:http}}}}\"\n[upstream.u]\nservers = [{servers}]\n[[route]]\nupstream = \"u\"\n{extra}"
    ))
}

/// GET `/` on the plain listener: (status, instance, upstream connection number).
fn plain_get(gw: &Gateway) -> (u16, String, String) {
    let (status, out) = e2e::raw_get(gw.port("http"), "hello", "/", "");
    let header = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
            .unwrap_or("")
            .to_owned()
    };
    (
        status,
        header("x-hello-instance"),
        header("x-hello-connection"),
    )
}

#[test]
fn an_unchanged_upstream_keeps_its_pool_health_and_counts_across_a_reload() {
    let hello = Hello::spawn("h");
    // A port nothing listens on: its connects fail, and after 3 in a row (the passive
    // default) it is ejected for 10 s.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut ports = Ports::new();
    let servers = format!("\"{}\", \"{dead}\"", hello.addr);
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, plain_config(&mut ports, &servers, "1h", "")).unwrap();
    let gw = Gateway::run(&path, &ports, &[]);
    let unhealthy = "gateway_upstream_backends{upstream=\"u\",state=\"unhealthy\"}";
    // Round robin sends every other request to `dead` first, then retries on hello.
    let connection = wait_until(APPLY, "dead ejected", || {
        let (status, instance, conn) = plain_get(&gw);
        assert_eq!((status, instance.as_str()), (200, "h"));
        (gw.metric(unhealthy)? == 1.0).then_some(conn)
    });
    let success = format!(
        "gateway_upstream_requests_total{{upstream=\"u\",backend=\"{}\",outcome=\"success\"}}",
        hello.addr
    );
    let served = gw.metric(&success).unwrap();
    // A reload that changes only the routes.
    let route = "[[route]]\npath_prefix = \"/other\"\nupstream = \"u\"\n";
    std::fs::write(&path, plain_config(&mut ports, &servers, "1h", route)).unwrap();
    wait_until(APPLY, "the reload", || {
        (gw.metric(SUCCESS)? == 1.0).then_some(())
    });
    // Still ejected (a new upstream would start with both backends healthy), the same
    // pooled connection to hello, and its counts go on.
    assert_eq!(gw.metric(unhealthy), Some(1.0), "{}", gw.log());
    let (status, instance, conn) = plain_get(&gw);
    assert_eq!((status, instance.as_str()), (200, "h"));
    assert_eq!(
        conn, connection,
        "a new upstream connection after the reload"
    );
    assert_eq!(gw.metric(&success), Some(served + 1.0));
}

/// A config reached through a symlink into a directory nobody watches: the periodic
/// re-read (`poll_interval`) picks its change up by itself.
#[test]
fn the_periodic_re_read_applies_a_change_the_watcher_cannot_see() {
    let (a, b) = (Hello::spawn("a1"), Hello::spawn("b1"));
    let hidden = tempfile::tempdir().unwrap();
    let visible = tempfile::tempdir().unwrap();
    let mut ports = Ports::new();
    let real = hidden.path().join("real.toml");
    let servers = |h: &Hello| format!("\"{}\"", h.addr);
    std::fs::write(&real, plain_config(&mut ports, &servers(&a), "500ms", "")).unwrap();
    let path = visible.path().join("gateway.toml");
    std::os::unix::fs::symlink(&real, &path).unwrap();
    let gw = Gateway::run(&path, &ports, &[]);
    assert_eq!(plain_get(&gw).1, "a1");
    std::fs::write(&real, plain_config(&mut ports, &servers(&b), "500ms", "")).unwrap();
    wait_until(APPLY, "b1 serving after a re-read", || {
        (plain_get(&gw).1 == "b1").then_some(())
    });
    assert!(
        gw.log().contains("cause=\"periodic re-read\""),
        "{}",
        gw.log()
    );
}

/// The same bad files, read again and again by the periodic re-read, are reported and
/// counted once.
#[test]
fn the_same_bad_files_are_reported_once() {
    let hello = Hello::spawn("h");
    let dir = tempfile::tempdir().unwrap();
    let mut ports = Ports::new();
    let servers = format!("\"{}\"", hello.addr);
    let path = dir.path().join("gateway.toml");
    let good = plain_config(&mut ports, &servers, "100ms", "");
    std::fs::write(&path, &good).unwrap();
    let gw = Gateway::run(&path, &ports, &[("RUST_LOG", "info,gateway=debug")]);
    // Written beside and renamed in, so no half-written file is ever read.
    let tmp = dir.path().join(".gateway.toml.tmp");
    std::fs::write(&tmp, format!("{good}bogus = 1\n")).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    wait_until(APPLY, "the failure", || {
        (gw.metric(FAILURE)? >= 1.0).then_some(())
    });
    // Five re-reads after the failure (each logged: at DEBUG when it finds the files
    // unchanged).
    let reread = "cause=\"periodic re-read\"";
    wait_until(APPLY, "five re-reads of the bad files", || {
        let log = gw.log();
        let (_, after) = log.split_once("reload refused")?;
        (after.matches(reread).count() >= 5).then_some(())
    });
    assert_eq!(gw.metric(FAILURE), Some(1.0));
    let log = gw.log();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(log.matches("unknown field `bogus`").count(), 1, "{log}");
    assert_eq!(plain_get(&gw).0, 200, "the last good config serves");
}
