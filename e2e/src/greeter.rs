//! A `greeter` gRPC backend in a child process: started, asked for its counts, stopped
//! gracefully (SIGTERM) or killed.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::grpc::GreeterClient;

/// How long [`Greeter::graceful_stop`] waits for the process to exit.
const STOP_DEADLINE: Duration = Duration::from_secs(30);

/// A running `greeter`; killed when dropped.
pub struct Greeter {
    pub name: String,
    pub addr: SocketAddr,
    child: Child,
    reach: Reach,
}

/// How a client of the harness reaches this greeter directly.
#[derive(Clone)]
enum Reach {
    H2c,
    /// TLS, trusting `ca` (the cert dir's `ca.crt`) for `server_name` (its first SAN).
    Tls {
        ca: PathBuf,
        server_name: String,
    },
    /// `--client-ca`: the harness has no client certificate.
    Mtls,
}

impl Greeter {
    /// Starts a greeter named `name` on an ephemeral port of 127.0.0.1, over h2c.
    pub fn spawn(name: &str) -> Self {
        Self::spawn_with(name, "127.0.0.1:0".parse().expect("literal address"), &[])
    }

    /// Starts a greeter on `listen` (port 0: an ephemeral one) with extra `greeter` flags
    /// (`--tls-dir DIR`, `--client-ca FILE`, `--not-serving`).
    pub fn spawn_with(name: &str, listen: SocketAddr, flags: &[&str]) -> Self {
        let reach = reach(flags);
        let mut child = Command::new(crate::gateway::workspace_bin("greeter"))
            .args(["--listen", &listen.to_string(), "--name", name])
            .args(flags)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn greeter");
        let stdout = child.stdout.take().expect("greeter stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read greeter's first line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("greeter did not start: {line:?}"));
        Self {
            name: name.to_owned(),
            addr,
            child,
            reach,
        }
    }

    /// A client connected to this greeter directly (h2c, or TLS trusting its cert dir's
    /// `ca.crt`); panics for one started with `--client-ca` (use [`GreeterClient::mtls`]).
    pub async fn client(&self) -> GreeterClient {
        let client = Self::probe(self.name.clone(), self.addr, self.reach.clone()).await;
        client.unwrap_or_else(|e| panic!("connect to greeter {}: {e}", self.name))
    }

    /// `(calls, cancelled)` as this greeter counts them (asked of it directly, on a
    /// thread of its own, so this works in and out of an async test).
    pub fn stats(&self) -> (u64, u64) {
        let reach = self.reach.clone();
        let (name, addr) = (self.name.clone(), self.addr);
        let asked = std::thread::spawn(move || -> Result<(u64, u64), String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async move {
                let probe = Greeter::probe(name, addr, reach);
                let mut client = probe.await?;
                let stats = client.stats().await.map_err(|s| s.to_string())?;
                Ok((stats.calls, stats.cancelled))
            })
        })
        .join();
        match asked {
            Ok(Ok(stats)) => stats,
            Ok(Err(e)) => panic!("stats of greeter {}: {e}", self.name),
            Err(_) => panic!("stats of greeter {}: the thread asking panicked", self.name),
        }
    }

    async fn probe(name: String, addr: SocketAddr, reach: Reach) -> Result<GreeterClient, String> {
        match reach {
            Reach::H2c => GreeterClient::h2c(addr).await,
            Reach::Tls { ca, server_name } => GreeterClient::tls(addr, &ca, &server_name).await,
            Reach::Mtls => Err(format!(
                "greeter {name} wants a client certificate: ask GreeterClient::mtls(..).stats()"
            )),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM (with `kill`), then waits up to 30 s for the process to exit
    /// (it finishes the calls in flight first): its exit status.
    pub fn graceful_stop(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM greeter {} failed", self.name);
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait greeter") {
                return status;
            }
            assert!(
                start.elapsed() < STOP_DEADLINE,
                "greeter {} still running {STOP_DEADLINE:?} after SIGTERM",
                self.name
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL: gone at once, its connections reset.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Greeter {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How to reach a greeter started with `flags`.
fn reach(flags: &[&str]) -> Reach {
    if flags.contains(&"--client-ca") {
        return Reach::Mtls;
    }
    let Some(dir) = flags
        .iter()
        .position(|f| *f == "--tls-dir")
        .and_then(|i| flags.get(i + 1))
    else {
        return Reach::H2c;
    };
    let dir = Path::new(dir);
    Reach::Tls {
        ca: dir.join("ca.crt"),
        server_name: first_san(&dir.join("tls.crt")),
    }
}

/// The first DNS name (else IP address) among the subject alternative names of the
/// certificate in the PEM file `crt`.
fn first_san(crt: &Path) -> String {
    use x509_parser::extensions::GeneralName;
    let pem = std::fs::read(crt).unwrap_or_else(|e| panic!("read {}: {e}", crt.display()));
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).expect("a PEM certificate");
    let cert = pem.parse_x509().expect("an X.509 certificate");
    let names = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|ext| ext.value.general_names.clone())
        .unwrap_or_default();
    let dns = names.iter().find_map(|n| match n {
        GeneralName::DNSName(d) => Some(d.to_string()),
        _ => None,
    });
    let ip = names.iter().find_map(|n| match n {
        GeneralName::IPAddress(&[a, b, c, d]) => {
            Some(std::net::Ipv4Addr::new(a, b, c, d).to_string())
        }
        _ => None,
    });
    dns.or(ip)
        .unwrap_or_else(|| panic!("{} has no DNS or IPv4 SAN", crt.display()))
}

/// A gateway (with `[admin]`) serving gRPC over TLS (listener `https`, a certificate for `localhost` from
/// `certs`' CA) in front of the upstream `greeter` with the TOML lines `upstream`
/// (`servers = [...]`, `protocol = ...`), on a route with the lines `route`.
pub fn grpc_gateway(certs: &crate::Certs, upstream: &str, route: &str) -> crate::Gateway {
    let tls = certs.server("front", &["localhost"]);
    crate::Gateway::start(&format!(
        "{}\n[admin]\nlisten = \"127.0.0.1:{{{{port:admin}}}}\"\n\n[upstream.greeter]\n{upstream}\n\n[[route]]\npath_prefix = \"/\"\nupstream = \"greeter\"\n{route}\n",
        crate::https_listener(&tls)
    ))
}

/// The TOML of `servers = [...]` for `greeters`.
pub fn servers(greeters: &[&Greeter]) -> String {
    let list: Vec<String> = greeters.iter().map(|g| format!("\"{}\"", g.addr)).collect();
    format!("servers = [{}]", list.join(", "))
}

/// [`grpc_gateway`] in front of `greeters` on h2c.
pub fn h2c_gateway(certs: &crate::Certs, greeters: &[&Greeter], route: &str) -> crate::Gateway {
    grpc_gateway(
        certs,
        &format!("{}\nprotocol = \"h2c\"", servers(greeters)),
        route,
    )
}
