//! The upstream connection pool: connections kept alive and reused, and closed once idle
//! for the upstream's `idle_timeout`.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::time::Duration;

use e2e::{raw_get, wait_until, Gateway, Hello};

const DEADLINE: Duration = Duration::from_secs(15);

/// A gateway in front of `hello` with `idle_timeout`.
fn gateway(hello: &Hello, idle_timeout: &str) -> Gateway {
    Gateway::start(&format!(
        "[admin]\nlisten = \"127.0.0.1:{{{{port:admin}}}}\"\n[[listener]]\nname = \"http\"\nlisten = \"127.0.0.1:{{{{port:http}}}}\"\n[upstream.hello]\nservers = [\"{}\"]\nidle_timeout = \"{idle_timeout}\"\n[[route]]\nupstream = \"hello\"\n",
        hello.addr
    ))
}

/// GET / through the gateway: hello's number of the TCP connection it came on.
fn connection(port: u16) -> u64 {
    let (status, out) = raw_get(port, "hello", "/", "");
    assert_eq!(status, 200, "{out}");
    out.lines()
        .find_map(|l| l.strip_prefix("x-hello-connection: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no x-hello-connection in {out}"))
}

/// Established TCP connections to `hello` (the gateway's side: destination port hello's).
fn open_to(hello: &Hello) -> usize {
    let out = std::process::Command::new("ss")
        .args(["-tnH", "state", "established"])
        .arg(format!("( dport = :{} )", hello.addr.port()))
        .output()
        .expect("run ss (apt-get install iproute2)");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&hello.addr.to_string()))
        .count()
}

#[test]
fn an_idle_pooled_connection_is_reused_and_closed_after_idle_timeout() {
    // The control: with a long idle_timeout, the second request reuses the first's
    // connection, which stays open.
    let hello = Hello::spawn("kept");
    let gw = gateway(&hello, "1h");
    let port = gw.port("http");
    let first = connection(port);
    assert_eq!(connection(port), first, "the pooled connection reused");
    assert_eq!(open_to(&hello), 1);
    drop(gw);

    // idle_timeout = 1s: the pooled connection is closed by the gateway with no request
    // coming, and the next request opens a new one.
    let hello = Hello::spawn("swept");
    let gw = gateway(&hello, "1s");
    let port = gw.port("http");
    let first = connection(port);
    wait_until(DEADLINE, "the idle connection closed", || {
        (open_to(&hello) == 0).then_some(())
    });
    assert_eq!(connection(port), first + 1, "a new connection after the close");
}
