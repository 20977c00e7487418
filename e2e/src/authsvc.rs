//! An `authsvc` forward-auth service in a child process.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

/// A running `authsvc`; killed when dropped.
pub struct AuthService {
    pub addr: SocketAddr,
    child: Child,
}

impl AuthService {
    /// Starts one on an ephemeral port of 127.0.0.1 with `flags` (`--delay-ms N`).
    pub fn spawn(flags: &[&str]) -> Self {
        let mut child = Command::new(crate::gateway::workspace_bin("authsvc"))
            .args(["--listen", "127.0.0.1:0"])
            .args(flags)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn authsvc");
        let stdout = child.stdout.take().expect("authsvc stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read authsvc's first line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("authsvc did not start: {line:?}"));
        Self { addr, child }
    }

    /// The last auth request it received, as `GET /_last` tells.
    pub fn last(&self) -> String {
        let (status, out) = crate::raw_get(self.addr.port(), "authsvc", "/_last", "");
        assert_eq!(status, 200, "authsvc /_last: {out}");
        out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned()
    }

    /// Stops it (the service is then down).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for AuthService {
    fn drop(&mut self) {
        self.stop();
    }
}
