//! Slowloris (request heads sent a header line at a time, never finished) against the
//! gateway's plain and TLS listeners, with Debian's `slowhttptest`
//! (`apt-get install slowhttptest`): while 500 slow connections are held, normal
//! requests must keep succeeding, and the gateway must close the slow connections
//! (`header_timeout`) before slowhttptest's test length is up.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::{Certs, Client, Gateway, Hello, Proto};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `header_timeout` written into each `[[listener]]` table.
/// REMOVE (set to `None`) if the gateway does not know the setting yet: it refuses
/// unknown listener fields, so the gateway would not start.
const HEADER_TIMEOUT: Option<&str> = Some("2s");

/// slowhttptest settings: slow connections, how many it opens per second (all within
/// the first second), seconds between the header lines it trickles, test length.
const CONNECTIONS: u32 = 500;
const RATE: u32 = 1000;
const INTERVAL_SECS: u32 = 5;
const TEST_LENGTH_SECS: u32 = 20;
/// slowhttptest must have exited this long after its test length (then it is killed).
const EXIT_GRACE: Duration = Duration::from_secs(30);
/// Deadline of one normal request.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// Normal requests that must succeed while slowhttptest runs (at least).
const MIN_GOOD_REQUESTS: u64 = 5;

/// hello behind a gateway with a plain (`web`) and a TLS (`https`) listener.
fn gateway(certs: &Certs, hello: &Hello) -> Gateway {
    let tls = certs.server("tls", &["localhost"]);
    let header_timeout = HEADER_TIMEOUT
        .map(|t| format!("header_timeout = \"{t}\"\n"))
        .unwrap_or_default();
    Gateway::start(&e2e::web_and_https_config(
        &tls,
        hello.addr,
        &header_timeout,
        &header_timeout,
        "",
    ))
}

/// A running slowhttptest; killed when dropped.
struct SlowHttpTest {
    child: Child,
    dir: tempfile::TempDir,
}

impl SlowHttpTest {
    /// Slowloris (`-H`) against `url`, with per-second statistics (`-g -o`).
    fn start(url: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = std::fs::File::create(dir.path().join("out.txt")).unwrap();
        let child = Command::new("slowhttptest")
            .arg("-H")
            .args(["-c", &CONNECTIONS.to_string()])
            .args(["-r", &RATE.to_string()])
            .args(["-i", &INTERVAL_SECS.to_string()])
            .args(["-l", &TEST_LENGTH_SECS.to_string()])
            .args(["-x", "24"])
            .args(["-u", url])
            .arg("-g")
            .arg("-o")
            .arg(dir.path().join("stats"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run slowhttptest ({e}): install the Debian package \
                     `slowhttptest` (apt-get install -y slowhttptest)"
                )
            });
        Self { child, dir }
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// The end of its output (its last status report), without colour codes.
    fn output(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("out.txt")).unwrap_or_default();
        let mut plain = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                // CSI: ESC [ parameters final-byte
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                plain.push(c);
            }
        }
        let lines: Vec<&str> = plain.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The per-second statistics: one row per second.
    fn stats(&self) -> Vec<Sample> {
        let path = self.dir.path().join("stats.csv");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", path.display(), self.output()));
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
        let col = |name: &str| {
            header
                .iter()
                .position(|h| h.trim() == name)
                .unwrap_or_else(|| panic!("no {name} column in {header:?}"))
        };
        let (seconds, closed, pending, connected) = (
            col("Seconds"),
            col("Closed"),
            col("Pending"),
            col("Connected"),
        );
        lines
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: Vec<u32> = l.split(',').map(|x| x.trim().parse().unwrap()).collect();
                Sample {
                    second: v[seconds],
                    closed: v[closed],
                    pending: v[pending],
                    connected: v[connected],
                }
            })
            .collect()
    }
}

impl Drop for SlowHttpTest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One row of slowhttptest's CSV.
#[derive(Debug, Clone, Copy)]
struct Sample {
    second: u32,
    /// Connections the server closed.
    closed: u32,
    pending: u32,
    connected: u32,
}

/// File descriptors process `pid` has open (the gateway: its sockets, among others).
/// Cheaper than /proc/net/tcp, whose reads slow down badly with a thousand sockets.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// One plain HTTP/1.1 GET of "/" on a new connection: the status line's code.
async fn plain_get(addr: SocketAddr) -> Result<u16, String> {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: hello\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)
        .await
        .map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&out);
    text.get(9..12)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line in {text:?}"))
}

/// Which listener is attacked.
#[derive(Debug, Clone, Copy)]
enum Target {
    Plain,
    Tls,
}

async fn slowloris(target: Target) {
    let started = Instant::now();
    let certs = Certs::new();
    let hello = Hello::spawn("h");
    let gw = gateway(&certs, &hello);
    let (listener, scheme) = match target {
        Target::Plain => ("web", "http"),
        Target::Tls => ("https", "https"),
    };
    let addr = gw.addr(listener);
    let client = Client::new(&certs.ca());

    let mut slow = SlowHttpTest::start(&format!("{scheme}://{addr}/"));
    let attack_start = Instant::now();
    let stop_by = attack_start + Duration::from_secs(u64::from(TEST_LENGTH_SECS)) + EXIT_GRACE;
    let mut good: u64 = 0;
    let mut slowest = Duration::ZERO;
    let fds_before = open_fds(gw.pid());
    let mut peak_fds = fds_before;
    while slow.running() {
        assert!(
            Instant::now() < stop_by,
            "slowhttptest still running after {:?}\n{}",
            attack_start.elapsed(),
            slow.output()
        );
        peak_fds = peak_fds.max(open_fds(gw.pid()));
        let request = async {
            match target {
                Target::Plain => plain_get(addr).await,
                Target::Tls => {
                    let proto = match good % 2 {
                        0 => Proto::H1,
                        _ => Proto::H2,
                    };
                    let mut conn = client.connect(addr, Some("localhost"), proto).await?;
                    conn.get("/").await.map(|r| r.status)
                }
            }
        };
        let sent = Instant::now();
        let status = tokio::time::timeout(REQUEST_DEADLINE, request)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "normal request {good} got no answer in {REQUEST_DEADLINE:?} during \
                     slowloris ({:?} in, the gateway has {} fds open)\n{}",
                    attack_start.elapsed(),
                    open_fds(gw.pid()),
                    slow.output()
                )
            })
            .unwrap_or_else(|e| panic!("normal request {good} during slowloris: {e}"));
        assert_eq!(status, 200, "normal request {good} during slowloris");
        slowest = slowest.max(sent.elapsed());
        good += 1;
    }
    let attack_time = attack_start.elapsed();
    let status = slow.child.wait().unwrap();
    let output = slow.output();
    let stats = slow.stats();
    let peak_connected = stats.iter().map(|s| s.connected).max().unwrap_or(0);
    let max_closed = stats.iter().map(|s| s.closed).max().unwrap_or(0);
    let last = stats.last().copied();
    let exit = output
        .lines()
        .find_map(|l| l.strip_prefix("Exit status:"))
        .unwrap_or("?")
        .trim()
        .to_owned();
    let closed_from = stats
        .iter()
        .find(|s| s.closed > 0)
        .map_or("never".to_owned(), |s| format!("second {}", s.second));
    println!(
        "[slowloris {listener}] slowhttptest ran {attack_time:.2?} ({exit}); its samples: \
         peak connected {peak_connected}, closed by the server {max_closed} (first at {closed_from}), \
         last {last:?}; the gateway's open fds: {fds_before} before, peak {peak_fds}; \
         normal requests, all 200: {good} (slowest {slowest:.2?}); test took {:.2?}",
        started.elapsed()
    );
    println!("[slowloris {listener}] per second (s, closed, pending, connected):");
    for s in &stats {
        print!("({},{},{},{}) ", s.second, s.closed, s.pending, s.connected);
    }
    println!();

    assert!(status.success(), "slowhttptest failed: {status}\n{output}");
    assert!(
        good >= MIN_GOOD_REQUESTS,
        "only {good} normal requests were made while slowhttptest ran"
    );
    // The slow connections were really made: each sample counts a connection once, as
    // connected or (after the server closed it) closed.
    let made = stats
        .iter()
        .map(|s| s.connected + s.closed)
        .max()
        .unwrap_or(0);
    assert!(
        made >= CONNECTIONS * 9 / 10,
        "slowhttptest connected only {made} of {CONNECTIONS} slow connections\n{output}"
    );
    // The gateway closes them (header_timeout) before slowhttptest's test length is up:
    // it then stops with "No open connections left". Its last CSV row can predate the
    // last closes, so that exit status is the proof; failing it, few may be connected at
    // the end.
    let still_connected = last.map_or(0, |s| s.connected);
    assert!(
        exit.contains("No open connections left") || still_connected <= CONNECTIONS / 10,
        "the gateway did not close the slow connections: slowhttptest ended with \
         \"{exit}\", {still_connected} of {CONNECTIONS} still connected, {max_closed} closed \
         by the server (header_timeout {HEADER_TIMEOUT:?})\n{output}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn slowloris_on_plain_listener_is_cut_off_and_others_are_served() {
    slowloris(Target::Plain).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn slowloris_on_tls_listener_is_cut_off_and_others_are_served() {
    slowloris(Target::Tls).await;
}
