//! `reload-bench`: how long a config change takes to serve, and what it costs clients,
//! for the gateway (ConfigMap-style `..data` swap, picked up by itself) and for nginx
//! (`nginx -s reload` after rewriting its config), side by side on loopback.
//!
//! Each round moves `/` between two replica sets while 32 keep-alive clients send
//! requests; a probe on its own keep-alive connection times the change from the swap
//! (gateway) or the reload command (nginx) to the first response from the new set.
//! Run it with `e2e/bench/reload.sh`, which installs nginx and builds in release mode.

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use e2e::{Certs, Client, Gateway, Hello, Load, Ports, Proto, Volume};

const ROUNDS: usize = 50;
const CLIENTS: usize = 32;
const DEADLINE: Duration = Duration::from_secs(10);

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    let certs = Certs::new();
    let tls = certs.server("tls", &["localhost"]);
    let sets = [
        [Hello::spawn("a1"), Hello::spawn("a2")],
        [Hello::spawn("b1"), Hello::spawn("b2")],
    ];
    let client = Client::new(&certs.ca());
    let work = tempfile::tempdir().expect("tempdir");

    let gateway = bench_gateway(&client, &tls, &sets, work.path()).await;
    let nginx = match bench_nginx(&client, &tls, &sets, work.path()).await {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("nginx skipped: {e}");
            None
        }
    };

    println!("\nconfig change to first response from the new upstream, {ROUNDS} changes, {CLIENTS} keep-alive clients loading");
    println!("| proxy | how | p50 ms | p99 ms | max ms | failed requests | requests |");
    println!("|---|---|---|---|---|---|---|");
    gateway.print("gateway", "`..data` swap, picked up by the watcher");
    if let Some(n) = &nginx {
        n.print("nginx", "`nginx -s reload`");
    }
    ExitCode::SUCCESS
}

struct Result {
    latencies: Vec<Duration>,
    failed: usize,
    ok: u64,
    sample_failure: Option<String>,
}

impl Result {
    fn print(&self, name: &str, how: &str) {
        let mut l = self.latencies.clone();
        l.sort();
        let pct = |p: f64| {
            let i = ((l.len() as f64 * p).ceil() as usize).clamp(1, l.len()) - 1;
            l[i].as_secs_f64() * 1000.0
        };
        let max = l.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0);
        println!(
            "| {name} | {how} | {:.1} | {:.1} | {max:.1} | {} | {} |",
            pct(0.50),
            pct(0.99),
            self.failed,
            self.ok + self.failed as u64
        );
        if let Some(f) = &self.sample_failure {
            println!("|  | e.g. | {f} | | | | |");
        }
    }
}

/// Which set (`a` or `b`) answers on `conn`, reconnecting when the proxy closed it.
async fn probe_until(
    client: &Client,
    addr: std::net::SocketAddr,
    set: char,
    since: Instant,
) -> Duration {
    let mut conn = None;
    loop {
        assert!(since.elapsed() < DEADLINE, "the change never served");
        if conn.is_none() {
            conn = client
                .connect(addr, Some("localhost"), Proto::H1)
                .await
                .ok();
        }
        let Some(c) = conn.as_mut() else { continue };
        match c.get("/").await {
            Ok(r) if r.header("x-hello-instance").starts_with(set) => return since.elapsed(),
            Ok(_) => {}
            Err(_) => conn = None,
        }
    }
}

fn upstreams(sets: &[[Hello; 2]; 2]) -> [String; 2] {
    sets.each_ref().map(|s| {
        s.iter()
            .map(|h| format!("\"{}\"", h.addr))
            .collect::<Vec<_>>()
            .join(", ")
    })
}

async fn bench_gateway(client: &Client, tls: &Path, sets: &[[Hello; 2]; 2], work: &Path) -> Result {
    let [a, b] = upstreams(sets);
    let mut ports = Ports::new();
    let config = |ports: &mut Ports, target: &str, round: usize| {
        ports.render(&format!(
            "# round {round}\n[admin]\nlisten = \"127.0.0.1:{{{{port:admin}}}}\"\n[[listener]]\nname = \"https\"\nlisten = \"127.0.0.1:{{{{port:https}}}}\"\ntls = {{ certs = [\"{}\"] }}\n[upstream.a]\nservers = [{a}]\n[upstream.b]\nservers = [{b}]\n[[route]]\nupstream = \"{target}\"\n",
            tls.display()
        ))
    };
    let text = config(&mut ports, "a", 0);
    let mut volume = Volume::create(
        &work.join("gateway-config"),
        &[("gateway.toml", text.as_bytes())],
    );
    let gw = Gateway::run(
        &volume.dir().join("gateway.toml"),
        &ports,
        &[("RUST_LOG", "warn")],
    );
    let addr = gw.addr("https");
    let load = Load::start(client, addr, "localhost", CLIENTS, Proto::H1);
    load.wait_for_more(1000, DEADLINE).await;
    let mut latencies = Vec::new();
    for round in 1..=ROUNDS {
        let target = if round % 2 == 1 { 'b' } else { 'a' };
        let text = config(&mut ports, &target.to_string(), round);
        let swapped = volume.update(&[("gateway.toml", text.as_bytes())]);
        latencies.push(probe_until(client, addr, target, swapped).await);
        load.wait_for_more(200, DEADLINE).await;
    }
    let report = load.stop().await;
    Result {
        latencies,
        failed: report.failures.len(),
        ok: report.ok,
        sample_failure: report.failures.first().cloned(),
    }
}

async fn bench_nginx(
    client: &Client,
    tls: &Path,
    sets: &[[Hello; 2]; 2],
    work: &Path,
) -> std::result::Result<Result, String> {
    let [a, b] = upstreams(sets).map(|s| {
        s.replace('"', "")
            .split(", ")
            .map(|s| format!("server {s};"))
            .collect::<Vec<_>>()
            .join(" ")
    });
    let prefix = work.join("nginx");
    std::fs::create_dir_all(prefix.join("logs")).map_err(|e| e.to_string())?;
    let mut ports = Ports::new();
    let port = {
        ports.render("{{port:https}}");
        ports.get("https").ok_or("no port")?
    };
    let conf_path = prefix.join("nginx.conf");
    let write_conf = |target: &str| {
        // One worker, TLS and HTTP/2 with the same certificate, keep-alive upstream pools.
        let conf = format!(
            "worker_processes 1;\npid {pid};\nerror_log {err} warn;\nevents {{ worker_connections 4096; }}\nhttp {{\n  access_log off;\n  upstream a {{ {a} keepalive 64; }}\n  upstream b {{ {b} keepalive 64; }}\n  server {{\n    listen 127.0.0.1:{port} ssl http2;\n    ssl_certificate {crt};\n    ssl_certificate_key {key};\n    ssl_protocols TLSv1.2 TLSv1.3;\n    location / {{ proxy_pass http://{target}; proxy_http_version 1.1; proxy_set_header Connection \"\"; }}\n  }}\n}}\n",
            pid = prefix.join("nginx.pid").display(),
            err = prefix.join("logs/error.log").display(),
            crt = tls.join("tls.crt").display(),
            key = tls.join("tls.key").display(),
        );
        std::fs::write(&conf_path, conf)
    };
    write_conf("a").map_err(|e| e.to_string())?;
    let nginx = |args: &[&str]| {
        Command::new("nginx")
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&conf_path)
            .args(args)
            .status()
            .map_err(|e| format!("nginx: {e}"))
            .and_then(|s| {
                if s.success() {
                    Ok(())
                } else {
                    Err(format!("nginx {args:?}: {s}"))
                }
            })
    };
    nginx(&[])?;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let stop = Stop(prefix.join("nginx.pid"));
    let start = Instant::now();
    while client
        .connect(addr, Some("localhost"), Proto::H1)
        .await
        .is_err()
    {
        if start.elapsed() > DEADLINE {
            return Err("nginx did not start".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let load = Load::start(client, addr, "localhost", CLIENTS, Proto::H1);
    load.wait_for_more(1000, DEADLINE).await;
    let mut latencies = Vec::new();
    for round in 1..=ROUNDS {
        let target = if round % 2 == 1 { 'b' } else { 'a' };
        write_conf(&target.to_string()).map_err(|e| e.to_string())?;
        let since = Instant::now();
        nginx(&["-s", "reload"])?;
        latencies.push(probe_until(client, addr, target, since).await);
        load.wait_for_more(200, DEADLINE).await;
    }
    let report = load.stop().await;
    drop(stop);
    Ok(Result {
        latencies,
        failed: report.failures.len(),
        ok: report.ok,
        sample_failure: report.failures.first().cloned(),
    })
}

/// Stops the nginx whose master pid is in the file, when dropped.
struct Stop(std::path::PathBuf);

impl Drop for Stop {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.0) {
            let _ = Command::new("kill").arg("-QUIT").arg(pid.trim()).status();
        }
    }
}
