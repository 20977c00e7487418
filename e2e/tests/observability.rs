//! Metrics and logs: /metrics is valid Prometheus exposition and its counters move
//! with traffic; the JSON access log carries the right fields; X-Request-Id is kept
//! or generated, passed upstream and returned.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use e2e::{http_get, wait_until, Gateway, Hello};

fn gateway(hello: &Hello, env: &[(&str, &str)]) -> Gateway {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    Gateway::start_with_env(
        &format!(
            "[admin]\nlisten = \"127.0.0.1:{{{{port:admin}}}}\"\n[[listener]]\nname = \"http\"\nlisten = \"127.0.0.1:{{{{port:http}}}}\"\n[upstream.hello]\nservers = [\"{}\"]\n[upstream.dead]\nservers = [\"{closed}\"]\nretries = 0\n[[route]]\npath_prefix = \"/\"\nupstream = \"hello\"\n[[route]]\npath_prefix = \"/dead\"\nupstream = \"dead\"\n[[route]]\nhost = \"only.test\"\npath_prefix = \"/x\"\nupstream = \"hello\"\n",
            hello.addr
        ),
        env,
    )
}

/// Parses `text` with the Prometheus client library's exposition parser; returns
/// `name{labels} value` lines as it understood them, or the parse error.
fn parse_exposition(text: &str) -> Result<String, String> {
    let script = "import sys\nfrom prometheus_client.parser import text_string_to_metric_families as parse\nfor fam in parse(sys.stdin.read()):\n    for s in fam.samples:\n        labels = ','.join(f'{k}={v}' for k, v in sorted(s.labels.items()))\n        print(f'{s.name}{{{labels}}} {s.value}')\n";
    let mut child = Command::new(e2e::python3())
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 with prometheus-client: run `e2e/setup.sh test` (e2e/test.sh does)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn metrics_are_valid_prometheus_text_and_move_with_traffic() {
    let hello = Hello::spawn("h");
    let gw = gateway(&hello, &[]);
    let port = gw.port("http");
    let (_, before) = gw.admin_get("/metrics");
    parse_exposition(&before).unwrap();
    for _ in 0..5 {
        assert_eq!(http_get(port, "/", "").0, 200);
    }
    assert_eq!(http_get(port, "/dead/1", "").0, 502);
    // A backend's failure is a WARN (a client's own doings never are: log_noise.rs).
    let warned = wait_until(std::time::Duration::from_secs(5), "the WARN", || {
        gw.log()
            .lines()
            .find(|l| l.contains("request failed"))
            .map(str::to_owned)
    });
    assert_eq!(warned.split_whitespace().nth(1), Some("WARN"), "{warned}");
    assert!(warned.contains("Upstream"), "{warned}");
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /x HTTP/1.1\r\nHost: only.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");

    // Enough CPU time that the process metric cannot be a constant 0 and still pass
    // (scrapes: they leave the request counters below as they are).
    let ticks_before = wait_until(
        std::time::Duration::from_secs(60),
        "the gateway to use 3 clock ticks of CPU",
        || {
            gw.admin_get("/metrics");
            let ticks = cpu_ticks(gw.pid());
            (ticks >= 3).then_some(ticks)
        },
    );
    let (status, text) = gw.admin_get("/metrics");
    let ticks_after = cpu_ticks(gw.pid());
    assert_eq!(status, 200);
    let samples = parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let value = |line: &str| {
        samples
            .lines()
            .find_map(|l| l.strip_prefix(line)?.strip_prefix(' ')?.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {line} in\n{samples}"))
    };
    assert_eq!(
        value("gateway_requests_total{code=200,listener=http,route=/,upstream=hello}"),
        5.0
    );
    assert_eq!(
        value("gateway_requests_total{code=502,listener=http,route=/dead,upstream=dead}"),
        1.0
    );
    assert_eq!(
        value("gateway_requests_total{code=200,listener=http,route=only.test/x,upstream=hello}"),
        1.0
    );
    assert_eq!(
        value("gateway_request_duration_seconds_count{route=/,upstream=hello}"),
        5.0
    );
    assert_eq!(
        value("gateway_request_duration_seconds_bucket{le=+Inf,route=/,upstream=hello}"),
        5.0
    );
    let backend = format!("backend={},outcome=success,upstream=hello", hello.addr);
    assert_eq!(
        value(&format!("gateway_upstream_requests_total{{{backend}}}")),
        6.0
    );
    assert!(value("process_resident_memory_bytes{}") > 1e6);
    assert!(value("process_open_fds{}") > 3.0);
    let hz = clock_ticks_per_second();
    let cpu = value("process_cpu_seconds_total{}");
    assert!(
        (ticks_before as f64 / hz..=ticks_after as f64 / hz).contains(&cpu),
        "process_cpu_seconds_total {cpu} outside /proc's {ticks_before}..={ticks_after} ticks at {hz} Hz"
    );
    assert_eq!(value("gateway_config_last_reload_success{}"), 1.0);
}

/// User + system CPU time of process `pid` in clock ticks, from `/proc/PID/stat`.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let (utime, stime) = (fields[11], fields[12]);
    utime.parse::<u64>().unwrap() + stime.parse::<u64>().unwrap()
}

/// The kernel's clock ticks per second for `/proc` times (`getconf CLK_TCK`).
fn clock_ticks_per_second() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// One request with raw `headers`; returns the response head.
fn request(port: u16, path: &str, headers: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: hello\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn header<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[test]
fn json_access_log_and_request_ids() {
    let hello = Hello::spawn("h");
    let gw = gateway(&hello, &[("GATEWAY_LOG_FORMAT", "json")]);
    let port = gw.port("http");

    // A client's id is kept, passed upstream and returned.
    let resp = request(port, "/?echo_headers=1", "X-Request-Id: client-id-1\r\n");
    assert_eq!(header(&resp, "x-request-id"), Some("client-id-1"), "{resp}");
    assert!(
        resp.contains("x-request-id: client-id-1"),
        "upstream saw it: {resp}"
    );
    // Without one, an id is generated, the same upstream and back.
    let resp = request(port, "/?echo_headers=1", "");
    let id = header(&resp, "x-request-id").unwrap().to_owned();
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    assert!(resp.contains(&format!("x-request-id: {id}")), "{resp}");
    // Answers the gateway writes itself carry it too.
    let resp = request(port, "/dead/1", "X-Request-Id: client-id-2\r\n");
    assert!(
        resp.starts_with("HTTP/1.1 502") && header(&resp, "x-request-id") == Some("client-id-2"),
        "{resp}"
    );
    // An id that is not 1 to 128 visible ASCII characters is replaced by a new one, sent
    // upstream and logged in its place (so no client writes what it likes in the log).
    let too_long = "x".repeat(129);
    for bad in [too_long.as_str(), "a b", "caf\u{e9}"] {
        let resp = request(
            port,
            "/?echo_headers=1",
            &format!("X-Request-Id: {bad}\r\n"),
        );
        let id = header(&resp, "x-request-id").unwrap_or("").to_owned();
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{bad:?} kept: {resp}"
        );
        assert!(resp.contains(&format!("x-request-id: {id}\n")), "{resp}");
        assert!(!resp.contains(bad), "{bad:?} reached the backend: {resp}");
    }
    let bytes = request(port, "/?size=1234", "X-Request-Id: sized\r\n");
    assert!(bytes.starts_with("HTTP/1.1 200"), "{bytes}");

    let line = wait_until(std::time::Duration::from_secs(5), "access line", || {
        gw.log()
            .lines()
            .find(|l| l.contains("client-id-1"))
            .map(str::to_owned)
    });
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["target"], "access", "{line}");
    assert_eq!(v["listener"], "http", "{line}");
    assert!(v["timestamp"].is_string(), "{line}");
    assert_eq!(v["client"], "127.0.0.1", "{line}");
    assert_eq!(v["method"], "GET", "{line}");
    assert_eq!(v["host"], "hello", "{line}");
    assert_eq!(v["path"], "/", "{line}");
    assert_eq!(v["status"], 200, "{line}");
    assert_eq!(v["upstream"], hello.addr.to_string(), "{line}");
    assert_eq!(v["request_id"], "client-id-1", "{line}");
    assert!(v["bytes"].as_u64().unwrap() > 0, "{line}");
    assert!(
        v["duration_ms"].as_str().unwrap().parse::<f64>().unwrap() > 0.0,
        "{line}"
    );
    // `bytes` is the response body's length, not the head's or the whole response's.
    let sized = wait_until(std::time::Duration::from_secs(5), "sized line", || {
        gw.log()
            .lines()
            .find(|l| l.contains("\"sized\""))
            .map(str::to_owned)
    });
    let v: serde_json::Value = serde_json::from_str(&sized).unwrap();
    assert_eq!(v["bytes"], 1234, "{sized}");
    // The replaced ids are not in the log either.
    assert!(!gw.log().contains("a b"), "{}", gw.log());
    for l in gw.log().lines() {
        serde_json::from_str::<serde_json::Value>(l)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_handshakes_and_open_connections_are_counted() {
    let hello = Hello::spawn("h");
    let certs = e2e::Certs::new();
    let tls = certs.server("tls", &["localhost"]);
    let template = format!(
        "[admin]\nlisten = \"127.0.0.1:{{{{port:admin}}}}\"\n{}",
        e2e::https_config(&[&tls], &[hello.addr], "")
    );
    let gw = tokio::task::block_in_place(|| Gateway::start(&template));
    let client = e2e::Client::new(&certs.ca());
    let tls12 = e2e::Client::new(&certs.ca()).with_versions(&[&rustls::version::TLS12]);
    let mut a = client
        .connect(gw.addr("https"), Some("localhost"), e2e::Proto::H2)
        .await
        .unwrap();
    let mut b = tls12
        .connect(gw.addr("https"), Some("localhost"), e2e::Proto::H1)
        .await
        .unwrap();
    assert_eq!(a.get("/").await.unwrap().status, 200);
    assert_eq!(b.get("/").await.unwrap().status, 200);
    let metric = |name: &str| tokio::task::block_in_place(|| gw.metric(name));
    assert_eq!(
        metric("gateway_connections_active{listener=\"https\"}"),
        Some(2.0)
    );
    assert_eq!(
        metric("gateway_tls_handshakes_total{listener=\"https\",version=\"TLSv1.3\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric("gateway_tls_handshakes_total{listener=\"https\",version=\"TLSv1.2\"}"),
        Some(1.0)
    );
    drop((a, b));
    tokio::task::block_in_place(|| {
        wait_until(
            std::time::Duration::from_secs(5),
            "connections closed",
            || (gw.metric("gateway_connections_active{listener=\"https\"}")? == 0.0).then_some(()),
        )
    });
    // A handshake that fails (a ClientHello that is not one) is counted as such, and
    // not as a completed handshake. A connection the client closes without a word (a
    // load balancer's TCP probe, the harness's readiness probes) is not a connection
    // the gateway dropped: the silent one goes first, so once the garbage one is
    // counted and no connection is open, both have been handled.
    tokio::task::block_in_place(|| {
        let failed =
            "gateway_connections_dropped_total{listener=\"https\",reason=\"tls_handshake_failed\"}";
        let before = gw.metric(failed).unwrap_or(0.0);
        drop(std::net::TcpStream::connect(gw.addr("https")).unwrap());
        let mut tcp = std::net::TcpStream::connect(gw.addr("https")).unwrap();
        tcp.set_read_timeout(Some(e2e::READ_TIMEOUT)).unwrap();
        tcp.write_all(b"\x16\x03\x01\x00\x05garbage").unwrap();
        e2e::read_until_close(&mut tcp);
        let open = "gateway_connections_active{listener=\"https\"}";
        wait_until(
            std::time::Duration::from_secs(10),
            "the failed handshake counted, no connection open",
            || (gw.metric(failed)? >= before + 1.0 && gw.metric(open)? == 0.0).then_some(()),
        );
        assert_eq!(
            gw.metric(failed),
            Some(before + 1.0),
            "the silent close not counted"
        );
    });
    for version in ["TLSv1.2", "TLSv1.3"] {
        let name =
            format!("gateway_tls_handshakes_total{{listener=\"https\",version=\"{version}\"}}");
        assert_eq!(metric(&name), Some(1.0), "{version}");
    }
}

/// `process_start_time_seconds` is when the process started and stays so;
/// `gateway_config_last_reload_timestamp_seconds` is when config was last applied:
/// startup, then each applied reload.
#[test]
fn start_and_reload_timestamps() {
    let hello = Hello::spawn("h");
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    let before = now().floor();
    let gw = gateway(&hello, &[]);
    let after = now().ceil();
    let started = gw.metric("process_start_time_seconds").unwrap();
    let loaded = gw
        .metric("gateway_config_last_reload_timestamp_seconds")
        .unwrap();
    assert!(
        (before..=after).contains(&started),
        "{before} {started} {after}"
    );
    assert!(
        (before..=after).contains(&loaded),
        "{before} {loaded} {after}"
    );
    // Into the next second (the metrics count whole seconds), then a reload.
    wait_until(std::time::Duration::from_secs(5), "the next second", || {
        (now().floor() > loaded).then_some(())
    });
    let changed = std::fs::read_to_string(gw.config_path()).unwrap() + "# changed\n";
    let reloaded_from = now().floor();
    std::fs::write(gw.config_path(), changed).unwrap();
    wait_until(std::time::Duration::from_secs(30), "the reload", || {
        (gw.metric("gateway_config_reloads_total{result=\"success\"}")? == 1.0).then_some(())
    });
    let reloaded = gw
        .metric("gateway_config_last_reload_timestamp_seconds")
        .unwrap();
    assert!(
        (reloaded_from..=now().ceil()).contains(&reloaded),
        "{reloaded_from} {reloaded}"
    );
    assert_eq!(gw.metric("process_start_time_seconds"), Some(started));
}

#[test]
fn access_lines_longer_than_4_kib_are_cut_to_one_write() {
    let hello = Hello::spawn("h");
    // Under max_uri_length (8 KiB): served, and logged with the path cut short.
    let path = format!("/{}", "p".repeat(6000));
    for format in ["text", "json"] {
        let gw = gateway(&hello, &[("GATEWAY_LOG_FORMAT", format)]);
        let resp = request(gw.port("http"), &path, "X-Request-Id: long-line\r\n");
        assert!(resp.starts_with("HTTP/1.1 200"), "{format}: {resp}");
        let line = wait_until(std::time::Duration::from_secs(5), "access line", || {
            gw.log()
                .lines()
                .find(|l| l.contains("long-line"))
                .map(str::to_owned)
        });
        // Whole lines, up to 4 KiB per write: so no line is longer (its newline included).
        assert!(line.len() < 4096, "{format}: {} bytes", line.len());
        let logged_path = if format == "json" {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(v["status"], 200, "{line}");
            v["path"].as_str().unwrap().to_owned()
        } else {
            let start = line.find(" path=\"").unwrap() + 7;
            line[start..].split('"').next().unwrap().to_owned()
        };
        let kept = logged_path.strip_suffix('…').expect("the cut is marked");
        assert!(
            path.starts_with(kept) && kept.len() >= 1024,
            "{format}: {kept}"
        );
    }
}

#[test]
fn eight_codes_per_series_are_counted_exactly_and_more_by_class() {
    let hello = Hello::spawn("h");
    let gw = gateway(&hello, &[]);
    let port = gw.port("http");
    // Eight distinct codes take the series' slots; then 404 and 405 (twice), 206 and 503
    // find none, and 200, which has one, is counted exactly still.
    let sent = [
        200, 201, 202, 203, 400, 401, 402, 403, 404, 405, 405, 206, 503, 200,
    ];
    for code in sent {
        assert_eq!(http_get(port, &format!("/?status={code}"), "").0, code);
    }
    let prefix = r#"gateway_requests_total{listener="http",route="/",upstream="hello",code=""#;
    let mut want: Vec<String> = [
        ("200", 2),
        ("201", 1),
        ("202", 1),
        ("203", 1),
        ("400", 1),
        ("401", 1),
        ("402", 1),
        ("403", 1),
        ("2xx", 1),
        ("4xx", 3),
        ("5xx", 1),
    ]
    .iter()
    .map(|(code, n)| format!("{prefix}{code}\"}} {n}"))
    .collect();
    want.sort();
    // Counted as each response ends: the last may be counted just after it was read.
    let seen = wait_until(
        std::time::Duration::from_secs(10),
        "every request counted",
        || {
            let metrics = gw.admin_get("/metrics").1;
            let mut seen: Vec<String> = metrics
                .lines()
                .filter(|l| l.starts_with(prefix))
                .map(str::to_owned)
                .collect();
            seen.sort();
            (seen == want).then_some(seen)
        },
    );
    assert_eq!(seen, want);
}
