//! A real DNS server for discovery tests: Debian's dnsmasq on a loopback port,
//! answering from a hosts directory it re-reads when a file changes, authoritative for
//! `.test` (a name it does not hold is NXDOMAIN, as a cluster DNS answers for a Service
//! that is gone, rather than a refusal).

use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running dnsmasq; killed when dropped.
pub struct DnsServer {
    pub addr: SocketAddr,
    child: Option<Child>,
    hostsdir: tempfile::TempDir,
    ttl: u32,
}

/// A port free for both UDP and TCP on 127.0.0.1.
fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind tcp");
        let port = tcp.local_addr().expect("addr").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl DnsServer {
    /// Starts dnsmasq answering only from its hosts directory, with `ttl` seconds on
    /// every answer. Panics with a hint when dnsmasq is not installed.
    pub fn start(ttl: u32) -> Self {
        let hostsdir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut server = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child: None,
            hostsdir,
            ttl,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let child = Command::new("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                "--local=/test/",
                "--user=root",
                "--pid-file=",
                "--log-facility=-",
            ])
            .arg(format!("--port={}", self.addr.port()))
            .arg(format!("--local-ttl={}", self.ttl))
            .arg(format!("--hostsdir={}", self.hostsdir.path().display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dnsmasq (apt-get install -y dnsmasq-base)");
        self.child = Some(child);
        crate::wait_until(Duration::from_secs(10), "dnsmasq listening", || {
            std::net::TcpStream::connect(self.addr).ok()
        });
    }

    /// Makes `name` resolve to `ips` (replacing what it resolved to before).
    pub fn set(&self, name: &str, ips: &[IpAddr]) {
        let text: String = ips.iter().map(|ip| format!("{ip} {name}\n")).collect();
        // Written beside, then renamed in: dnsmasq never reads a half-written file.
        let tmp = self.hostsdir.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).expect("write hosts file");
        std::fs::rename(&tmp, self.hostsdir.path().join(name)).expect("rename hosts file");
    }

    /// Stops the server (until [`DnsServer::restart`]).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop();
    }
}
