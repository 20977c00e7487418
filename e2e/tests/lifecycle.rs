//! Graceful shutdown: SIGTERM fails readiness at once, keeps serving for the shutdown
//! delay, lets in-flight requests finish, exits 0; SIGINT exits at once.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::time::{Duration, Instant};

use std::io::Write;

use e2e::{connect, http_get, read_reply, read_until_close, wait_until, Certs, Gateway, Hello};

/// The SIGTERM test's settings: "at once" must be well within the delay, "once
/// drained" well before the drain timeout, by seconds on a loaded machine.
const SHUTDOWN_DELAY: Duration = Duration::from_secs(5);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
/// A slow request outlasts the shutdown delay by this much: it is in flight when the
/// drain starts, and while the drain's effects on other connections are checked.
const OUTLAST: Duration = Duration::from_secs(10);

fn gateway(hello: &Hello, shutdown_delay: Duration, drain_timeout: Duration) -> Gateway {
    gateway_with(hello, shutdown_delay, drain_timeout, "")
}

/// [`gateway`] with `extra` config lines (another listener).
fn gateway_with(
    hello: &Hello,
    shutdown_delay: Duration,
    drain_timeout: Duration,
    extra: &str,
) -> Gateway {
    Gateway::start(&format!(
        "[admin]\nlisten = \"127.0.0.1:{{{{port:admin}}}}\"\n[server]\nshutdown_delay = \"{}s\"\ndrain_timeout = \"{}s\"\n[[listener]]\nname = \"http\"\nlisten = \"127.0.0.1:{{{{port:http}}}}\"\n{extra}\n[upstream.hello]\nservers = [\"{}\"]\n[[route]]\nupstream = \"hello\"\n",
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
    let certs = Certs::new();
    let tls = certs.server("tls", &["localhost"]);
    let https = format!(
        "[[listener]]\nname = \"https\"\nlisten = \"127.0.0.1:{{{{port:https}}}}\"\ntls = {{ certs = [\"{}\"] }}\n",
        tls.display()
    );
    let mut gw = gateway_with(&hello, SHUTDOWN_DELAY, DRAIN_TIMEOUT, &https);
    let port = gw.port("http");
    let slow = slow_request(&gw, SHUTDOWN_DELAY + OUTLAST);
    // Idle keep-alive connections, HTTP/1.1 and HTTP/2, each after one request (the
    // default keepalive_timeout, 60 s, is far away).
    let mut idle = connect(port, e2e::Transport::Tcp, &certs.ca());
    idle.write_all(b"GET / HTTP/1.1\r\nHost: hello\r\n\r\n")
        .unwrap();
    assert_eq!(read_reply(&mut *idle).status, Some(200));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let h2_conn = rt.block_on(async {
        let (mut send, conn) = e2e::h2_connect(gw.addr("https"), &certs.ca()).await;
        let req = http::Request::get("https://localhost/").body(()).unwrap();
        let (response, _) = send.send_request(req, true).unwrap();
        assert_eq!(response.await.unwrap().status(), 200);
        (send, conn)
    });
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
    // After the delay: the listeners close (new connections are refused), idle keep-alive
    // connections are closed, HTTP/2 ones with a GOAWAY, while the slow request goes on.
    wait_until(SHUTDOWN_DELAY + OUTLAST, "listeners closed", || {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .is_err()
            .then_some(())
    });
    assert!(
        signalled.elapsed() >= SHUTDOWN_DELAY,
        "listeners closed {:?} after SIGTERM",
        signalled.elapsed()
    );
    assert!(
        read_until_close(&mut *idle).is_empty(),
        "an idle HTTP/1.1 connection"
    );
    let (_send, h2_conn) = h2_conn;
    let ended = rt.block_on(async { tokio::time::timeout(e2e::READ_TIMEOUT, h2_conn).await });
    assert!(ended.is_ok(), "the idle HTTP/2 connection is still open");
    // Those happened during the drain, not at the exit.
    assert!(
        !slow.is_finished(),
        "the slow request ended first: the drain could not be told from the exit"
    );
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

/// Threads of process `pid` named `name` (`/proc/PID/task/*/comm`).
fn threads_named(pid: u32, name: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == name)
        .count()
}

/// Waits until each listener of `gw`, `a` and `b`, runs `want` worker threads.
fn wait_workers(gw: &Gateway, want: usize, what: &str) {
    wait_until(
        Duration::from_secs(20),
        &format!("{want} worker threads per listener ({what})"),
        || {
            let counts = [
                threads_named(gw.pid(), "listener a"),
                threads_named(gw.pid(), "listener b"),
            ];
            (counts == [want, want]).then_some(())
        },
    );
}

#[test]
fn worker_threads_default_to_the_cpus_available() {
    let hello = Hello::spawn("h");
    let config = |server: &str| {
        format!(
            "{server}\n[[listener]]\nname = \"a\"\nlisten = \"127.0.0.1:{{{{port:a}}}}\"\n[[listener]]\nname = \"b\"\nlisten = \"127.0.0.1:{{{{port:b}}}}\"\n[upstream.hello]\nservers = [\"{}\"]\n[[route]]\nupstream = \"hello\"\n",
            hello.addr
        )
    };
    // The rule the test process itself runs under (same affinity, same cgroup quota).
    let cpus = std::thread::available_parallelism().unwrap().get();
    let gw = Gateway::start(&config(""));
    wait_workers(&gw, cpus, "no [server] threads");
    assert_eq!(http_get(gw.port("a"), "/", "").0, 200);
    drop(gw);

    // Pinned to one CPU (the first this process may use): one thread per listener.
    let allowed = std::fs::read_to_string("/proc/self/status").unwrap();
    let first_cpu = allowed
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .and_then(|list| list.trim().split([',', '-']).next())
        .unwrap()
        .to_owned();
    let pinned = Gateway::start_with(&config(""), |command| {
        e2e::wrapped(&["taskset", "--cpu-list", &first_cpu], &command)
    });
    wait_workers(&pinned, 1, "one CPU allowed");
    assert_eq!(http_get(pinned.port("b"), "/", "").0, 200);
    drop(pinned);

    // The control: the count follows the setting when there is one.
    let set = Gateway::start(&config("[server]\nthreads = 3"));
    wait_workers(&set, 3, "threads = 3");
}
