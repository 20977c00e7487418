//! Telemetry: logs (`tracing` to stderr, filtered RUST_LOG-style, pingora's and rustls's
//! `log` records bridged in, what a peer alone causes at DEBUG) and Prometheus metrics
//! (`metrics`).

pub mod access;
pub mod access_format;
mod access_template;
mod connections;
mod metrics;
mod peer;
mod requests;
pub mod traces;

pub use connections::{ActiveConnection, ConnectionRegistry, ConnectionStats, Dropped};
pub use metrics::{render_upstreams, Metrics};
pub use requests::{RequestRegistry, RequestSeries};

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::EnvFilter;

/// The filter used when `RUST_LOG` is not set: our INFO (access log included), pingora's WARN.
pub const DEFAULT_FILTER: &str = "info,pingora_core=warn";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, event fields at the top level (for log pipelines).
    Json,
}

/// Installs the global subscriber and the bridge for `log` records (pingora's, rustls's).
/// `RUST_LOG` overrides [`DEFAULT_FILTER`]; an invalid `RUST_LOG` falls back to it.
pub fn init(format: LogFormat) {
    access::set_format(format);
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let max_level = filter.max_level_hint();
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(peer::PeerEvents);
    let installed = match format {
        LogFormat::Text => {
            let fmt = tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal());
            tracing::subscriber::set_global_default(registry.with(fmt))
        }
        LogFormat::Json => {
            let fmt = tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_writer(std::io::stderr);
            tracing::subscriber::set_global_default(registry.with(fmt))
        }
    };
    if installed.is_err() {
        return; // already initialised (tests)
    }
    if log::set_logger(&peer::LogBridge).is_ok() {
        log::set_max_level(match max_level {
            Some(tracing::level_filters::LevelFilter::OFF) => log::LevelFilter::Off,
            Some(level) => match level.into_level() {
                Some(tracing::Level::ERROR) => log::LevelFilter::Error,
                Some(tracing::Level::WARN) => log::LevelFilter::Warn,
                Some(tracing::Level::INFO) => log::LevelFilter::Info,
                Some(tracing::Level::DEBUG) => log::LevelFilter::Debug,
                _ => log::LevelFilter::Trace,
            },
            None => log::LevelFilter::Trace,
        });
    }
}

/// Writes out buffered access lines every [`access::FLUSH_EVERY`] (and the rest when the
/// process ends: see [`crate::app::App::run`] and the drain).
pub struct AccessLogFlush;

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for AccessLogFlush {
    async fn start(&self, _shutdown: pingora::server::ShutdownWatch) {
        // Runs until the process ends: requests drain after the shutdown signal.
        let mut tick = tokio::time::interval(access::FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            access::flush();
        }
    }
}
