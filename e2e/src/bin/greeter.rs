//! `greeter`: a gRPC backend (tonic) serving `greeter.v1.Greeter` (see `e2e::grpc`) and
//! the standard `grpc.health.v1.Health`, for the gateway's gRPC, HTTP/2 and TLS tests.
//!
//! `greeter --listen ADDR [--name NAME] [--tls-dir DIR [--client-ca FILE]] [--not-serving]`.
//! Prints `listening on ADDR` (the bound address, so `:0` works) once ready. Without
//! `--tls-dir` it speaks h2c (HTTP/2 with prior knowledge); with it, TLS with
//! `DIR/tls.crt` and `DIR/tls.key`, ALPN h2; `--client-ca FILE` then requires a client
//! certificate verified against the CA certificates in FILE. Health is SERVING for ""
//! and `greeter.v1.Greeter` (`--not-serving`: NOT_SERVING). Replies carry `server: NAME`
//! (default: the bound address). Messages of up to 32 MiB pass both ways. On SIGTERM or
//! SIGINT it stops accepting, sends GOAWAY, finishes the calls in flight and exits 0.

// A crate root looks for modules beside itself: this one sits in greeter/.
#[path = "greeter/service.rs"]
mod service;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic_health::ServingStatus;

fn usage() -> ExitCode {
    eprintln!(
        "usage: greeter --listen ADDR [--name NAME] [--tls-dir DIR [--client-ca FILE]] [--not-serving]"
    );
    ExitCode::from(64)
}

/// What the command line asked for.
struct Options {
    listen: SocketAddr,
    name: Option<String>,
    tls_dir: Option<PathBuf>,
    client_ca: Option<PathBuf>,
    serving: bool,
}

fn options() -> Option<Options> {
    let mut listen = None;
    let mut name = None;
    let mut tls_dir = None;
    let mut client_ca = None;
    let mut serving = true;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--not-serving" {
            serving = false;
            continue;
        }
        match (arg.as_str(), args.next()) {
            ("--listen", Some(v)) => listen = Some(v.parse().ok()?),
            ("--name", Some(v)) => name = Some(v),
            ("--tls-dir", Some(v)) => tls_dir = Some(PathBuf::from(v)),
            ("--client-ca", Some(v)) => client_ca = Some(PathBuf::from(v)),
            _ => return None,
        }
    }
    if client_ca.is_some() && tls_dir.is_none() {
        return None;
    }
    Some(Options {
        listen: listen?,
        name,
        tls_dir,
        client_ca,
        serving,
    })
}

fn main() -> ExitCode {
    let Some(options) = options() else {
        return usage();
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("greeter: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("greeter: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The TLS settings `--tls-dir` and `--client-ca` ask for.
fn tls_config(options: &Options) -> Result<Option<ServerTlsConfig>, String> {
    let Some(dir) = &options.tls_dir else {
        return Ok(None);
    };
    let read =
        |path: PathBuf| std::fs::read(&path).map_err(|e| format!("read {}: {e}", path.display()));
    let identity = Identity::from_pem(read(dir.join("tls.crt"))?, read(dir.join("tls.key"))?);
    let mut config = ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &options.client_ca {
        config = config.client_ca_root(Certificate::from_pem(read(ca.clone())?));
    }
    Ok(Some(config))
}

async fn serve(options: Options) -> Result<(), String> {
    let tls = tls_config(&options)?;
    // Before the address is printed, so that a SIGTERM right after it is not missed.
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM: {e}"))?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT: {e}"))?;
    let listener = TcpListener::bind(options.listen)
        .await
        .map_err(|e| format!("bind {}: {e}", options.listen))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let name = options.name.unwrap_or_else(|| bound.to_string());

    let (health, health_service) = tonic_health::server::health_reporter();
    let status = if options.serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    health.set_service_status("", status).await;
    health.set_service_status(e2e::grpc::SERVICE, status).await;

    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).map_err(e2e::grpc::chain)?;
    }
    let router = builder
        .add_service(health_service)
        .add_service(service::Greeter::new(name));
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));

    let mut stdout = tokio::io::stdout();
    let line = format!("listening on {bound}\n");
    stdout
        .write_all(line.as_bytes())
        .await
        .map_err(|e| format!("stdout: {e}"))?;
    stdout.flush().await.map_err(|e| format!("stdout: {e}"))?;

    let stop = async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    };
    router
        .serve_with_incoming_shutdown(incoming, stop)
        .await
        .map_err(e2e::grpc::chain)
}
