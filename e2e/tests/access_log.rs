//! `[access_log]`: a `log_format`-style template whose every variable takes its value
//! for an HTTPS HTTP/1.1 request with a body, an HTTP/2 request and a request refused
//! before routing; JSON lines with extra `fields`; the format changed live, and a
//! template with an unknown variable refused at reload with its location while the last
//! good format keeps writing.

use std::time::Duration;

use e2e::{curl, https_listener, wait_until, Certs, Gateway, Hello};

const DEADLINE: Duration = Duration::from_secs(30);

/// Every variable, `|`-separated, after a marker.
const ALL: &str = "AL|$client|$time|$method|$host|$path|$protocol|$status|$bytes|$bytes_received|$referer|$user_agent|$duration_ms|$upstream|$upstream_ms|$request_id|$route|$tls_version|$listener";

fn config(certs_dir: &std::path::Path, hello: &Hello, access_log: &str) -> String {
    format!(
        "{}\n[upstream.hello]\nservers = [\"{}\"]\n\n[[route]]\nhost = \"shop.test\"\nupstream = \"hello\"\n\n[access_log]\n{access_log}\n",
        https_listener(certs_dir),
        hello.addr
    )
}

fn start(config: &str) -> Gateway {
    Gateway::start_with(config, |mut command| {
        command
            .env("RUST_LOG", "info")
            .env_remove("GATEWAY_LOG_FORMAT");
        command
    })
}

/// The access lines starting with `marker`, split at `|`, once there are `n`.
fn lines(gw: &Gateway, marker: &str, n: usize) -> Vec<Vec<String>> {
    wait_until(DEADLINE, "the access lines", || {
        let found: Vec<Vec<String>> = gw
            .log()
            .lines()
            .filter(|l| l.starts_with(marker))
            .map(|l| l.split('|').map(str::to_owned).collect())
            .collect();
        (found.len() >= n).then_some(found)
    })
}

fn request(gw: &Gateway, args: &[&str], path: &str) -> e2e::Curled {
    let port = gw.port("https");
    let resolve = format!("shop.test:{port}:127.0.0.1");
    let url = format!("https://shop.test:{port}{path}");
    let mut all = vec!["--resolve", &resolve, "-D", "-"];
    all.extend_from_slice(args);
    curl("127.0.0.1", &url, &all)
}

fn request_id(got: &e2e::Curled) -> String {
    got.body
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .expect("x-request-id")
        .trim()
        .to_owned()
}

#[test]
fn every_template_variable_takes_its_value_on_http1_http2_and_refused_requests() {
    let hello = Hello::spawn("h");
    let certs = Certs::new();
    let tls = certs.server("tls", &["shop.test"]);
    let gw = start(&config(&tls, &hello, &format!("format = '{ALL}'")));
    let h1 = request(
        &gw,
        &[
            "--http1.1",
            "--data-binary",
            "hello",
            "-H",
            "Referer: https://ref.test/a",
            "-A",
            "agent/1 \"q\"",
        ],
        "/p?x=1",
    );
    assert_eq!(h1.status, "200", "{}", h1.body);
    let h2 = request(&gw, &["--http2"], "/two");
    assert_eq!(h2.status, "200", "{}", h2.body);
    // A Host that is not a host: refused (400) before any route is looked up.
    let refused = request(&gw, &["--http1.1", "-H", "Host: a b"], "/r");
    assert_eq!(refused.status, "400", "{}", refused.body);
    let found = lines(&gw, "AL|", 3);
    let by_path = |p: &str| {
        found
            .iter()
            .find(|l| l[5] == p)
            .unwrap_or_else(|| panic!("no line for {p}: {found:?}"))
    };
    let hello_len = "{\"message\":\"Hello\"}".len().to_string();
    let upstream = hello.addr.to_string();

    let l = by_path("/p");
    assert_eq!(l[1], "127.0.0.1");
    assert!(l[2].len() == 27 && l[2].ends_with('Z'), "time {}", l[2]);
    assert_eq!((&*l[3], &*l[6], &*l[7]), ("POST", "HTTP/1.1", "200"));
    assert_eq!(
        l[4],
        format!("shop.test:{}", gw.port("https")),
        "the Host as sent"
    );
    assert_eq!((&l[8], &*l[9]), (&hello_len, "5"), "bytes, bytes_received");
    assert_eq!(
        (&*l[10], &*l[11]),
        ("https://ref.test/a", "agent/1 \\x22q\\x22")
    );
    let ms = |v: &str| v.parse::<f64>().unwrap_or_else(|_| panic!("not ms: {v}"));
    assert!(
        ms(&l[12]) >= ms(&l[14]),
        "duration_ms >= upstream_ms: {l:?}"
    );
    assert_eq!(l[13], upstream);
    assert_eq!(l[15], request_id(&h1));
    assert_eq!(
        (&*l[16], &*l[17], &*l[18]),
        ("shop.test/", "TLSv1.3", "https")
    );

    let l = by_path("/two");
    assert_eq!(
        (&*l[3], &*l[6], &*l[9], &*l[10]),
        ("GET", "HTTP/2.0", "0", "-")
    );
    assert!(l[11].starts_with("curl/"), "curl's own User-Agent: {l:?}");
    assert_eq!(l[13], upstream);
    ms(&l[14]);
    assert_eq!(l[15], request_id(&h2));

    let l = by_path("/r");
    assert_eq!(
        (&*l[3], &*l[6], &*l[7]),
        ("GET", "HTTP/1.1", "400"),
        "{l:?}"
    );
    assert_eq!(
        (&*l[13], &*l[14], &*l[16]),
        ("-", "-", "-"),
        "no upstream, no route: {l:?}"
    );
    assert_eq!(l[17], "TLSv1.3");
}

#[test]
fn json_lines_carry_the_extra_fields_and_the_format_changes_live() {
    let hello = Hello::spawn("h");
    let certs = Certs::new();
    let tls = certs.server("tls", &["shop.test"]);
    let fields = "format = \"json\"\nfields = [\"referer\", \"user_agent\", \"protocol\", \"tls_version\", \"route\", \"bytes_received\", \"upstream_ms\"]";
    let gw = start(&config(&tls, &hello, fields));
    let got = request(&gw, &["--http2", "-A", "agent/2", "-H", "Referer: r"], "/j");
    assert_eq!(got.status, "200");
    let line = wait_until(DEADLINE, "a JSON access line", || {
        gw.log()
            .lines()
            .find(|l| l.contains("\"target\":\"access\""))
            .map(str::to_owned)
    });
    let v: serde_json::Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!(v["path"], "/j");
    assert_eq!(
        (&v["referer"], &v["user_agent"], &v["protocol"]),
        (&"r".into(), &"agent/2".into(), &"HTTP/2.0".into())
    );
    assert_eq!(
        (&v["tls_version"], &v["route"], &v["bytes_received"]),
        (&"TLSv1.3".into(), &"shop.test/".into(), &0.into())
    );
    assert!(
        v["upstream_ms"]
            .as_str()
            .is_some_and(|s| s.parse::<f64>().is_ok()),
        "{v}"
    );

    // To a template, live.
    let text = std::fs::read_to_string(gw.config_path()).expect("config");
    std::fs::write(
        gw.config_path(),
        text.replace(fields, "format = 'T2 $status $path'"),
    )
    .expect("write");
    wait_until(DEADLINE, "the template to apply", || {
        request(&gw, &["--http1.1"], "/t2");
        gw.log().lines().any(|l| l == "T2 200 /t2").then_some(())
    });
    // An unknown variable: refused at reload, located; the template keeps writing.
    let text = std::fs::read_to_string(gw.config_path()).expect("config");
    std::fs::write(
        gw.config_path(),
        text.replace("'T2 $status $path'", "'T3 $status $nope'"),
    )
    .expect("write");
    wait_until(DEADLINE, "the refused reload", || {
        gw.log()
            .contains("access_log: unknown variable \"nope\"")
            .then_some(())
    });
    let log = gw.log();
    let at = format!("{}:", gw.config_path().display());
    assert!(
        log.lines()
            .any(|l| l.contains(&at) && l.contains("unknown variable \"nope\"")),
        "{log}"
    );
    request(&gw, &["--http1.1"], "/t3");
    wait_until(DEADLINE, "the last good template", || {
        gw.log().lines().any(|l| l == "T2 200 /t3").then_some(())
    });
}
