//! The upstream connection pool: connections kept alive and reused, and closed once idle
//! for the upstream's `idle_timeout`.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;
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
    assert_eq!(
        connection(port),
        first + 1,
        "a new connection after the close"
    );
}

/// What the backend of [`backend`] does on a connection once it has answered.
#[derive(Clone, Copy)]
enum After {
    /// Closes it.
    Close,
    /// Keeps it open and writes a second response nobody asked for.
    Chatter,
}

/// A keep-alive HTTP/1.1 backend answering each connection's first request with
/// `conn-N` (N counts connections from 1), then, once told to (the first channel: so
/// that the gateway has pooled the connection by then), doing `after`; it sends on the
/// second channel once that is done.
fn backend(after: After) -> (SocketAddr, mpsc::Sender<()>, mpsc::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (go, told) = mpsc::channel();
    let (done, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { return };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match stream.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let body = format!("conn-{}", n + 1);
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes());
            if told.recv().is_err() {
                return;
            }
            match after {
                After::Close => drop(stream),
                After::Chatter => {
                    let junk = "HTTP/1.1 500 Junk\r\nContent-Length: 4\r\n\r\njunk";
                    let _ = stream.write_all(junk.as_bytes());
                    kept.push(stream);
                }
            }
            let _ = done.send(());
        }
    });
    (addr, go, rx)
}

/// GET / through the gateway on `port`: the status and the body.
fn body_of(port: u16) -> (u16, String) {
    let (status, out) = raw_get(port, "hello", "/", "");
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}

#[test]
fn a_pooled_connection_the_backend_closed_or_wrote_on_is_not_reused() {
    for after in [After::Close, After::Chatter] {
        let (addr, go, done) = backend(after);
        // No retries: a request sent on a dead connection would be the client's 502.
        let gw = Gateway::start(&format!(
            "[server]\nthreads = 1\n[[listener]]\nname = \"http\"\nlisten = \"127.0.0.1:{{{{port:http}}}}\"\n[upstream.hello]\nservers = [\"{addr}\"]\nretries = 0\n[[route]]\nupstream = \"hello\"\n"
        ));
        let port = gw.port("http");
        assert_eq!(body_of(port), (200, "conn-1".to_owned()));
        go.send(()).unwrap();
        done.recv_timeout(e2e::READ_TIMEOUT).unwrap();
        // The check on taking asks the event loop what it knows of the socket (no
        // syscall per request): the loop must have polled the kernel since the backend
        // wrote. With one worker thread, a request the gateway answers itself (a 400 for
        // a target without a leading slash) makes that loop poll, as any later request
        // on the same thread would; the pooled socket's close or bytes are seen then.
        assert_eq!(raw_get(port, "hello", "x", "").0, 400);
        // The pooled connection is closed, or holds a response nobody asked for: the
        // next request goes on a new connection and gets its own answer.
        assert_eq!(body_of(port), (200, "conn-2".to_owned()));
    }
}
