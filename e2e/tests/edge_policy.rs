//! Traffic policy at the edge, with real senders: the PROXY protocol from HAProxy
//! (`send-proxy`, `send-proxy-v2`, TCP passthrough to a TLS listener) and from curl
//! (`--haproxy-protocol`), listener `allow`/`deny` checked before TLS, route
//! `allow`/`deny` (403) and `max_in_flight` (503). Clients come from other loopback
//! addresses (`curl --interface 127.0.0.N`) so that the client address the gateway
//! uses can be told from the TCP peer's.

use std::process::Child;
use std::time::Duration;

use e2e::{curl, curl_command, curled, wait_until, Certs, Curled, Gateway, Haproxy, Hello};

/// The `x-forwarded-for` hello saw (it echoes the request's headers).
fn forwarded_for(g: &Curled) -> &str {
    g.echoed("x-forwarded-for").unwrap_or("")
}

fn dropped(gw: &Gateway, listener: &str, reason: &str) -> f64 {
    let name =
        format!("gateway_connections_dropped_total{{listener=\"{listener}\",reason=\"{reason}\"}}");
    gw.metric(&name).unwrap_or(-1.0)
}

/// A config with an admin listener, a plain listener `web` and upstream `hello` of
/// `hello`, then `routes` (each `[[route]]` with its `upstream = "hello"`).
fn web_config(hello: &Hello, routes: &str) -> String {
    format!(
        "[admin]\nlisten = \"127.0.0.1:{{{{port:admin}}}}\"\n\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:{{{{port:web}}}}\"\n\n[upstream.hello]\nservers = [\"{}\"]\n\n{routes}",
        hello.addr
    )
}

#[test]
fn proxy_protocol_from_haproxy_and_curl_names_the_client() {
    let certs = Certs::new();
    let tls = certs.server("tls", &["localhost"]);
    let hello = Hello::spawn("a");
    let gw = Gateway::start_with_env(
        &format!(
            r#"
[admin]
listen = "127.0.0.1:{{{{port:admin}}}}"

[[listener]]
name = "pp"
listen = "127.0.0.1:{{{{port:pp}}}}"
proxy_protocol = {{ trusted = ["127.0.0.1/32"] }}
deny = ["127.0.0.4"]
header_timeout = "1s"

[[listener]]
name = "pps"
listen = "127.0.0.1:{{{{port:pps}}}}"
tls = {{ certs = ["{tls}"] }}
proxy_protocol = {{ trusted = ["127.0.0.1"] }}

[upstream.hello]
servers = ["{hello}"]

[[route]]
upstream = "hello"
"#,
            tls = tls.display(),
            hello = hello.addr,
        ),
        &[("RUST_LOG", "info")],
    );
    let (pp, pps) = (gw.port("pp"), gw.port("pps"));
    let haproxy = Haproxy::start(&format!(
        "frontend v1\n  bind 127.0.0.1:{{{{port:v1}}}}\n  default_backend v1\nbackend v1\n  server gw 127.0.0.1:{pp} send-proxy\n\n\
         frontend v2\n  bind 127.0.0.1:{{{{port:v2}}}}\n  default_backend v2\nbackend v2\n  server gw 127.0.0.1:{pp} send-proxy-v2\n\n\
         frontend v2tls\n  bind 127.0.0.1:{{{{port:v2tls}}}}\n  default_backend v2tls\nbackend v2tls\n  server gw 127.0.0.1:{pps} send-proxy-v2\n"
    ));

    // HAProxy connects from 127.0.0.1 and names the client it accepted, 127.0.0.2.
    for name in ["v1", "v2"] {
        let url = format!("http://127.0.0.1:{}/?echo_headers=1", haproxy.port(name));
        let g = curl("127.0.0.2", &url, &[]);
        assert_eq!(g.status, "200", "{name}: {}", g.body);
        assert_eq!(forwarded_for(&g), "127.0.0.2", "{name}: {}", g.body);
    }
    let port = haproxy.port("v2tls");
    let url = format!("https://localhost:{port}/?echo_headers=1");
    let resolve = format!("localhost:{port}:127.0.0.1");
    for proto in ["--http1.1", "--http2"] {
        let g = curl("127.0.0.2", &url, &["--resolve", &resolve, proto]);
        assert_eq!(g.status, "200", "TLS {proto}: {}", g.body);
        assert_eq!(forwarded_for(&g), "127.0.0.2", "TLS {proto}: {}", g.body);
    }
    // The access line has it too.
    wait_until(
        Duration::from_secs(10),
        "an access line naming 127.0.0.2",
        || {
            gw.log()
                .lines()
                .any(|l| l.contains("client=127.0.0.2") || l.contains("\"client\":\"127.0.0.2\""))
                .then_some(())
        },
    );
    // `deny` applies to the client the header names, not to HAProxy.
    let g = curl(
        "127.0.0.4",
        &format!("http://127.0.0.1:{}/", haproxy.port("v1")),
        &[],
    );
    assert_eq!(g.status, "000", "a denied client through a trusted proxy");
    assert!(dropped(&gw, "pp", "denied") >= 1.0);

    // curl's own header (version 1, its real addresses) from the trusted address.
    let g = curl(
        "127.0.0.1",
        &format!("http://127.0.0.1:{pp}/?echo_headers=1"),
        &["--haproxy-protocol"],
    );
    assert_eq!(g.status, "200", "{}", g.body);
    assert_eq!(forwarded_for(&g), "127.0.0.1");

    // No header from a trusted peer, and a header from an untrusted one: closed.
    assert_eq!(dropped(&gw, "pp", "proxy_protocol_invalid"), 0.0);
    let g = curl("127.0.0.1", &format!("http://127.0.0.1:{pp}/"), &[]);
    assert_eq!(g.status, "000", "a request without the header");
    wait_until(
        Duration::from_secs(10),
        "the missing header counted",
        || (dropped(&gw, "pp", "proxy_protocol_invalid") == 1.0).then_some(()),
    );
    let g = curl(
        "127.0.0.3",
        &format!("http://127.0.0.1:{pp}/"),
        &["--haproxy-protocol"],
    );
    assert_eq!(g.status, "000", "a header from an untrusted peer");
    assert_eq!(dropped(&gw, "pp", "proxy_protocol_untrusted"), 1.0);
    let g = curl(
        "127.0.0.3",
        &format!("https://localhost:{pps}/"),
        &["--resolve", &format!("localhost:{pps}:127.0.0.1")],
    );
    assert_eq!(g.status, "000", "TLS from an untrusted peer");
    assert_eq!(dropped(&gw, "pps", "proxy_protocol_untrusted"), 1.0);

    // Half a header, then nothing: closed after header_timeout (1 s here), counted.
    use std::io::{Read, Write};
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", pp)).unwrap();
    slow.write_all(b"PROXY TCP4 192.0.2.9").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert_eq!(
        slow.read(&mut byte).unwrap_or(0),
        0,
        "closed without an answer"
    );
    assert_eq!(dropped(&gw, "pp", "proxy_protocol_timeout"), 1.0);
}

#[test]
fn listener_allow_and_deny_refuse_before_tls_and_follow_a_reload() {
    let certs = Certs::new();
    let tls = certs.server("tls", &["localhost"]);
    let hello = Hello::spawn("a");
    let config = |web_deny: &str| {
        format!(
            r#"
[admin]
listen = "127.0.0.1:{{{{port:admin}}}}"

[[listener]]
name = "web"
listen = "127.0.0.1:{{{{port:web}}}}"
deny = [{web_deny}]

[[listener]]
name = "https"
listen = "127.0.0.1:{{{{port:https}}}}"
tls = {{ certs = ["{tls}"] }}
allow = ["127.0.0.1/32", "127.0.0.2"]
deny = ["127.0.0.2"]

[upstream.hello]
servers = ["{hello}"]

[[route]]
upstream = "hello"
"#,
            tls = tls.display(),
            hello = hello.addr,
        )
    };
    let gw = Gateway::start(&config(r#""127.0.0.2""#));
    let web = format!("http://127.0.0.1:{}/", gw.port("web"));
    let port = gw.port("https");
    let https = format!("https://localhost:{port}/");
    let resolve = [
        "--resolve".to_owned(),
        format!("localhost:{port}:127.0.0.1"),
    ];
    let resolve: Vec<&str> = resolve.iter().map(String::as_str).collect();

    assert_eq!(curl("127.0.0.1", &web, &[]).status, "200");
    assert_eq!(curl("127.0.0.3", &web, &[]).status, "200");
    assert_eq!(curl("127.0.0.2", &web, &[]).status, "000", "denied");
    assert_eq!(curl("127.0.0.1", &https, &resolve).status, "200");
    // Outside allow, and inside allow but denied (deny wins): no TLS work at all.
    let handshakes = |gw: &Gateway| {
        gw.metric("gateway_tls_handshakes_total{listener=\"https\",version=\"TLSv1.3\"}")
            .unwrap_or(-1.0)
    };
    let before = handshakes(&gw);
    assert_eq!(curl("127.0.0.3", &https, &resolve).status, "000");
    assert_eq!(curl("127.0.0.2", &https, &resolve).status, "000");
    assert_eq!(handshakes(&gw), before);
    assert_eq!(dropped(&gw, "https", "tls_handshake_failed"), 0.0);
    assert_eq!(dropped(&gw, "https", "denied"), 2.0);
    assert_eq!(dropped(&gw, "web", "denied"), 1.0);

    // A new deny list applies to the next connections.
    let text = std::fs::read_to_string(gw.config_path()).unwrap();
    let from = r#"deny = ["127.0.0.2"]"#;
    std::fs::write(
        gw.config_path(),
        text.replacen(from, r#"deny = ["127.0.0.3"]"#, 1),
    )
    .unwrap();
    wait_until(Duration::from_secs(10), "the new deny list", || {
        (curl("127.0.0.3", &web, &[]).status == "000").then_some(())
    });
    assert_eq!(curl("127.0.0.2", &web, &[]).status, "200");
}

#[test]
fn route_allow_and_deny_answer_403_without_reaching_the_backend() {
    let certs = Certs::new();
    let tls = certs.server("tls", &["localhost"]);
    let hello = Hello::spawn("a");
    let gw = Gateway::start(&format!(
        r#"
[[listener]]
name = "https"
listen = "127.0.0.1:{{{{port:https}}}}"
tls = {{ certs = ["{tls}"] }}

[upstream.hello]
servers = ["{hello}"]

[[route]]
path_prefix = "/admin"
allow = ["127.0.0.2"]
upstream = "hello"

[[route]]
path_prefix = "/open"
deny = ["127.0.0.3"]
upstream = "hello"
"#,
        tls = tls.display(),
        hello = hello.addr,
    ));
    let port = gw.port("https");
    let resolve = format!("localhost:{port}:127.0.0.1");
    for proto in ["--http1.1", "--http2"] {
        let get = |from: &str, path: &str| {
            let url = format!("https://localhost:{port}{path}");
            curl(from, &url, &["--resolve", &resolve, proto])
        };
        let before = hello.requests();
        for (from, path) in [("127.0.0.1", "/admin"), ("127.0.0.3", "/open/x")] {
            let g = get(from, path);
            assert_eq!(g.status, "403", "{proto} {from} {path}");
            assert_eq!(g.body, r#"{"error":"forbidden"}"#);
        }
        assert_eq!(hello.requests(), before, "{proto}: refused here");
        for (from, path) in [("127.0.0.2", "/admin"), ("127.0.0.1", "/open/x")] {
            assert_eq!(get(from, path).status, "200", "{proto} {from} {path}");
        }
    }
}

#[test]
fn max_in_flight_answers_503_at_once_past_the_bound() {
    let hello = Hello::spawn("a");
    let gw = Gateway::start(&web_config(
        &hello,
        "[[route]]\npath_prefix = \"/slow\"\nmax_in_flight = 2\nupstream = \"hello\"\n\n[[route]]\nupstream = \"hello\"\n",
    ));
    let base = format!("http://127.0.0.1:{}", gw.port("web"));
    let slow = format!("{base}/slow?delay_ms=3000");
    let before = hello.requests();
    let running: Vec<Child> = (0..2)
        .map(|_| {
            curl_command("127.0.0.1", &slow, &[])
                .spawn()
                .expect("spawn curl")
        })
        .collect();
    wait_until(
        Duration::from_secs(10),
        "two slow requests at hello",
        || (hello.requests() >= before + 2).then_some(()),
    );
    // Refused, not queued for a slot (a queued request would get 200 later).
    let g = curl("127.0.0.1", &format!("{base}/slow"), &[]);
    assert_eq!(g.status, "503");
    assert_eq!(g.body, r#"{"error":"service unavailable"}"#);
    // Other routes are not limited.
    assert_eq!(curl("127.0.0.1", &format!("{base}/"), &[]).status, "200");
    for child in running {
        let g = curled(child.wait_with_output().expect("curl"));
        assert_eq!(g.status, "200", "the two admitted requests complete");
    }
    assert_eq!(
        curl("127.0.0.1", &format!("{base}/slow"), &[]).status,
        "200"
    );
}

#[test]
fn a_rate_limit_holds_its_rate_answers_429_and_survives_a_reload() {
    use std::io::Write;
    let hello = Hello::spawn("a");
    let gw = Gateway::start(&web_config(
        &hello,
        r#"[[route]]
path_prefix = "/limited"
rate_limit = { requests = 20, per = "1s" }
upstream = "hello"

[[route]]
path_prefix = "/keyed"
rate_limit = { requests = 1, per = "1m", key = "header:x-api-key" }
upstream = "hello"

[[route]]
upstream = "hello"
"#,
    ));
    let port = gw.port("web");
    let no_ca = std::path::Path::new("/nonexistent");
    // One client as fast as it goes for 5 s, on one keep-alive connection.
    let mut wire = e2e::connect(port, e2e::Transport::Tcp, no_ca);
    let (mut ok, mut refused) = (0u32, None);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut sent = 0u32;
    while std::time::Instant::now() < deadline {
        wire.write_all(b"GET /limited HTTP/1.1\r\nHost: hello\r\n\r\n")
            .unwrap();
        let reply = e2e::read_reply(&mut *wire);
        sent += 1;
        match reply.status {
            Some(200) => ok += 1,
            Some(429) => refused = Some(reply),
            other => panic!("{other:?}: {}", reply.text),
        }
    }
    // 20 per second for 5 s, and the first: 101, within ±10%.
    assert!((91..=111).contains(&ok), "{ok} of {sent} admitted");
    let refused = refused.expect("a 429");
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(
        refused.header("ratelimit-policy"),
        Some("\"default\";q=20;w=1")
    );
    assert_eq!(refused.header("ratelimit"), Some("\"default\";r=0;t=1"));
    assert!(refused.text.ends_with(r#"{"error":"too many requests"}"#));
    // Counted by route.
    let series = |code: u16| {
        format!("gateway_requests_total{{listener=\"web\",route=\"/limited\",upstream=\"hello\",code=\"{code}\"}}")
    };
    wait_until(Duration::from_secs(10), "the 429s counted", || {
        let n = gw.metric(&series(429))?;
        let admitted = gw.metric(&series(200))?;
        (n + admitted == f64::from(sent)).then_some(())
    });

    // Counted per key; the count outlives a reload that leaves the route as it is.
    let keyed =
        |key: &str| e2e::raw_get(port, "hello", "/keyed", &format!("x-api-key: {key}\r\n")).0;
    assert_eq!(keyed("a"), 200);
    assert_eq!(keyed("a"), 429);
    assert_eq!(keyed("b"), 200);
    let text = std::fs::read_to_string(gw.config_path()).unwrap();
    let added =
        "[[route]]\npath = { exact = \"/added\" }\nredirect = { host = \"elsewhere.test\" }\n";
    std::fs::write(gw.config_path(), format!("{text}\n{added}")).unwrap();
    wait_until(Duration::from_secs(10), "the reloaded config", || {
        (e2e::raw_get(port, "hello", "/added", "").0 == 302).then_some(())
    });
    assert_eq!(
        keyed("a"),
        429,
        "the key's count was kept across the reload"
    );
}

#[test]
fn rate_limits_and_max_in_flight_refuse_over_https_on_http1_and_http2() {
    let certs = Certs::new();
    let tls = certs.server("tls", &["localhost"]);
    let hello = Hello::spawn("a");
    let gw = Gateway::start(&format!(
        r#"
[[listener]]
name = "https"
listen = "127.0.0.1:{{{{port:https}}}}"
tls = {{ certs = ["{tls}"] }}

[upstream.hello]
servers = ["{hello}"]

[[route]]
path_prefix = "/limited"
rate_limit = {{ requests = 1, per = "1m" }}
upstream = "hello"

[[route]]
path_prefix = "/slow"
max_in_flight = 1
upstream = "hello"
"#,
        tls = tls.display(),
        hello = hello.addr,
    ));
    let port = gw.port("https");
    let resolve = format!("localhost:{port}:127.0.0.1");
    let url = |path: &str| format!("https://localhost:{port}{path}");
    // One client address per protocol: each gets its one request a minute, then 429.
    for (proto, from) in [("--http1.1", "127.0.0.5"), ("--http2", "127.0.0.6")] {
        let args = ["--resolve", &resolve, proto, "-D", "-"];
        let first = curl(from, &url("/limited"), &args);
        assert_eq!(first.status, "200", "{proto}: {}", first.body);
        let second = curl(from, &url("/limited"), &args);
        assert_eq!(second.status, "429", "{proto}: {}", second.body);
        let head = second.body.to_ascii_lowercase();
        assert!(head.contains("retry-after: "), "{proto}: {head}");
        assert!(
            head.contains("ratelimit-policy: \"default\";q=1;w=60"),
            "{proto}: {head}"
        );
        assert!(
            second.body.ends_with(r#"{"error":"too many requests"}"#),
            "{proto}"
        );
    }
    // One slow request holds the route's only slot: the next is refused on either protocol.
    let before = hello.requests();
    let slow = curl_command(
        "127.0.0.1",
        &url("/slow?delay_ms=3000"),
        &["--resolve", &resolve, "--http1.1"],
    )
    .spawn()
    .expect("spawn curl");
    wait_until(Duration::from_secs(10), "the slow request at hello", || {
        (hello.requests() > before).then_some(())
    });
    for proto in ["--http1.1", "--http2"] {
        let g = curl("127.0.0.1", &url("/slow"), &["--resolve", &resolve, proto]);
        assert_eq!(g.status, "503", "{proto}: {}", g.body);
        assert_eq!(g.body, r#"{"error":"service unavailable"}"#, "{proto}");
    }
    assert_eq!(curled(slow.wait_with_output().expect("curl")).status, "200");
}
