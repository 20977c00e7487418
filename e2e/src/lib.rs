//! End-to-end harness: real `gateway`, `hello` and `greeter` (gRPC) processes on
//! 127.0.0.1 with ephemeral ports, TLS and gRPC clients, and certificate helpers.
//!
//! ```text
//! let a = Hello::spawn("a");
//! let certs = Certs::new();
//! let tls = certs.server("tls", &["localhost"]);
//! let gw = Gateway::start(&format!(r#"
//!     [[listener]]
//!     name = "https"
//!     listen = "127.0.0.1:{{port:https}}"
//!     tls = {{ certs = ["{}"] }}
//!     ..."#, tls.display()));
//! let resp = Client::new(&certs.ca()).get(gw.addr("https"), "localhost", "/").await;
//! ```

mod authsvc;
mod blackhole;
mod certs;
mod client;
mod curl;
mod dns;
mod fake_kube;
mod gateway;
mod greeter;
pub mod grpc;
mod grpc_calls;
mod haproxy;
mod hello;
pub mod jwt;
mod kubelet;
mod load;
pub mod otlp;
mod prometheus;
mod raw;
mod redis;
mod ws;

use std::time::{Duration, Instant};

pub use authsvc::AuthService;
pub use blackhole::Blackhole;
pub use certs::{dev_certs as certs_for, openssl, Certs, KeyFormat, KeyType};
pub use client::{h2_connect, request_to, tls_config, Client, Proto, Response};
pub use curl::{curl, curl_command, curled, Curled};
pub use dns::DnsServer;
pub use fake_kube::FakeKubeApi;
pub use gateway::{gateway_bin, python3, with_mounts, wrapped, Gateway, Outcome, Ports};
pub use greeter::{grpc_gateway, h2c_gateway, servers, Greeter};
pub use grpc::GreeterClient;
pub use grpc_calls::{every_call_kind, grpcio};
pub use haproxy::Haproxy;
pub use hello::Hello;
pub use kubelet::Volume;
pub use load::{Load, LoadReport};
pub use otlp::{OtlpReceiver, ReceivedSpan};
pub use prometheus::{promtool, selectors, Prometheus};
pub use raw::{
    connect, exchange, read_reply, read_until_close, Reply, Transport, Wire, READ_TIMEOUT,
};
pub use redis::Redis;
pub use ws::{websocket, AsyncWire, WebSocket, WS_STEP};

/// A `[[listener]]` named `https` on `{{port:https}}` serving the certificates in
/// `cert_dir` (a config template's first table).
pub fn https_listener(cert_dir: &std::path::Path) -> String {
    format!(
        "[[listener]]\nname = \"https\"\nlisten = \"127.0.0.1:{{{{port:https}}}}\"\ntls = {{ certs = [\"{}\"] }}\n",
        cert_dir.display()
    )
}

/// A config template: one HTTPS listener (`{{port:https}}`) with the certificates in
/// `cert_dirs`, in front of one upstream `hello` of `servers`, routed by `route`
/// (the body of a `[[route]]` table without its `upstream` line, "" for all requests).
pub fn https_config(
    cert_dirs: &[&std::path::Path],
    servers: &[std::net::SocketAddr],
    route: &str,
) -> String {
    let quoted = |items: Vec<String>| {
        items
            .iter()
            .map(|i| format!("\"{i}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "[[listener]]\nname = \"https\"\nlisten = \"127.0.0.1:{{{{port:https}}}}\"\ntls = {{ certs = [{}] }}\n\n[upstream.hello]\nservers = [{}]\n\n[[route]]\n{route}\nupstream = \"hello\"\n",
        quoted(cert_dirs.iter().map(|d| d.display().to_string()).collect()),
        quoted(servers.iter().map(|a| a.to_string()).collect()),
    )
}

/// A config template with a plain listener `web` and a TLS listener `https` (certificates
/// in `tls`), each followed by its `web_extra` / `https_extra` lines, an admin listener,
/// and one upstream `hello` of `hello` routed at `/` with a 1 KiB body limit, then `routes`.
pub fn web_and_https_config(
    tls: &std::path::Path,
    hello: std::net::SocketAddr,
    web_extra: &str,
    https_extra: &str,
    routes: &str,
) -> String {
    format!(
        r#"
[admin]
listen = "127.0.0.1:{{{{port:admin}}}}"

[[listener]]
name = "web"
listen = "127.0.0.1:{{{{port:web}}}}"
{web_extra}

[[listener]]
name = "https"
listen = "127.0.0.1:{{{{port:https}}}}"
tls = {{ certs = ["{tls}"] }}
{https_extra}

[upstream.hello]
servers = ["{hello}"]

[[route]]
path_prefix = "/"
upstream = "hello"
max_body_size = "1KiB"
{routes}"#,
        tls = tls.display(),
    )
}

/// One plain-HTTP/1.1 GET of `path` on a new connection to 127.0.0.1:`port`, with
/// `Host: host` and extra `headers` (each ending in CRLF): the status (0 when the
/// connection failed) and the whole response text.
pub fn raw_get(port: u16, host: &str, path: &str, headers: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, out)
}

/// [`raw_get`] with `Host: hello`: the status and the answering replica's
/// `x-hello-instance`.
pub fn http_get(port: u16, path: &str, headers: &str) -> (u16, String) {
    let (status, out) = raw_get(port, "hello", path, headers);
    let instance = out
        .lines()
        .find_map(|l| l.strip_prefix("x-hello-instance: "))
        .unwrap_or("")
        .to_owned();
    (status, instance)
}

/// GET `path` from an admin listener on `port`: the status and the body.
pub fn admin_get(port: u16, path: &str) -> (u16, String) {
    let (status, out) = raw_get(port, "admin", path, "");
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}

/// How many of `n` GETs on `port` each replica answered; panics on a non-200.
pub fn spread(port: u16, n: usize) -> std::collections::HashMap<String, usize> {
    let mut seen = std::collections::HashMap::new();
    for _ in 0..n {
        let (status, instance) = http_get(port, "/", "");
        assert_eq!(status, 200, "{instance}");
        *seen.entry(instance).or_default() += 1;
    }
    seen
}

/// Polls `condition` every 20 ms until it returns `Some`, or panics with `what`
/// after `deadline`.
pub fn wait_until<T>(
    deadline: Duration,
    what: &str,
    mut condition: impl FnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = condition() {
            return v;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
