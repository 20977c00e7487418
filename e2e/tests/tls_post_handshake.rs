//! TLS messages after the handshake are answered while the connection waits for a
//! request or for the rest of its head, not only when the next response is written: a
//! TLS 1.2 renegotiation attempt gets its `no_renegotiation` warning at once. Fails if
//! the head read stops flushing what rustls queued (http1::io::Answering): the alert
//! then waits for the connection's close.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use e2e::{Certs, Gateway, Hello};

/// Far beyond the wait below: the connection is not closed (which would flush the
/// answer too) while the test waits.
const HEADER_TIMEOUT: &str = "600s";
/// A generous bound for an answer that takes milliseconds.
const WAIT: Duration = Duration::from_secs(30);

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn gateway(hello: &Hello, certs: &Certs) -> Gateway {
    let tls = certs.server("tls", &["localhost"]);
    Gateway::start(&format!(
        "[[listener]]\nname = \"https\"\nlisten = \"127.0.0.1:{{{{port:https}}}}\"\ntls = {{ certs = [\"{}\"] }}\nheader_timeout = \"{HEADER_TIMEOUT}\"\n[upstream.hello]\nservers = [\"{}\"]\n[[route]]\nupstream = \"hello\"\n",
        tls.display(),
        hello.addr
    ))
}

/// `openssl s_client -msg` on the gateway's TLS listener with `version`; its output
/// lines arrive on the channel.
fn s_client(gw: &Gateway, version: &str) -> (KillOnDrop, mpsc::Receiver<String>) {
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            version,
            "-msg",
            "-servername",
            "localhost",
            "-connect",
        ])
        .arg(format!("127.0.0.1:{}", gw.port("https")))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run openssl s_client");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (KillOnDrop(child), rx)
}

/// Waits up to [`WAIT`] for a line with all of `parts`; every line seen, on failure.
fn wait_line(rx: &mpsc::Receiver<String>, parts: &[&str], seen: &mut Vec<String>) {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let found = parts.iter().all(|p| line.contains(p));
                seen.push(line);
                if found {
                    return;
                }
            }
            Err(_) => panic!(
                "no line with {parts:?} within {WAIT:?}:\n{}",
                seen.join("\n")
            ),
        }
    }
}

/// A TLS 1.2 `s_client` connection to a gateway, its handshake done.
struct Connected {
    _hello: Hello,
    _certs: Certs,
    _gw: Gateway,
    openssl: KillOnDrop,
    rx: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Connected {
    fn new() -> Self {
        let hello = Hello::spawn("h");
        let certs = Certs::new();
        let gw = gateway(&hello, &certs);
        let (openssl, rx) = s_client(&gw, "-tls1_2");
        let mut seen = Vec::new();
        wait_line(&rx, &["Verify return code"], &mut seen);
        Self {
            _hello: hello,
            _certs: certs,
            _gw: gw,
            openssl,
            rx,
            seen,
        }
    }

    /// Types `line` into s_client.
    fn send(&mut self, line: &[u8]) {
        let stdin = self.openssl.0.stdin.as_mut().unwrap();
        stdin.write_all(line).unwrap();
        stdin.flush().unwrap();
    }

    fn wait(&mut self, parts: &[&str]) {
        wait_line(&self.rx, parts, &mut self.seen);
    }
}

#[test]
fn a_renegotiation_attempt_is_refused_before_any_request() {
    let mut c = Connected::new();
    // `R`: a ClientHello on the established connection; rustls refuses it with a
    // no_renegotiation warning alert.
    c.send(b"R\n");
    c.wait(&[">>> ", "ClientHello"]);
    c.wait(&["<<< ", "Alert"]);
}

#[test]
fn a_renegotiation_attempt_inside_a_request_head_is_refused_at_once() {
    let mut c = Connected::new();
    // The request line only: the head is not complete, the gateway waits for more.
    c.send(b"GET / HTTP/1.1\n");
    // `-msg` shows an application data record as its header's bytes only.
    c.wait(&["17 03 03 "]);
    c.send(b"R\n");
    c.wait(&[">>> ", "ClientHello"]);
    c.wait(&["<<< ", "Alert"]);
}
