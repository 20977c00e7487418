//! A real `redis-server` (Debian's) in a child process on a free port, for the shared
//! rate limits.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running Redis without persistence; killed when dropped.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl Redis {
    /// Starts one on a free port of 127.0.0.1 and waits until it answers `PING`.
    pub fn start() -> Self {
        let mut redis = Self {
            port: crate::gateway::reserve_port(),
            child: None,
            _dir: tempfile::tempdir().expect("tempdir"),
        };
        redis.restart();
        redis
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops it (SIGKILL); the port stays this one's.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (empty: nothing is persisted).
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .current_dir(self._dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn redis-server (apt-get install redis-server; e2e/setup.sh does)");
        self.child = Some(child);
        crate::wait_until(
            Duration::from_secs(10),
            "redis-server answering PING",
            || self.command("PING").filter(|r| r.starts_with("+PONG")),
        );
    }

    /// Sends one inline command and returns the raw reply (up to 64 KiB), if it answers.
    pub fn command(&self, command: &str) -> Option<String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(format!("{command}\r\n").as_bytes()).ok()?;
        let mut buf = vec![0u8; 65536];
        let mut got = 0;
        // Replies here are one read or a few; stop at a complete bulk or line.
        loop {
            let n = s.read(&mut buf[got..]).ok()?;
            got += n;
            let text = String::from_utf8_lossy(&buf[..got]);
            let complete = match text.strip_prefix('$') {
                Some(rest) => rest.split_once("\r\n").is_some_and(|(len, body)| {
                    len.parse::<usize>().is_ok_and(|len| body.len() >= len + 2)
                }),
                None => text.ends_with("\r\n"),
            };
            if n == 0 || complete || got == buf.len() {
                return Some(text.into_owned());
            }
        }
    }

    /// How many times Redis ran `command` (from `INFO commandstats`).
    pub fn calls(&self, command: &str) -> u64 {
        let info = self.command("INFO commandstats").unwrap_or_default();
        let prefix = format!("cmdstat_{command}:calls=");
        info.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}
