//! gateway: a TLS-terminating reverse-proxy frontend for Kubernetes, built on pingora.
//!
//! `main.rs` only parses the command line; everything it runs lives here so tests
//! can build the same pieces.

pub mod admin;
pub mod app;
pub mod auth;
pub mod cidr;
pub mod config;
mod deadline;
pub mod http1;
pub mod ip_text;
pub mod lifecycle;
pub mod listener;
pub mod proxy;
pub mod ratelimit;
pub mod reload;
pub mod routes;
pub mod state;
pub mod telemetry;
pub mod tls;
pub mod upstream;

/// `error` and its chain of sources as one line: `outer: inner: innermost`.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}
