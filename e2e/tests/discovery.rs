//! Following the backend Service: DNS re-resolution against a real DNS server
//! (dnsmasq), failover, health checks, timeouts and the balancing algorithms.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use e2e::{spread, wait_until, DnsServer, Gateway, Hello};

/// TTL dnsmasq puts on answers, and the gateway's `[dns] min_ttl`/`max_ttl`.
const TTL: u32 = 1;
const DEADLINE: Duration = Duration::from_secs(10);

fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

fn replicas(lasts: &[u8]) -> Vec<Hello> {
    Hello::spawn_set(lasts)
}

/// A plain-HTTP gateway (`{{port:http}}`, admin on `{{port:admin}}`) whose upstream
/// `hello` has `servers` and the extra `upstream` lines, resolving through `dns`.
fn gateway(dns: Option<&DnsServer>, servers: &str, upstream: &str) -> Gateway {
    let ttl = format!("{TTL}s");
    gateway_with_ttls(dns, servers, upstream, &ttl, &ttl)
}

/// [`gateway`] with `[dns] min_ttl` and `max_ttl` of its own.
fn gateway_with_ttls(
    dns: Option<&DnsServer>,
    servers: &str,
    upstream: &str,
    min_ttl: &str,
    max_ttl: &str,
) -> Gateway {
    let dns = dns.map_or(String::new(), |d| {
        format!(
            "[dns]\nnameservers = [\"{}\"]\nmin_ttl = \"{min_ttl}\"\nmax_ttl = \"{max_ttl}\"\n",
            d.addr
        )
    });
    Gateway::start(&format!(
        "[admin]\nlisten = \"127.0.0.1:{{{{port:admin}}}}\"\n{dns}\n[[listener]]\nname = \"http\"\nlisten = \"127.0.0.1:{{{{port:http}}}}\"\n\n[upstream.hello]\nservers = [{servers}]\n{upstream}\n\n[[route]]\nupstream = \"hello\"\n"
    ))
}

fn get(port: u16, path: &str, headers: &str) -> (u16, String) {
    e2e::http_get(port, path, headers)
}

#[test]
fn dns_changes_are_followed_within_the_ttl() {
    let dns = DnsServer::start(TTL);
    let r = replicas(&[11, 12, 13, 14]);
    let port = r[0].addr.port();
    dns.set("hello.test", &[ip(11), ip(12), ip(13)]);
    // max_ttl far above the answers' TTL: only the TTL can make the gateway ask in time.
    let gw = gateway_with_ttls(
        Some(&dns),
        &format!("\"hello.test:{port}\""),
        "",
        &format!("{TTL}s"),
        "30s",
    );
    let port_http = gw.port("http");
    wait_until(DEADLINE, "three replicas serving", || {
        (spread(port_http, 12).len() == 3).then_some(())
    });
    assert_eq!(gw.admin_get("/readyz").0, 200);
    assert!(
        gw.metric("gateway_dns_resolutions_total{upstream=\"hello\",result=\"success\"}")
            .unwrap()
            >= 1.0
    );

    dns.set("hello.test", &[ip(11), ip(12)]);
    let removed = Instant::now();
    wait_until(DEADLINE, "r13 dropped", || {
        (!spread(port_http, 12).contains_key("r13")).then_some(())
    });
    // Followed within the TTL (1 s), with room for a loaded machine (each poll here is
    // 12 requests); a name whose TTL is not followed waits max_ttl (30 s here).
    let took = removed.elapsed();
    assert!(
        took < Duration::from_secs(u64::from(TTL) + 4),
        "took {took:?} with TTL {TTL}s"
    );
    for _ in 0..3 {
        assert!(!spread(port_http, 12).contains_key("r13"));
    }

    dns.set("hello.test", &[ip(11), ip(12), ip(14)]);
    wait_until(DEADLINE, "r14 added", || {
        spread(port_http, 12).contains_key("r14").then_some(())
    });
}

#[test]
fn a_stopped_dns_server_keeps_the_last_good_backends() {
    let mut dns = DnsServer::start(TTL);
    let r = replicas(&[21, 22]);
    dns.set("hello.test", &[ip(21), ip(22)]);
    let gw = gateway(
        Some(&dns),
        &format!("\"hello.test:{}\"", r[0].addr.port()),
        "",
    );
    let port = gw.port("http");
    wait_until(DEADLINE, "both serving", || {
        (spread(port, 8).len() == 2).then_some(())
    });
    let failure = "gateway_dns_resolutions_total{upstream=\"hello\",result=\"failure\"}";
    // An answer without addresses (the name gone from the server: NXDOMAIN) keeps the
    // set too.
    dns.set("hello.test", &[]);
    wait_until(DEADLINE, "an empty answer", || {
        (gw.metric(failure)? >= 1.0).then_some(())
    });
    assert_eq!(spread(port, 8).len(), 2, "the last good set still serves");
    dns.set("hello.test", &[ip(21), ip(22)]);
    let failed = gw.metric(failure).unwrap();
    dns.stop();
    wait_until(DEADLINE, "a failed resolution", || {
        (gw.metric(failure)? > failed).then_some(())
    });
    assert_eq!(spread(port, 8).len(), 2, "the last good set still serves");
    let log = gw.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("DNS resolution failed; keeping the last good addresses"))
        .collect();
    assert!(!warnings.is_empty(), "{log}");
    for w in warnings {
        assert_eq!(w.split_whitespace().nth(1), Some("WARN"), "{w}");
    }
    dns.restart();
    wait_until(DEADLINE, "resolving again", || {
        let ok =
            gw.metric("gateway_dns_resolutions_total{upstream=\"hello\",result=\"success\"}")?;
        (ok >= 2.0).then_some(())
    });
}

#[test]
fn an_unresolvable_name_at_startup_is_502_until_it_resolves() {
    let dns = DnsServer::start(TTL);
    let r = replicas(&[31]);
    let gw = gateway(
        Some(&dns),
        &format!("\"later.test:{}\"", r[0].addr.port()),
        "",
    );
    let port = gw.port("http");
    wait_until(DEADLINE, "ready", || {
        (gw.admin_get("/readyz").0 == 200).then_some(())
    });
    assert_eq!(get(port, "/", "").0, 502);
    assert_eq!(
        gw.metric("gateway_upstream_backends{upstream=\"hello\",state=\"healthy\"}"),
        Some(0.0)
    );
    dns.set("later.test", &[ip(31)]);
    wait_until(DEADLINE, "resolved", || {
        (get(port, "/", "") == (200, "r31".into())).then_some(())
    });
}

#[test]
fn a_killed_replica_costs_no_request_under_load_and_rejoins_after_restart() {
    let mut r = replicas(&[41, 42, 43]);
    let servers: Vec<String> = r.iter().map(|h| format!("\"{}\"", h.addr)).collect();
    let gw = gateway(
        None,
        &servers.join(", "),
        "health = { cooldown = \"1s\", unhealthy_after = 1 }",
    );
    let port = gw.port("http");
    let failures = failures_under_load(port, |progress| {
        progress(100);
        let killed = r.remove(1);
        let addr = killed.addr;
        drop(killed);
        progress(300);
        let _back = Hello::spawn_on("r42", addr);
        wait_until(DEADLINE, "r42 rejoined", || {
            spread(port, 9).contains_key("r42").then_some(())
        });
        progress(100);
    });
    assert!(
        failures.is_empty(),
        "{} failed: {:?}\n{}",
        failures.len(),
        &failures[..failures.len().min(5)],
        gw.log()
    );
}

/// A backend that reads a little of each request, writes `answer` (possibly nothing)
/// and closes the connection (reset by the kernel when request bytes are left unread).
fn answer_and_close(answer: &'static [u8]) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(answer);
            drop(conn);
        }
    });
    addr
}

#[test]
fn a_connection_closed_before_any_response_is_retried_only_when_safe() {
    let good = Hello::spawn("good");
    let bad = answer_and_close(b"");
    // Round robin starts with the closing backend, so every first attempt fails.
    let gw = gateway(
        None,
        &format!("\"{bad}\", \"{}\"", good.addr),
        "health = { unhealthy_after = 1000 }",
    );
    let port = gw.port("http");
    for _ in 0..6 {
        assert_eq!(
            get(port, "/", ""),
            (200, "good".to_owned()),
            "GET is retried on the other backend"
        );
    }
    // A POST whose body was sent is not replayed; one of two lands on the closing backend.
    let post = |port| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"POST / HTTP/1.1\r\nHost: hello\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello").unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.get(9..12)
            .and_then(|c| c.parse::<u16>().ok())
            .unwrap_or(0)
    };
    let statuses: Vec<u16> = (0..4).map(|_| post(port)).collect();
    assert!(statuses.contains(&502), "{statuses:?}");
    assert!(statuses.contains(&200), "{statuses:?}");
}

#[test]
fn a_backend_answering_before_taking_the_body_is_heard() {
    // It answers 413 as soon as it has read a little of the request.
    let backend = answer_and_close(
        b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno",
    );
    let gw = Gateway::start(&format!(
        "[[listener]]\nname = \"http\"\nlisten = \"127.0.0.1:{{{{port:http}}}}\"\n\n[upstream.hello]\nservers = [\"{backend}\"]\nretries = 0\n\n[[route]]\nupstream = \"hello\"\nmax_body_size = \"16MiB\"\n"
    ));
    let mut post =
        b"POST /upload HTTP/1.1\r\nHost: hello\r\nContent-Length: 4194304\r\n\r\n".to_vec();
    post.resize(post.len() + 4 * 1024 * 1024, b'x');
    for _ in 0..3 {
        let reply = e2e::exchange(gw.port("http"), e2e::Transport::Tcp, Path::new("/"), &post);
        assert_eq!(reply.status, Some(413), "{}", reply.text);
        assert!(reply.text.ends_with("no"), "{}", reply.text);
    }
}

/// One GET of `/` on `port`: its status and how long the answer took. A safety net of
/// 60 s on the read, far past any bound asserted.
fn timed_get(port: u16) -> (u16, Duration) {
    use std::io::{Read, Write};
    let start = Instant::now();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: hello\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, start.elapsed())
}

#[test]
fn all_replicas_down_is_502_within_connect_timeout_and_a_hanging_replica_is_504() {
    // Refused at once: every retry is tried, and the answer comes long before the timeout.
    let dead: Vec<String> = (0..2)
        .map(|_| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("\"{}\"", l.local_addr().unwrap())
        })
        .collect();
    // Refused connections: 502 well within one connect_timeout (3 s), retries included.
    let connect_timeout = Duration::from_secs(3);
    let gw = gateway(
        None,
        &dead.join(", "),
        &format!("connect_timeout = \"{}s\"", connect_timeout.as_secs()),
    );
    let (status, took) = timed_get(gw.port("http"));
    assert_eq!(status, 502);
    assert!(took < connect_timeout, "{took:?}");
    let (_, out) = e2e::raw_get(gw.port("http"), "hello", "/", "");
    assert!(
        out.ends_with("\r\n\r\n{\"error\":\"bad gateway\"}"),
        "{out}"
    );

    // Never answered (SYNs dropped, as with a host that is gone): the connect times out,
    // and the retries share the one connect_timeout instead of taking one each.
    let holes = [e2e::Blackhole::new(), e2e::Blackhole::new()];
    let servers: Vec<String> = holes.iter().map(|h| format!("\"{}\"", h.addr)).collect();
    let gw = gateway(
        None,
        &servers.join(", "),
        &format!(
            "connect_timeout = \"{}s\"\nretries = 2",
            connect_timeout.as_secs()
        ),
    );
    for _ in 0..2 {
        let (status, took) = timed_get(gw.port("http"));
        assert_eq!(status, 502);
        // Not before the timeout, and well before a second one would have passed.
        assert!(
            took >= connect_timeout.mul_f32(0.9) && took < connect_timeout.mul_f32(1.9),
            "{took:?}"
        );
    }

    let r = replicas(&[51]);
    let gw = gateway(
        None,
        &format!("\"{}\"", r[0].addr),
        "read_timeout = \"300ms\"\nretries = 0",
    );
    // hello answers after 30 s; the gateway gives up after read_timeout (300 ms).
    let start = Instant::now();
    let (status, out) = e2e::raw_get(gw.port("http"), "hello", "/?delay_ms=30000", "");
    assert_eq!(status, 504, "{out}");
    assert!(
        out.ends_with("\r\n\r\n{\"error\":\"gateway timeout\"}"),
        "{out}"
    );
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(10),
        "{took:?}"
    );
    assert_eq!(get(gw.port("http"), "/", "").0, 200);
}

#[test]
fn connect_retries_after_a_slow_failure_stay_within_one_connect_timeout() {
    const CONNECT_TIMEOUT: Duration = Duration::from_secs(4);
    let mut holes = [e2e::Blackhole::new(), e2e::Blackhole::new()];
    let gw = gateway(
        None,
        &format!("\"{}\", \"{}\"", holes[0].addr, holes[1].addr),
        "connect_timeout = \"4s\"\nretries = 1",
    );
    let port = gw.port("http");
    let start = Instant::now();
    let request = std::thread::spawn(move || timed_get(port));
    // Once the gateway has sent its SYN to the first backend again, that backend stops
    // listening: the next resent SYN is refused, and the first attempt fails after a
    // good part of the connect timeout.
    let slow = wait_until(DEADLINE, "a SYN sent again", || {
        (0..2).find(|&i| holes[i].pending_connect().is_some_and(|resent| resent >= 1))
    });
    holes[slow].close();
    wait_until(DEADLINE, "the first connect refused", || {
        holes[slow].pending_connect().is_none().then_some(())
    });
    let first = start.elapsed();
    assert!(
        first >= Duration::from_millis(1500)
            && first < CONNECT_TIMEOUT - Duration::from_millis(500),
        "the first attempt failed after {first:?}"
    );
    let (status, took) = request.join().unwrap();
    assert_eq!(status, 502);
    // The retry, to the other backend (never answering), got what was left of the one
    // connect timeout, not a whole one.
    assert!(
        took < CONNECT_TIMEOUT + first / 2,
        "502 after {took:?}, the first attempt failed after {first:?}"
    );
    let dead = holes[1 - slow].addr;
    assert_eq!(attempts(&gw, "hello", dead, "connect_failure"), Some(1.0));
    assert_eq!(
        attempts(&gw, "hello", holes[slow].addr, "connect_failure"),
        Some(1.0)
    );
}

#[test]
fn active_health_checks_take_a_failing_replica_out() {
    let good = Hello::spawn("good");
    let sick = Hello::spawn_with("sick", "127.0.0.1:0".parse().unwrap(), &["--fail-health"]);
    let gw = gateway(
        None,
        &format!("\"{}\", \"{}\"", good.addr, sick.addr),
        "health = { path = \"/healthz\", interval = \"100ms\", timeout = \"1s\", unhealthy_after = 1 }",
    );
    wait_until(DEADLINE, "sick marked unhealthy", || {
        let n = gw.metric("gateway_upstream_backends{upstream=\"hello\",state=\"unhealthy\"}")?;
        (n == 1.0).then_some(())
    });
    let seen = spread(gw.port("http"), 10);
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["good"], "{seen:?}");
}

#[test]
fn consistent_hash_keeps_a_key_on_one_backend_and_moves_few_keys_when_one_leaves() {
    let r = replicas(&[61, 62, 63]);
    let servers = |rs: &[&Hello]| {
        rs.iter()
            .map(|h| format!("\"{}\"", h.addr))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let hash = "balance = \"consistent_hash\"\nhash_key = \"header:x-user\"";
    let mapping = |gw: &Gateway| -> Vec<String> {
        (0..60)
            .map(|k| get(gw.port("http"), "/", &format!("x-user: user-{k}\r\n")).1)
            .collect()
    };
    let all = gateway(None, &servers(&[&r[0], &r[1], &r[2]]), hash);
    let before = mapping(&all);
    assert_eq!(before, mapping(&all), "a key stays on its backend");
    assert_eq!(
        before
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len(),
        3
    );
    let fewer = gateway(None, &servers(&[&r[0], &r[2]]), hash);
    let after = mapping(&fewer);
    for (b, a) in before.iter().zip(&after) {
        if b != "r62" {
            assert_eq!(a, b, "only keys of the removed backend move");
        }
    }
}

#[test]
fn least_requests_steers_away_from_a_slow_replica() {
    let fast = Hello::spawn("fast");
    let slow = Hello::spawn_with(
        "slow",
        "127.0.0.1:0".parse().unwrap(),
        &["--delay-ms", "200"],
    );
    let gw = gateway(
        None,
        &format!("\"{}\", \"{}\"", fast.addr, slow.addr),
        "balance = \"least_requests\"",
    );
    let port = gw.port("http");
    let counts = std::thread::scope(|s| {
        let workers: Vec<_> = (0..8)
            .map(|_| s.spawn(move || (0..15).map(|_| get(port, "/", "").1).collect::<Vec<_>>()))
            .collect();
        let mut counts: HashMap<String, usize> = HashMap::new();
        for w in workers {
            for instance in w.join().unwrap() {
                *counts.entry(instance).or_default() += 1;
            }
        }
        counts
    });
    let (f, s) = (
        counts.get("fast").copied().unwrap_or(0),
        counts.get("slow").copied().unwrap_or(0),
    );
    assert!(f > 3 * s, "fast {f}, slow {s}");
}

#[test]
fn random_balancing_reaches_every_replica() {
    let r = replicas(&[71, 72, 73]);
    let servers: Vec<String> = r.iter().map(|h| format!("\"{}\"", h.addr)).collect();
    let gw = gateway(None, &servers.join(", "), "balance = \"random\"");
    let seen = spread(gw.port("http"), 60);
    assert_eq!(seen.len(), 3, "{seen:?}");
    // IP literals are backends at once, healthy until shown otherwise.
    assert_eq!(
        gw.metric("gateway_upstream_backends{upstream=\"hello\",state=\"healthy\"}"),
        Some(3.0)
    );
}

/// Runs `during` while 4 threads send requests (bounded: at most 20,000 each); returns
/// the failed ones. `during` gets a function that waits until N more requests were sent.
fn failures_under_load(port: u16, during: impl FnOnce(&dyn Fn(usize))) -> Vec<(u16, String)> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let stop = AtomicBool::new(false);
    let done = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let mut failures = Vec::new();
                    for _ in 0..20_000 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let (status, instance) = get(port, "/", "");
                        if status != 200 {
                            failures.push((status, instance));
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    failures
                })
            })
            .collect();
        let progress = |n: usize| {
            let target = done.load(Ordering::Relaxed) + n;
            wait_until(DEADLINE, "load progress", || {
                (done.load(Ordering::Relaxed) >= target).then_some(())
            });
        };
        during(&progress);
        stop.store(true, Ordering::Relaxed);
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    })
}

#[test]
fn sighup_and_dns_settings_changes_under_load_fail_no_request() {
    let dns = DnsServer::start(TTL);
    let r = replicas(&[91, 92]);
    dns.set("hello.test", &[ip(91), ip(92)]);
    let gw = gateway(
        Some(&dns),
        &format!("\"hello.test:{}\"", r[0].addr.port()),
        "",
    );
    let success = "gateway_config_reloads_total{result=\"success\"}";
    let failures = failures_under_load(gw.port("http"), |_| {
        for n in 1..=3 {
            gw.signal("HUP");
            wait_until(DEADLINE, "SIGHUP reload", || {
                (gw.metric(success)? >= f64::from(n)).then_some(())
            });
        }
        // New [dns] settings: the name resolves again; the backends keep serving.
        let text = std::fs::read_to_string(gw.config_path()).unwrap();
        std::fs::write(
            gw.config_path(),
            text.replace("max_ttl = \"1s\"", "max_ttl = \"2s\""),
        )
        .unwrap();
        wait_until(DEADLINE, "[dns] reload", || {
            (gw.metric(success)? >= 4.0).then_some(())
        });
        let healthy = "gateway_upstream_backends{upstream=\"hello\",state=\"healthy\"}";
        assert_eq!(gw.metric(healthy), Some(2.0), "both backends kept");
    });
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}

/// `gateway_upstream_requests_total` of `backend` in `upstream` with `outcome`.
fn attempts(gw: &Gateway, upstream: &str, backend: SocketAddr, outcome: &str) -> Option<f64> {
    gw.metric(&format!(
        "gateway_upstream_requests_total{{upstream=\"{upstream}\",backend=\"{backend}\",outcome=\"{outcome}\"}}"
    ))
}

#[test]
fn a_dns_settings_change_resolves_names_again_and_keeps_every_upstream() {
    // Answers kept for an hour: only the change of nameservers can make the gateway ask.
    let (old_dns, new_dns) = (DnsServer::start(3600), DnsServer::start(3600));
    let named = replicas(&[101, 102]);
    let literal = Hello::spawn("literal");
    old_dns.set("hello.test", &[ip(101)]);
    new_dns.set("hello.test", &[ip(101), ip(102)]);
    let config = |dns: &DnsServer| {
        format!(
            "[admin]\nlisten = \"127.0.0.1:{{{{port:admin}}}}\"\n[dns]\nnameservers = [\"{}\"]\nmax_ttl = \"1h\"\n[[listener]]\nname = \"http\"\nlisten = \"127.0.0.1:{{{{port:http}}}}\"\n[upstream.named]\nservers = [\"hello.test:{}\"]\n[upstream.literal]\nservers = [\"{}\"]\n[[route]]\nupstream = \"named\"\n[[route]]\npath_prefix = \"/literal\"\nupstream = \"literal\"\n",
            dns.addr, named[0].addr.port(), literal.addr
        )
    };
    let gw = Gateway::start(&config(&old_dns));
    let port = gw.port("http");
    for _ in 0..3 {
        assert_eq!(get(port, "/", ""), (200, "r101".to_owned()));
        assert_eq!(get(port, "/literal", ""), (200, "literal".to_owned()));
    }
    let r101 = named[0].addr;
    assert_eq!(attempts(&gw, "named", r101, "success"), Some(3.0));
    assert_eq!(attempts(&gw, "literal", literal.addr, "success"), Some(3.0));

    // The rendered config with the other nameserver; ports stay the same.
    let text = std::fs::read_to_string(gw.config_path()).unwrap();
    let old_line = format!("nameservers = [\"{}\"]", old_dns.addr);
    let new_line = format!("nameservers = [\"{}\"]", new_dns.addr);
    std::fs::write(gw.config_path(), text.replace(&old_line, &new_line)).unwrap();
    wait_until(DEADLINE, "the [dns] reload", || {
        (gw.metric("gateway_config_reloads_total{result=\"success\"}")? >= 1.0).then_some(())
    });
    // Both upstreams are the ones that served before: their backends' counts go on.
    assert_eq!(attempts(&gw, "literal", literal.addr, "success"), Some(3.0));
    assert_eq!(attempts(&gw, "named", r101, "success"), Some(3.0));
    // The name resolved again at once, through the new nameserver.
    wait_until(DEADLINE, "r102 from the new nameserver", || {
        spread(port, 8).contains_key("r102").then_some(())
    });
    assert!(attempts(&gw, "named", r101, "success").unwrap() > 3.0);
}

#[test]
fn sighup_resolves_names_again_before_their_ttl_runs_out() {
    let dns = DnsServer::start(3600);
    let r = replicas(&[111, 112]);
    dns.set("hello.test", &[ip(111)]);
    let gw = Gateway::start(&format!(
        "[admin]\nlisten = \"127.0.0.1:{{{{port:admin}}}}\"\n[dns]\nnameservers = [\"{}\"]\nmax_ttl = \"1h\"\n[[listener]]\nname = \"http\"\nlisten = \"127.0.0.1:{{{{port:http}}}}\"\n[upstream.hello]\nservers = [\"hello.test:{}\"]\n[[route]]\nupstream = \"hello\"\n",
        dns.addr,
        r[0].addr.port()
    ));
    let port = gw.port("http");
    assert_eq!(get(port, "/", ""), (200, "r111".to_owned()));
    let resolved = "gateway_dns_resolutions_total{upstream=\"hello\",result=\"success\"}";
    assert_eq!(gw.metric(resolved), Some(1.0));
    // The answer changes; the gateway holds the old one for an hour unless told.
    dns.set("hello.test", &[ip(112)]);
    gw.signal("HUP");
    wait_until(DEADLINE, "traffic on r112 after SIGHUP", || {
        (get(port, "/", "") == (200, "r112".to_owned())).then_some(())
    });
    assert_eq!(gw.metric(resolved), Some(2.0), "one more resolution");
    assert_eq!(
        gw.metric("gateway_config_reloads_total{result=\"success\"}"),
        Some(1.0)
    );
}

#[test]
fn names_are_not_resolved_again_before_min_ttl() {
    // Answers with a TTL of 0: without min_ttl the name would be asked for again at once.
    let dns = DnsServer::start(0);
    let r = replicas(&[121]);
    dns.set("hello.test", &[ip(121)]);
    let gw = gateway_with_ttls(
        Some(&dns),
        &format!("\"hello.test:{}\"", r[0].addr.port()),
        "",
        "2s",
        "30s",
    );
    let resolved = "gateway_dns_resolutions_total{upstream=\"hello\",result=\"success\"}";
    let first = wait_until(DEADLINE, "the first resolution", || {
        (gw.metric(resolved)? >= 1.0).then(Instant::now)
    });
    wait_until(Duration::from_secs(30), "two more resolutions", || {
        (gw.metric(resolved)? >= 3.0).then_some(())
    });
    // Two more, min_ttl (2 s) apart at the least: a lower bound, which load only lengthens.
    let took = first.elapsed();
    assert!(took >= Duration::from_millis(3500), "{took:?}");
    assert_eq!(get(gw.port("http"), "/", ""), (200, "r121".to_owned()));
}

/// README: "A changed upstream keeps serving its known backends until its discovery
/// answers", and "A failed or empty answer keeps the last good addresses". Today the
/// rebuilt upstream inherits the addresses, but its DNS task's first failed answer
/// replaces them with its own last good ones, of which it has none: 502.
#[test]
fn a_changed_upstream_keeps_its_backends_while_its_names_do_not_resolve() {
    let mut dns = DnsServer::start(TTL);
    let r = replicas(&[131]);
    dns.set("hello.test", &[ip(131)]);
    let gw = gateway(
        Some(&dns),
        &format!("\"hello.test:{}\"", r[0].addr.port()),
        "retries = 2",
    );
    let port = gw.port("http");
    assert_eq!(get(port, "/", ""), (200, "r131".to_owned()));
    // The DNS server goes away, then the upstream's definition changes (the same names):
    // the new upstream serves the known backend rather than nothing (502).
    dns.stop();
    let failure = "gateway_dns_resolutions_total{upstream=\"hello\",result=\"failure\"}";
    wait_until(DEADLINE, "a failed resolution", || {
        (gw.metric(failure)? >= 1.0).then_some(())
    });
    let text = std::fs::read_to_string(gw.config_path()).unwrap();
    std::fs::write(gw.config_path(), text.replace("retries = 2", "retries = 1")).unwrap();
    wait_until(DEADLINE, "the reload", || {
        (gw.metric("gateway_config_reloads_total{result=\"success\"}")? == 1.0).then_some(())
    });
    // Through the new upstream's own failed resolutions, several TTLs long.
    let failed = gw.metric(failure).unwrap();
    wait_until(
        Duration::from_secs(30),
        "the new upstream's failed resolutions",
        || {
            assert_eq!(get(port, "/", ""), (200, "r131".to_owned()), "{}", gw.log());
            (gw.metric(failure)? >= failed + 2.0).then_some(())
        },
    );
}
