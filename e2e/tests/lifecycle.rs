//! Graceful shutdown: SIGTERM fails readiness at once, keeps serving for the shutdown
//! delay, lets in-flight requests finish, exits 0; SIGINT exits at once.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::time::{Duration, Instant};

use e2e::{http_get, wait_until, Gateway, Hello};

/// The SIGTERM test's settings: "at once" must be well within the delay, "once
/// drained" well before the drain timeout, by seconds on a loaded machine.
const SHUTDOWN_DELAY: Duration = Duration::from_secs(5);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
/// A slow request outlasts the shutdown delay by this much: it is in flight when the
/// drain starts.
const OUTLAST: Duration = Duration::from_secs(5);

fn gateway(hello: &Hello, shutdown_delay: Duration, drain_timeout: Duration) -> Gateway {
    Gateway::start(&format!(
        "[admin]\nlisten = \"127.0.0.1:{{{{port:admin}}}}\"\n[server]\nshutdown_delay = \"{}s\"\ndrain_timeout = \"{}s\"\n[[listener]]\nname = \"http\"\nlisten = \"127.0.0.1:{{{{port:http}}}}\"\n[upstream.hello]\nservers = [\"{}\"]\n[[route]]\nupstream = \"hello\"\n",
        shutdown_delay.as_secs(),
        drain_timeout.as_secs(),
        hello.addr
    ))
}

/// Starts a GET that hello answers after `delay`, and waits until the gateway counts it
/// in flight.
fn slow_request(gw: &Gateway, delay: Duration) -> std::thread::JoinHandle<(u16, String)> {
    let port = gw.port("http");
    let path = format!("/?delay_ms={}", delay.as_millis());
    let slow = std::thread::spawn(move || http_get(port, &path, ""));
    wait_until(delay / 2, "slow request in flight", || {
        (gw.metric("gateway_requests_in_flight")? >= 1.0).then_some(())
    });
    slow
}

#[test]
fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let hello = Hello::spawn("h");
    let mut gw = gateway(&hello, SHUTDOWN_DELAY, DRAIN_TIMEOUT);
    let port = gw.port("http");
    let slow = slow_request(&gw, SHUTDOWN_DELAY + OUTLAST);
    // Every bound below is measured from the signal.
    let signalled = Instant::now();
    gw.signal("TERM");
    wait_until(SHUTDOWN_DELAY, "readiness failing", || {
        (gw.admin_get("/readyz").0 == 503).then_some(())
    });
    assert!(
        signalled.elapsed() < SHUTDOWN_DELAY,
        "readiness failed only after {:?}",
        signalled.elapsed()
    );
    // New requests during the shutdown delay are served.
    assert_eq!(
        http_get(port, "/", "").0,
        200,
        "a new request {:?} after SIGTERM",
        signalled.elapsed()
    );
    assert_eq!(gw.admin_get("/healthz").0, 200);
    assert_eq!(
        slow.join().unwrap().0,
        200,
        "the in-flight request completes"
    );
    let status = gw.wait_exit(SHUTDOWN_DELAY + DRAIN_TIMEOUT + Duration::from_secs(10));
    let status = status.unwrap_or_else(|| panic!("still running\n{}", gw.log()));
    assert!(status.success(), "{status}\n{}", gw.log());
    // It exited once drained (the slow request ended ~OUTLAST after the delay), not
    // after the whole drain timeout (SHUTDOWN_DELAY + 60 s).
    assert!(
        signalled.elapsed() < SHUTDOWN_DELAY + DRAIN_TIMEOUT / 2,
        "{:?}",
        signalled.elapsed()
    );
    // The last request's access line (buffered) was written out before the exit.
    let log = gw.log();
    assert!(
        log.lines()
            .any(|l| l.contains("access") && l.contains("path=\"/\"") && l.contains("status=200")),
        "{log}"
    );
    assert!(
        log.lines().filter(|l| l.contains(" access: ")).count() >= 2,
        "both requests logged: {log}"
    );
}

#[test]
fn sigint_exits_at_once() {
    let hello = Hello::spawn("h");
    // A graceful stop would take a minute at least: the delay, then the request below.
    let patient = Duration::from_secs(60);
    let mut gw = gateway(&hello, patient, patient);
    let slow = slow_request(&gw, 2 * patient);
    let signalled = Instant::now();
    gw.signal("INT");
    let status = gw
        .wait_exit(patient)
        .unwrap_or_else(|| panic!("still running after {patient:?}\n{}", gw.log()));
    // At once: seconds at most on a loaded machine, not the minute a graceful stop takes.
    let took = signalled.elapsed();
    assert!(took < patient / 3, "exited {took:?} after SIGINT");
    assert!(status.success(), "{status}");
    assert_eq!(
        slow.join().unwrap().0,
        0,
        "the request in flight was cut off"
    );
}

#[test]
fn shutdown_delay_and_drain_timeout_follow_reloads() {
    let hello = Hello::spawn("h");
    // Started with a minute of each; a reload shortens both.
    let mut gw = Gateway::start(&format!(
        "[admin]\nlisten = \"127.0.0.1:{{{{port:admin}}}}\"\n[server]\nshutdown_delay = \"1m\"\ndrain_timeout = \"1m\"\n[[listener]]\nname = \"http\"\nlisten = \"127.0.0.1:{{{{port:http}}}}\"\n[upstream.hello]\nservers = [\"{}\"]\nread_timeout = \"5m\"\n[[route]]\nupstream = \"hello\"\n",
        hello.addr
    ));
    let text = std::fs::read_to_string(gw.config_path()).unwrap();
    let text = text
        .replace("shutdown_delay = \"1m\"", "shutdown_delay = \"500ms\"")
        .replace("drain_timeout = \"1m\"", "drain_timeout = \"1s\"");
    std::fs::write(gw.config_path(), text).unwrap();
    wait_until(Duration::from_secs(10), "the reload", || {
        (gw.metric("gateway_config_reloads_total{result=\"success\"}")? >= 1.0).then_some(())
    });
    assert!(!gw.log().contains("need a restart"), "{}", gw.log());
    // A request that would outlast any drain is in flight at SIGTERM.
    let port = gw.port("http");
    let _stuck = std::thread::spawn(move || http_get(port, "/?delay_ms=120000", ""));
    wait_until(Duration::from_secs(5), "request in flight", || {
        (gw.metric("gateway_requests_in_flight")? >= 1.0).then_some(())
    });
    gw.signal("TERM");
    // The listeners close after the new shutdown_delay, not the minute it started with.
    wait_until(Duration::from_secs(10), "listeners closing", || {
        gw.log().contains("closing listeners").then_some(())
    });
    // And the stuck request is given the new drain_timeout, not a minute.
    let status = gw.wait_exit(Duration::from_secs(10));
    let status = status.unwrap_or_else(|| panic!("still running\n{}", gw.log()));
    assert!(status.success(), "{status}\n{}", gw.log());
    assert!(gw.log().contains("drain_timeout is over"), "{}", gw.log());
}
