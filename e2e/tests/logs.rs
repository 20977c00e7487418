//! The log switches of the README's "Command line" section: `--log-format json` on the
//! command line, the default filter (`info,pingora_core=warn`), `RUST_LOG=info,access=off`
//! silencing the access log alone, access lines written by time (not only when more lines
//! fill the buffer), and the cuts that keep a long access line within one 4 KiB write.
//!
//! Every gateway here starts with `RUST_LOG` and `GATEWAY_LOG_FORMAT` removed from its
//! environment unless the test sets them: what a developer's shell holds does not change
//! what is tested.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use e2e::{wait_until, Gateway, Hello};

/// How long a log line may take to appear, or the gateway to exit: a safety net on a
/// loaded machine, not a measured bound.
const DEADLINE: Duration = Duration::from_secs(30);

/// A plain listener `http` in front of `backend`, with `/dead` routed to a closed port.
fn template(backend: SocketAddr, listener: &str) -> String {
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    format!(
        "[[listener]]\nname = \"{listener}\"\nlisten = \"127.0.0.1:{{{{port:http}}}}\"\n[upstream.hello]\nservers = [\"{backend}\"]\n[upstream.dead]\nservers = [\"{closed}\"]\nretries = 0\n[[route]]\nupstream = \"hello\"\n[[route]]\npath_prefix = \"/dead\"\nupstream = \"dead\"\n"
    )
}

/// A gateway on `template` with `RUST_LOG` and `GATEWAY_LOG_FORMAT` removed, then `env`
/// set and `args` appended to `gateway run --config FILE`.
fn gateway(template: &str, env: &[(&str, &str)], args: &[&str]) -> Gateway {
    Gateway::start_with(template, |mut command: Command| {
        command
            .env_remove("RUST_LOG")
            .env_remove("GATEWAY_LOG_FORMAT")
            .envs(env.iter().copied())
            .args(args);
        command
    })
}

/// One GET on a new connection: the whole response.
fn get(port: u16, method: &str, host: &str, path: &str, headers: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(e2e::READ_TIMEOUT)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The level and target of a text log line (`<time> LEVEL target: ...`).
fn level_and_target(line: &str) -> Option<(&str, &str)> {
    let mut words = line.split_whitespace().skip(1);
    let level = words.next()?;
    let target = words.next()?.strip_suffix(':')?;
    Some((level, target))
}

/// Whether `target` is `name` or one of its modules.
fn in_crate(target: &str, name: &str) -> bool {
    target == name || target.starts_with(&format!("{name}::"))
}

/// Waits for a log line containing `text`.
fn wait_for_line(gw: &Gateway, text: &str) -> String {
    wait_until(DEADLINE, &format!("a log line with {text:?}"), || {
        gw.log()
            .lines()
            .find(|l| l.contains(text))
            .map(str::to_owned)
    })
}

/// SIGINT, then waits for the exit: every buffered access line is written by then.
fn stop(gw: &mut Gateway) -> String {
    gw.signal("INT");
    assert!(gw.wait_exit(DEADLINE).is_some(), "no exit after SIGINT");
    gw.log()
}

#[test]
fn log_format_json_is_a_command_line_flag() {
    let hello = Hello::spawn("h");
    let mut gw = gateway(
        &template(hello.addr, "http"),
        &[],
        &["--log-format", "json"],
    );
    let port = gw.port("http");
    assert!(get(port, "GET", "hello", "/", "X-Request-Id: flag-1\r\n").starts_with("HTTP/1.1 200"));
    assert!(get(port, "GET", "hello", "/dead", "").starts_with("HTTP/1.1 502"));
    let access = wait_for_line(&gw, "flag-1");
    let warned = wait_for_line(&gw, "request failed");
    let log = stop(&mut gw);
    let v: serde_json::Value =
        serde_json::from_str(&access).unwrap_or_else(|e| panic!("{e}: {access}"));
    assert_eq!(
        (&v["target"], &v["status"], &v["path"]),
        (&"access".into(), &200.into(), &"/".into()),
        "{access}"
    );
    // The other events too, with their fields at the top level.
    let v: serde_json::Value = serde_json::from_str(&warned).unwrap();
    assert_eq!(v["level"], "WARN", "{warned}");
    assert_eq!(v["listener"], "http", "{warned}");
    for line in log.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
}

#[test]
fn the_default_filter_is_info_with_pingora_core_at_warn() {
    let hello = Hello::spawn("h");
    // RUST_LOG unset: the default filter. (No test provokes a pingora_core WARN any more:
    // the one it could, pingora's HTTP/1 client reading past a Content-Length, left the
    // request path with the gateway's own codec; the filter's `pingora_core=warn` is
    // shown by the INFO lines it hides below.)
    let mut gw = gateway(&template(hello.addr, "http"), &[], &[]);
    let resp = get(
        gw.port("http"),
        "GET",
        "hello",
        "/",
        "X-Request-Id: dflt-1\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    wait_for_line(&gw, "dflt-1");
    let log = stop(&mut gw);
    assert!(
        log.contains("INFO gateway::lifecycle: SIGINT"),
        "the gateway's own INFO is shown:\n{log}"
    );
    for line in log.lines() {
        let (level, target) = level_and_target(line).unwrap_or_else(|| panic!("{line}"));
        assert!(
            matches!(level, "INFO" | "WARN" | "ERROR"),
            "nothing below INFO: {line}"
        );
        assert!(
            !(level == "INFO" && in_crate(target, "pingora_core")),
            "pingora_core's INFO is not shown: {line}"
        );
    }

    // The control: pingora_core does log at INFO (its bootstrap), which `RUST_LOG=info`
    // shows; the default hides it.
    let mut gw = gateway(&template(hello.addr, "http"), &[("RUST_LOG", "info")], &[]);
    let log = stop(&mut gw);
    assert!(
        log.lines().any(|l| level_and_target(l)
            .is_some_and(|(level, t)| level == "INFO" && in_crate(t, "pingora_core"))),
        "{log}"
    );
}

#[test]
fn rust_log_access_off_silences_the_access_log_and_nothing_else() {
    let hello = Hello::spawn("h");
    // The same traffic under `info` and under `info,access=off`: access lines in the
    // first log only, everything else in both.
    let mut logs = Vec::new();
    for filter in ["info", "info,access=off"] {
        let mut gw = gateway(&template(hello.addr, "http"), &[("RUST_LOG", filter)], &[]);
        let port = gw.port("http");
        for _ in 0..3 {
            assert!(get(port, "GET", "hello", "/", "").starts_with("HTTP/1.1 200"));
        }
        assert!(get(port, "GET", "hello", "/dead", "").starts_with("HTTP/1.1 502"));
        wait_for_line(&gw, "request failed");
        logs.push(stop(&mut gw));
    }
    let access = |log: &str| {
        log.lines()
            .filter(|l| level_and_target(l).is_some_and(|(_, t)| t == "access"))
            .count()
    };
    assert_eq!(access(&logs[0]), 4, "{}", logs[0]);
    assert_eq!(access(&logs[1]), 0, "{}", logs[1]);
    for text in [
        "WARN gateway::proxy: request failed",
        "INFO gateway::lifecycle: SIGINT",
        "INFO pingora_core::server: Server starting",
    ] {
        assert!(
            logs[1].contains(text),
            "{text:?} is still logged:\n{}",
            logs[1]
        );
    }
}

#[test]
fn an_access_line_is_written_by_time_without_more_traffic() {
    let hello = Hello::spawn("h");
    // No admin listener: nothing but this one request reaches the gateway.
    let gw = gateway(&template(hello.addr, "http"), &[], &[]);
    let resp = get(
        gw.port("http"),
        "GET",
        "hello",
        "/",
        "X-Request-Id: alone-1\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    // Buffered, the line is written at most 200 ms later by the flush timer; were it
    // written only when more lines fill the buffer (or at exit), it would never come.
    let started = std::time::Instant::now();
    let line = wait_for_line(&gw, "alone-1");
    assert!(line.contains(" INFO access: "), "{line}");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "written after {took:?}");
}

/// The value of `field` in a text access line: `field=VALUE ` or `field="VALUE" `.
fn text_field<'a>(line: &'a str, field: &str) -> &'a str {
    let start = line.find(&format!(" {field}=")).unwrap() + field.len() + 2;
    let rest = &line[start..];
    match rest.strip_prefix('"') {
        Some(quoted) => &quoted[..quoted.find('"').unwrap()],
        None => rest.split(' ').next().unwrap(),
    }
}

#[test]
fn a_long_access_line_has_host_path_and_the_other_text_fields_cut() {
    let hello = Hello::spawn("h");
    let listener = "l".repeat(300);
    let method = "M".repeat(300);
    let host = "h".repeat(1000);
    let path = format!("/{}", "p".repeat(6000));
    for format in ["text", "json"] {
        let gw = gateway(
            &template(hello.addr, &listener),
            &[("GATEWAY_LOG_FORMAT", format)],
            &[],
        );
        let resp = get(
            gw.port("http"),
            &method,
            &host,
            &path,
            "X-Request-Id: cut-1\r\n",
        );
        assert!(resp.starts_with("HTTP/1.1 "), "{format}: {resp}");
        let line = wait_for_line(&gw, "cut-1");
        assert!(line.len() < 4096, "{format}: {} bytes", line.len());
        let field = |name: &str| -> String {
            if format == "json" {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                v[name].as_str().unwrap().to_owned()
            } else {
                text_field(&line, name).to_owned()
            }
        };
        // Cut where access.rs says: each value keeps its first bytes, then `…`.
        for (name, value, kept) in [
            ("path", path.as_str(), 1024),
            ("host", host.as_str(), 512),
            ("method", method.as_str(), 128),
            ("listener", listener.as_str(), 128),
        ] {
            let logged = field(name);
            assert_eq!(
                logged,
                format!("{}…", &value[..kept]),
                "{format}: {name} is cut at {kept} bytes"
            );
        }
        assert_eq!(field("request_id"), "cut-1", "{format}: not cut");
        assert_eq!(field("client"), "127.0.0.1", "{format}");
    }
}
