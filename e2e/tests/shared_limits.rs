//! Rate limits shared by two gateway processes through a real `redis-server`: together
//! they admit the route's rate; with Redis killed each falls back to its own limit
//! (`on_error = "local"`) without any request waiting on Redis, and once Redis is back
//! sharing resumes by itself. Redis gets far fewer calls than there are requests.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use e2e::{wait_until, Gateway, Hello, Redis};

fn gateway(hello: &Hello, redis: &Redis) -> Gateway {
    Gateway::start(&format!(
        r#"
[admin]
listen = "127.0.0.1:{{{{port:admin}}}}"

[rate_limit]
shared = {{ redis = "{url}", timeout = "50ms" }}

[[listener]]
name = "web"
listen = "127.0.0.1:{{{{port:web}}}}"

[upstream.hello]
servers = ["{hello}"]

[[route]]
path_prefix = "/limited"
rate_limit = {{ requests = 20, per = "1s" }}
upstream = "hello"
"#,
        url = redis.url(),
        hello = hello.addr,
    ))
}

/// What one client flooding a gateway for a while got.
#[derive(Debug, Default)]
struct Flood {
    admitted: u32,
    refused: u32,
    slowest: Duration,
}

/// Requests `/limited` back to back on one keep-alive connection to `port` for `run`.
fn flood(port: u16, run: Duration) -> Flood {
    let mut wire = e2e::connect(port, e2e::Transport::Tcp, Path::new("/nonexistent"));
    let mut got = Flood::default();
    let end = Instant::now() + run;
    while Instant::now() < end {
        let started = Instant::now();
        wire.write_all(b"GET /limited HTTP/1.1\r\nHost: hello\r\n\r\n")
            .expect("send");
        let reply = e2e::read_reply(&mut *wire);
        got.slowest = got.slowest.max(started.elapsed());
        match reply.status {
            Some(200) => got.admitted += 1,
            Some(429) => got.refused += 1,
            other => panic!("{other:?}: {}", reply.text),
        }
    }
    got
}

/// Both gateways flooded at once for `run`.
fn flood_both(a: &Gateway, b: &Gateway, run: Duration) -> (Flood, Flood) {
    let (pa, pb) = (a.port("web"), b.port("web"));
    let ta = std::thread::spawn(move || flood(pa, run));
    let fb = flood(pb, run);
    (ta.join().expect("flood thread"), fb)
}

fn up(gw: &Gateway) -> Option<f64> {
    gw.metric("gateway_rate_limit_shared_up")
}

#[test]
fn two_replicas_share_one_limit_and_redis_gets_few_calls() {
    let redis = Redis::start();
    let hello = Hello::spawn("a");
    let (a, b) = (gateway(&hello, &redis), gateway(&hello, &redis));
    let evals_before = redis.calls("eval");
    let (fa, fb) = flood_both(&a, &b, Duration::from_secs(5));
    // 20 per second for 5 s, and the first: 101 between the two, within ±10%.
    let admitted = fa.admitted + fb.admitted;
    assert!((91..=111).contains(&admitted), "{fa:?} {fb:?}");
    assert!(
        fa.admitted > 10 && fb.admitted > 10,
        "both replicas admit: {fa:?} {fb:?}"
    );
    // One script call per replica per 10 ms tick at most, and only with admitted
    // requests to send: far fewer than the requests.
    let requests = admitted + fa.refused + fb.refused;
    let evals = redis.calls("eval") - evals_before;
    assert!(evals > 0, "the counts went through Redis");
    assert!(
        evals * 20 < u64::from(requests),
        "{evals} script calls for {requests} requests"
    );
    eprintln!("shared limit: {admitted} admitted of {requests} requests; {evals} Redis calls");
    assert_eq!(up(&a), Some(1.0));
    // Idle keys expire from Redis.
    wait_until(Duration::from_secs(10), "Redis's keys expired", || {
        redis
            .command("DBSIZE")
            .filter(|r| r.trim() == ":0")
            .map(|_| ())
    });
}

#[test]
fn a_new_redis_applies_on_reload() {
    let hello = Hello::spawn("a");
    let mut gone = Redis::start();
    gone.stop();
    let gw = gateway(&hello, &gone);
    wait_until(Duration::from_secs(10), "Redis seen down", || {
        let _ = e2e::raw_get(gw.port("web"), "hello", "/limited", "");
        (up(&gw) == Some(0.0)).then_some(())
    });
    let redis = Redis::start();
    let text = std::fs::read_to_string(gw.config_path()).expect("config");
    std::fs::write(gw.config_path(), text.replace(&gone.url(), &redis.url())).expect("write");
    wait_until(Duration::from_secs(10), "the new Redis in use", || {
        let _ = e2e::raw_get(gw.port("web"), "hello", "/limited", "");
        (up(&gw) == Some(1.0) && redis.calls("eval") > 0).then_some(())
    });
}

#[test]
fn without_redis_each_replica_limits_alone_and_sharing_resumes() {
    let mut redis = Redis::start();
    let hello = Hello::spawn("a");
    let (a, b) = (gateway(&hello, &redis), gateway(&hello, &redis));
    let (fa, fb) = flood_both(&a, &b, Duration::from_secs(1));
    assert!(
        fa.admitted + fb.admitted <= 30,
        "shared at first: {fa:?} {fb:?}"
    );

    redis.stop();
    wait_until(
        Duration::from_secs(10),
        "both replicas see Redis down",
        || {
            // Requests go on meanwhile: the tick only calls Redis with counts to send.
            let _ = e2e::raw_get(a.port("web"), "hello", "/limited", "");
            let _ = e2e::raw_get(b.port("web"), "hello", "/limited", "");
            (up(&a) == Some(0.0) && up(&b) == Some(0.0)).then_some(())
        },
    );
    let (fa, fb) = flood_both(&a, &b, Duration::from_secs(3));
    // Each alone: 20 per second each (1 + 60 apiece), not 20 between them.
    for f in [&fa, &fb] {
        assert!(
            (50..=70).contains(&f.admitted),
            "local fallback: {fa:?} {fb:?}"
        );
        // No request waits on Redis (its timeout is 50 ms; this bound is for safety).
        assert!(f.slowest < Duration::from_secs(1), "{f:?}");
    }
    let warned = |gw: &Gateway| gw.log().matches("Redis did not answer in time").count();
    assert_eq!((warned(&a), warned(&b)), (1, 1), "one WARN per outage");
    assert!(
        a.metric("gateway_rate_limit_shared_errors_total")
            .unwrap_or(0.0)
            >= 1.0
    );

    redis.restart();
    wait_until(
        Duration::from_secs(10),
        "both replicas see Redis again",
        || (up(&a) == Some(1.0) && up(&b) == Some(1.0)).then_some(()),
    );
    assert!(a.log().contains("sharing resumed"));
    let (fa, fb) = flood_both(&a, &b, Duration::from_secs(3));
    let admitted = fa.admitted + fb.admitted;
    assert!((54..=68).contains(&admitted), "shared again: {fa:?} {fb:?}");
}
