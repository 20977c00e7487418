//! A real HAProxy in a child process (Debian's `haproxy`), for PROXY protocol senders.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::gateway::Ports;

/// A running `haproxy -db` on a rendered config; killed when dropped.
pub struct Haproxy {
    child: Child,
    ports: Ports,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// Renders `template` (`{{port:NAME}}` as in gateway configs) after a `global` and
    /// `defaults` section (TCP mode, short timeouts) and starts HAProxy on it; returns
    /// once every port accepts connections.
    pub fn start(template: &str) -> Self {
        let mut ports = Ports::new();
        let body = ports.render(template);
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg: PathBuf = dir.path().join("haproxy.cfg");
        let text = format!(
            "global\n  maxconn 256\n\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\n{body}"
        );
        std::fs::write(&cfg, text).expect("write haproxy.cfg");
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn haproxy (apt-get install haproxy; e2e/setup.sh does)");
        let haproxy = Self {
            child,
            ports,
            _dir: dir,
        };
        for port in haproxy.ports.all() {
            crate::wait_until(Duration::from_secs(10), "haproxy listening", || {
                std::net::TcpStream::connect(("127.0.0.1", port)).ok()
            });
        }
        haproxy
    }

    /// The port of `{{port:name}}`.
    pub fn port(&self, name: &str) -> u16 {
        self.ports
            .get(name)
            .unwrap_or_else(|| panic!("no port {name:?}"))
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
