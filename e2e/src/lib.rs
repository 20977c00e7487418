//! End-to-end harness: real `gateway` and `hello` processes on 127.0.0.1 with
//! ephemeral ports, a TLS client, and certificate helpers.
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

mod certs;
mod client;
mod dns;
mod gateway;
mod hello;
mod kubelet;
mod load;

use std::time::{Duration, Instant};

pub use certs::{dev_certs as certs_for, Certs, KeyFormat, KeyType};
pub use client::{Client, Proto, Response};
pub use dns::DnsServer;
pub use gateway::{gateway_bin, Gateway, Outcome, Ports};
pub use hello::Hello;
pub use kubelet::Volume;
pub use load::{Load, LoadReport};

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
