//! Backends behind TLS: hello serving HTTPS, verified against the upstream's `tls.ca`
//! and `server_name`; a wrong CA or name is a 502 logged with the reason; a backend
//! that requires a client certificate gets `tls.client_cert`; `protocol = "auto"` and
//! `"h2"` reach it over HTTP/2 by ALPN; a rotated CA applies live; bad files are
//! located errors; `insecure_skip_verify` is a WARN at every load.

use std::path::Path;
use std::time::Duration;

use e2e::{raw_get, wait_until, Certs, Gateway, Hello};

fn any_port() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().expect("literal address")
}

fn text(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// hello over HTTPS with a certificate for `hello.internal` from `certs`' CA, with
/// extra flags (`--client-ca FILE`).
fn https_hello(certs: &Certs, name: &str, flags: &[&str]) -> Hello {
    let dir = certs.server(name, &["hello.internal"]);
    let mut all = vec!["--tls-dir", text(&dir)];
    all.extend_from_slice(flags);
    Hello::spawn_with(name, any_port(), &all)
}

/// A gateway with a plain listener `http` in front of `hello` with upstream lines
/// `upstream`.
fn gateway(hello: &Hello, upstream: &str) -> Gateway {
    Gateway::start(&format!(
        "[[listener]]\nname = \"http\"\nlisten = \"127.0.0.1:{{{{port:http}}}}\"\n\n\
         [upstream.hello]\nservers = [\"{}\"]\nconnect_timeout = \"2s\"\n{upstream}\n\n\
         [[route]]\npath_prefix = \"/\"\nupstream = \"hello\"\n",
        hello.addr
    ))
}

fn get(gw: &Gateway) -> (u16, String) {
    raw_get(gw.port("http"), "shop.test", "/", "")
}

/// The CA directory of `certs` (its `ca.crt`, as a Secret with that key mounts it).
fn ca_dir(certs: &Certs) -> String {
    let ca = certs.ca();
    text(ca.parent().expect("ca dir")).to_owned()
}

#[test]
fn an_https_backend_is_verified_against_the_upstreams_ca_and_name() {
    let certs = Certs::new();
    let hello = https_hello(&certs, "secure", &[]);
    let gw = gateway(
        &hello,
        &format!(
            "tls = {{ ca = \"{}\", server_name = \"hello.internal\" }}",
            ca_dir(&certs)
        ),
    );
    let (status, out) = get(&gw);
    assert_eq!(status, 200, "{out}");
    assert!(out.contains("x-hello-instance: secure"), "{out}");
    assert!(out.contains("HTTP/1.1"), "http1 over TLS: {out}");
}

#[test]
fn a_wrong_ca_or_name_is_a_502_logged_with_the_reason() {
    let certs = Certs::new();
    let other = Certs::new();
    let hello = https_hello(&certs, "secure", &[]);
    // Another CA signed nothing hello serves.
    let _ = other.server("unused", &["x.test"]);
    let gw = gateway(
        &hello,
        &format!(
            "tls = {{ ca = \"{}\", server_name = \"hello.internal\" }}\nretries = 0",
            ca_dir(&other)
        ),
    );
    let (status, out) = get(&gw);
    assert_eq!(status, 502, "{out}");
    wait_until(Duration::from_secs(10), "the reason in the log", || {
        let log = gw.log();
        let reason = "cannot connect to backend: ";
        let line = log.lines().find(|l| l.contains(reason))?;
        let backend = format!("backend={}", hello.addr);
        (line.contains("invalid peer certificate") && line.contains(&backend)).then_some(())
    });
    // The right CA, a name the certificate does not have.
    let named = gateway(
        &hello,
        &format!(
            "tls = {{ ca = \"{}\", server_name = \"other.internal\" }}\nretries = 0",
            ca_dir(&certs)
        ),
    );
    assert_eq!(get(&named).0, 502);
    wait_until(
        Duration::from_secs(10),
        "the name mismatch in the log",
        || {
            let log = named.log();
            log.lines()
                .any(|l| l.contains("certificate not valid for name \"other.internal\""))
                .then_some(())
        },
    );
}

#[test]
fn a_backend_requiring_a_client_certificate_gets_the_upstreams() {
    let certs = Certs::new();
    let ca = certs.ca();
    let hello = https_hello(&certs, "strict", &["--client-ca", text(&ca)]);
    let without = gateway(
        &hello,
        &format!(
            "tls = {{ ca = \"{}\", server_name = \"hello.internal\" }}\nretries = 0",
            ca_dir(&certs)
        ),
    );
    assert_eq!(
        get(&without).0,
        502,
        "no client certificate: refused by hello"
    );
    let client = certs.client("gw-client", "frontend gateway");
    let with = gateway(
        &hello,
        &format!(
            "tls = {{ ca = \"{}\", server_name = \"hello.internal\", client_cert = \"{}\" }}",
            ca_dir(&certs),
            text(&client)
        ),
    );
    let (status, out) = get(&with);
    assert_eq!(status, 200, "{out}");
    assert!(out.contains("x-client-cn: frontend gateway"), "{out}");
}

#[test]
fn auto_and_h2_reach_an_https_backend_over_http2() {
    let certs = Certs::new();
    let hello = https_hello(&certs, "secure", &[]);
    for protocol in ["auto", "h2"] {
        let gw = gateway(
            &hello,
            &format!(
                "protocol = \"{protocol}\"\ntls = {{ ca = \"{}\", server_name = \"hello.internal\" }}",
                ca_dir(&certs)
            ),
        );
        let mut connections = std::collections::BTreeSet::new();
        for _ in 0..4 {
            let (status, out) = get(&gw);
            assert_eq!(status, 200, "{protocol}: {out}");
            assert!(
                out.contains("HTTP/2.0"),
                "{protocol}: hello saw HTTP/2: {out}"
            );
            let number = out.lines().find(|l| l.starts_with("x-hello-connection:"));
            connections.insert(number.expect("hello numbers its connections").to_owned());
        }
        // One connection carries the requests.
        assert_eq!(connections.len(), 1, "{protocol}: {connections:?}");
    }
}

#[test]
fn a_rotated_ca_applies_without_a_restart() {
    let certs = Certs::new();
    let next = Certs::new();
    let hello = https_hello(&certs, "old", &[]);
    let ca = tempfile::tempdir().expect("tempdir");
    std::fs::copy(certs.ca(), ca.path().join("ca.crt")).expect("copy CA");
    let upstream = |hello: &Hello| {
        format!(
            "[[listener]]\nname = \"http\"\nlisten = \"127.0.0.1:{{{{port:http}}}}\"\n\n\
             [upstream.hello]\nservers = [\"{}\"]\ntls = {{ ca = \"{}\", server_name = \"hello.internal\" }}\n\n\
             [[route]]\npath_prefix = \"/\"\nupstream = \"hello\"\n",
            hello.addr,
            text(ca.path())
        )
    };
    let gw = Gateway::start(&upstream(&hello));
    assert_eq!(get(&gw).0, 200);
    // The backend moves to a certificate of the next CA, on the same address.
    let addr = hello.addr;
    drop(hello);
    let dir = next.server("new", &["hello.internal"]);
    let _new = Hello::spawn_with("new", addr, &["--tls-dir", text(&dir)]);
    wait_until(
        Duration::from_secs(10),
        "the old CA refusing the new certificate",
        || (get(&gw).0 == 502).then_some(()),
    );
    // The CA Secret is updated (written whole, then moved in): the next connection
    // verifies with it.
    let staged = ca.path().join("ca.crt.next");
    std::fs::copy(next.ca(), &staged).expect("copy CA");
    std::fs::rename(&staged, ca.path().join("ca.crt")).expect("rename");
    let (_, out) = wait_until(Duration::from_secs(10), "the new CA applied", || {
        let got = get(&gw);
        (got.0 == 200).then_some(got)
    });
    assert!(out.contains("x-hello-instance: new"), "{out}");
}

#[test]
fn unreadable_or_mismatched_files_are_located_errors() {
    let certs = Certs::new();
    let empty = tempfile::tempdir().expect("tempdir");
    let check = |tls: &str| {
        Gateway::check(&format!(
            "[[listener]]\nname = \"http\"\nlisten = \"127.0.0.1:{{{{port:http}}}}\"\n\n\
             [upstream.u]\nservers = [\"127.0.0.1:1\"]\n{tls}\n\n[[route]]\nupstream = \"u\"\n"
        ))
    };
    let out = check(&format!("tls = {{ ca = \"{}\" }}", text(empty.path())));
    assert_ne!(out.code, Some(0));
    assert!(
        out.stderr.contains(":7:14: bad upstream CA directory") && out.stderr.contains("ca.crt"),
        "{}",
        out.stderr
    );
    // A client certificate whose key is another one's.
    let a = certs.client("a", "a");
    let b = certs.client("b", "b");
    std::fs::copy(b.join("tls.key"), a.join("tls.key")).expect("copy key");
    let out = check(&format!("tls = {{ client_cert = \"{}\" }}", text(&a)));
    assert_ne!(out.code, Some(0));
    assert!(
        out.stderr
            .contains(":7:23: bad upstream client certificate directory")
            && out.stderr.contains("does not match"),
        "{}",
        out.stderr
    );
}

#[test]
fn insecure_skip_verify_serves_and_warns_at_every_load() {
    let certs = Certs::new();
    let stranger = Certs::new();
    let _ = stranger.server("unused", &["x.test"]);
    let hello = https_hello(&stranger, "anyone", &[]);
    let _ = &certs;
    let gw = gateway(&hello, "tls = { insecure_skip_verify = true }");
    assert_eq!(get(&gw).0, 200, "nothing verified");
    let warning = "tls.insecure_skip_verify = true: backend certificates are not verified";
    assert_eq!(gw.log().matches(warning).count(), 1, "{}", gw.log());
    gw.signal("HUP");
    wait_until(
        Duration::from_secs(10),
        "the warning again on reload",
        || (gw.log().matches(warning).count() == 2).then_some(()),
    );
}

#[test]
fn active_checks_run_over_tls_and_http2() {
    let certs = Certs::new();
    let good = https_hello(&certs, "good", &[]);
    let failing = https_hello(&certs, "failing", &["--fail-health"]);
    for protocol in ["http1", "auto"] {
        let gw = Gateway::start(&format!(
            "[[listener]]\nname = \"http\"\nlisten = \"127.0.0.1:{{{{port:http}}}}\"\n\n\
             [upstream.hello]\nservers = [\"{}\", \"{}\"]\nprotocol = \"{protocol}\"\n\
             tls = {{ ca = \"{}\", server_name = \"hello.internal\" }}\n\
             health = {{ path = \"/healthz\", interval = \"100ms\", unhealthy_after = 1 }}\n\n\
             [[route]]\npath_prefix = \"/\"\nupstream = \"hello\"\n",
            good.addr,
            failing.addr,
            ca_dir(&certs)
        ));
        let verdict = format!("backend={}", failing.addr);
        wait_until(
            Duration::from_secs(10),
            "the failing backend ejected",
            || {
                let log = gw.log();
                let mut lines = log.lines();
                lines
                    .any(|l| {
                        l.contains("backend is now unhealthy (active check)")
                            && l.contains(&verdict)
                    })
                    .then_some(())
            },
        );
        for _ in 0..6 {
            let (status, out) = get(&gw);
            assert_eq!(status, 200, "{protocol}: {out}");
            assert!(out.contains("x-hello-instance: good"), "{protocol}: {out}");
        }
        // The good one passes its checks: never reported unhealthy.
        let good_backend = format!("backend={}", good.addr);
        assert!(
            !gw.log()
                .lines()
                .any(|l| l.contains("unhealthy") && l.contains(&good_backend)),
            "{protocol}: {}",
            gw.log()
        );
    }
}
