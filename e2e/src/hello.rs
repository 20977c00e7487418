//! A `hello` greeter replica in a child process.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

/// A running `hello` replica; killed when dropped.
pub struct Hello {
    pub name: String,
    pub addr: SocketAddr,
    child: Child,
}

impl Hello {
    /// How many requests this replica has received (asked of it directly).
    pub fn requests(&self) -> u64 {
        let (status, out) = crate::raw_get(self.addr.port(), "hello", "/_hello/requests", "");
        assert_eq!(status, 200, "hello request count: {out}");
        let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        body.trim_start_matches("{\"requests\":")
            .trim_end_matches('}')
            .parse()
            .expect("request count")
    }

    /// Starts a replica named `name` on an ephemeral port of 127.0.0.1.
    pub fn spawn(name: &str) -> Self {
        Self::spawn_on(name, "127.0.0.1:0".parse().expect("literal address"))
    }

    /// Replicas named `r<N>` on 127.0.0.`N` for each N in `lasts`, sharing one port,
    /// like pods of a Deployment behind one Service port.
    pub fn spawn_set(lasts: &[u8]) -> Vec<Hello> {
        let ip = |last: u8| std::net::IpAddr::from([127, 0, 0, last]);
        let mut all: Vec<Hello> = Vec::new();
        for &last in lasts {
            let port = all.first().map_or(0, |h| h.addr.port());
            all.push(Hello::spawn_on(
                &format!("r{last}"),
                SocketAddr::new(ip(last), port),
            ));
        }
        all
    }

    /// Starts a replica named `name` on `listen` (port 0: an ephemeral one).
    pub fn spawn_on(name: &str, listen: SocketAddr) -> Self {
        Self::spawn_with(name, listen, &[])
    }

    /// Starts a replica with extra `hello` flags (`--delay-ms N`, `--fail-health`).
    pub fn spawn_with(name: &str, listen: SocketAddr, flags: &[&str]) -> Self {
        let mut child = Command::new(crate::gateway::workspace_bin("hello"))
            .args(["--listen", &listen.to_string(), "--name", name])
            .args(flags)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn hello");
        let stdout = child.stdout.take().expect("hello stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read hello's first line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("hello did not start: {line:?}"));
        Self {
            name: name.to_owned(),
            addr,
            child,
        }
    }
}

impl Drop for Hello {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
