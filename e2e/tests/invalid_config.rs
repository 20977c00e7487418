//! Every bad config or certificate: `gateway check` and `gateway run` both refuse it
//! with a located message, a non-zero exit and no panic.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use e2e::{Certs, Gateway, Outcome};

/// A valid config around `listener_tls` (the listener's `tls = ...` line) and `rest`.
fn config(tls_line: &str, rest: &str) -> String {
    format!(
        r#"[[listener]]
name = "https"
listen = "127.0.0.1:{{{{port:https}}}}"
{tls_line}

[upstream.hello]
servers = ["127.0.0.1:9"]

[[route]]
path_prefix = "/"
upstream = "hello"
{rest}"#
    )
}

fn assert_refused(what: &str, out: &Outcome, expect: &[&str]) {
    assert_ne!(out.code, Some(0), "{what}: accepted: {out:?}");
    assert!(out.code.is_some(), "{what}: killed by a signal: {out:?}");
    for needle in expect {
        assert!(
            out.stderr.contains(needle),
            "{what}: {needle:?} not in stderr:\n{}",
            out.stderr
        );
    }
    for bad in ["panicked", "RUST_BACKTRACE", "stack backtrace"] {
        assert!(
            !out.stderr.contains(bad),
            "{what}: {bad} in stderr:\n{}",
            out.stderr
        );
    }
    assert!(!out.stdout.contains("ok"), "{what}: check printed ok");
}

#[test]
fn bad_configs_are_refused_with_their_location() {
    let certs = Certs::new();
    let good = certs.server("good", &["localhost"]);
    let other = certs.server("other", &["other.test"]);
    let mismatched = certs.path("mismatched");
    std::fs::create_dir_all(&mismatched).unwrap();
    std::fs::copy(good.join("tls.crt"), mismatched.join("tls.crt")).unwrap();
    std::fs::copy(other.join("tls.key"), mismatched.join("tls.key")).unwrap();
    let no_key = certs.path("no_key");
    std::fs::create_dir_all(&no_key).unwrap();
    std::fs::copy(good.join("tls.crt"), no_key.join("tls.crt")).unwrap();
    let garbage = certs.path("garbage");
    std::fs::create_dir_all(&garbage).unwrap();
    std::fs::write(
        garbage.join("tls.crt"),
        "-----BEGIN CERTIFICATE-----\nnot base64!\n",
    )
    .unwrap();
    std::fs::copy(good.join("tls.key"), garbage.join("tls.key")).unwrap();

    let tls = |dir: &std::path::Path| format!("tls = {{ certs = [\"{}\"] }}", dir.display());
    let good_tls = tls(&good);
    let cases: Vec<(&str, String, Vec<String>)> = vec![
        (
            "unknown key",
            config(&good_tls, "[server]\nthread = 2\n"),
            vec![
                "line 13, column 1".into(),
                "unknown field `thread`, expected one of `threads`".into(),
            ],
        ),
        (
            "route to an unknown upstream",
            config(
                &good_tls,
                "[[route]]\npath_prefix = \"/x\"\nupstream = \"helo\"\n",
            ),
            vec![
                ":14:12: route names upstream \"helo\", which is not defined (defined: hello)"
                    .into(),
            ],
        ),
        (
            "duplicate listener name",
            config(
                &good_tls,
                "[[listener]]\nname = \"https\"\nlisten = \"127.0.0.1:{{port:other}}\"\n",
            ),
            vec![":13:8: listener name \"https\" is already used at line 2".into()],
        ),
        (
            "duplicate listener address",
            config(
                &good_tls,
                "[[listener]]\nname = \"b\"\nlisten = \"0.0.0.0:{{port:https}}\"\n",
            ),
            vec![
                ":14:10: address 0.0.0.0:".into(),
                "is already used by listener \"https\"".into(),
            ],
        ),
        (
            "empty servers",
            config(&good_tls, "[upstream.none]\nservers = []\n"),
            vec![":13:11: upstream \"none\" has no servers".into()],
        ),
        (
            "malformed host:port",
            config(
                &good_tls,
                "[upstream.bad]\nservers = [\"hello\", \"hello:http\"]\n",
            ),
            vec![
                ":13:12: \"hello\" is not a server address".into(),
                ":13:21: \"hello:http\" is not a server address".into(),
            ],
        ),
        (
            "cert dir without files",
            config(&tls(&certs.path("missing")), ""),
            vec![
                ":4:18: bad certificate directory: cannot read".into(),
                "missing/tls.crt".into(),
            ],
        ),
        (
            "cert dir without tls.key",
            config(&tls(&no_key), ""),
            vec![
                ":4:18: bad certificate directory: cannot read".into(),
                "no_key/tls.key".into(),
            ],
        ),
        (
            "key that does not match its certificate",
            config(&tls(&mismatched), ""),
            vec![
                ":4:18: bad certificate directory".into(),
                "tls.key does not match the public key".into(),
            ],
        ),
        (
            "certificate that is not PEM",
            config(&tls(&garbage), ""),
            vec![
                ":4:18: bad certificate directory".into(),
                "garbage/tls.crt is not valid PEM".into(),
            ],
        ),
        (
            "TOML syntax error",
            config(&good_tls, "[[route]\n"),
            vec!["gateway.toml: invalid config: TOML parse error at line 12, column".into()],
        ),
    ];
    for (what, text, expect) in &cases {
        let expect: Vec<&str> = expect.iter().map(String::as_str).collect();
        let check = Gateway::check(text);
        assert_refused(&format!("check: {what}"), &check, &expect);
        assert_eq!(check.code, Some(1), "check exits 1");
        assert!(
            check.stderr.contains("gateway.toml"),
            "{what}: file not named:\n{}",
            check.stderr
        );
        let run = Gateway::run_expecting_exit(text);
        assert_refused(&format!("run: {what}"), &run, &expect);
    }
}

#[test]
fn every_error_is_printed_not_just_the_first() {
    let out = Gateway::check(&config(
        "tls = { certs = [\"/nonexistent/a\", \"/nonexistent/b\"] }",
        "[upstream.none]\nservers = []\n",
    ));
    // Config errors are reported before certificates are read.
    assert!(
        out.stderr.contains("upstream \"none\" has no servers"),
        "{}",
        out.stderr
    );
    let out = Gateway::check(&config(
        "tls = { certs = [\"/nonexistent/a\", \"/nonexistent/b\"] }",
        "",
    ));
    assert_eq!(out.stderr.matches("error:").count(), 2, "{}", out.stderr);
}

#[test]
fn a_missing_config_file_is_an_error() {
    let out = Gateway::command(
        &["check", "--config"],
        std::path::Path::new("/nonexistent/gateway.toml"),
    );
    assert_refused(
        "missing file",
        &out,
        &["/nonexistent/gateway.toml: cannot read config file"],
    );
}

#[test]
fn a_taken_port_stops_run_with_the_listener_named() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let certs = Certs::new();
    let good = certs.server("good", &["localhost"]);
    let text = config(&format!("tls = {{ certs = [\"{}\"] }}", good.display()), "")
        .replace("{{port:https}}", &port.to_string());
    let out = Gateway::run_expecting_exit(&text);
    assert_refused(
        "taken port",
        &out,
        &[
            &format!(":1:1: listener \"https\" cannot listen on 127.0.0.1:{port}"),
            "in use",
        ],
    );
}

#[test]
fn a_taken_admin_port_is_located_too() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = Gateway::run_expecting_exit(&format!(
        "[admin]\nlisten = \"127.0.0.1:{port}\"\n[upstream.u]\nservers = [\"127.0.0.1:9\"]\n"
    ));
    assert_refused(
        "taken admin port",
        &out,
        &[&format!(
            ":2:10: listener \"admin\" cannot listen on 127.0.0.1:{port}"
        )],
    );
}

#[test]
fn config_path_comes_from_gateway_config_when_not_given() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("from-env.toml");
    std::fs::write(&path, "[upstream.u]\nservers = []\n").unwrap();
    let out = std::process::Command::new(e2e::gateway_bin())
        .arg("check")
        .env("GATEWAY_CONFIG", &path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("from-env.toml:2:11: upstream \"u\" has no servers"),
        "{stderr}"
    );
    let out = std::process::Command::new(e2e::gateway_bin())
        .arg("check")
        .env_remove("GATEWAY_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/etc/gateway/config/gateway.toml"),
        "default path: {stderr}"
    );
}

#[test]
fn expired_and_future_certificates_load_with_a_warning() {
    let certs = Certs::new();
    let expired = certs.server_valid("expired", &["localhost"], (2020, 1, 1), (2021, 1, 1));
    let future = certs.server_valid("future", &["localhost"], (2090, 1, 1), (2091, 1, 1));
    for (dir, warning) in [(expired, "certificate expired"), (future, "not valid yet")] {
        let out = Gateway::check(&config(
            &format!("tls = {{ certs = [\"{}\"] }}", dir.display()),
            "",
        ));
        assert_eq!(out.code, Some(0), "{out:?}");
        assert_eq!(out.stdout.trim(), "ok");
        assert!(out.stderr.contains("WARN"), "{}", out.stderr);
        assert!(out.stderr.contains(warning), "{}", out.stderr);
        assert!(out.stderr.contains("gateway.toml:4:18"), "{}", out.stderr);
    }
}

#[test]
fn version_is_printed() {
    let out = std::process::Command::new(e2e::gateway_bin())
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("gateway "));
}
