//! Log records a remote peer alone can cause go out at DEBUG, never WARN or ERROR, so no
//! client can fill the log at will: rustls's warnings (a refused renegotiation, a message
//! out of order, an alert received), h2's (a PING ack for a ping never sent, a reset
//! flood before its GOAWAY) and pingora's reports of a client's failure.
//!
//! rustls and pingora log through `log`: [`LogBridge`] forwards their records to
//! `tracing`. h2 logs through `tracing`: [`PeerEvents`] drops its warnings and logs each
//! again at DEBUG. Either way the DEBUG copy keeps its target, so `RUST_LOG=h2=debug` or
//! `rustls=debug` shows it.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Forwards `log` records to `tracing`, those a peer caused at DEBUG.
pub(super) struct LogBridge;

/// Beginnings of pingora messages (ERROR or WARN) that describe a client's doing, not ours.
const PINGORA_CLIENT_CAUSED: &[&str] = &[
    "Downstream handshake error",
    "Downstream handshake timeout",
    "H2 handshake error",
    "HTTP server fails to read from downstream",
    // A request head that broke off or missed `header_timeout` (counted in metrics).
    "Fail to proxy: Downstream",
    // The client reset the connection before the TLS close_notify went out (backends
    // are plain HTTP: only client connections have TLS).
    "TLS shutdown failed",
    // An HTTP/2 client that sent too many malformed requests on one connection.
    "tearing down downstream h2 connection",
];

/// Whether `target` is crate `name` or one of its modules.
fn in_crate(target: &str, name: &str) -> bool {
    target
        .strip_prefix(name)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
}

/// Whether a `log` record describes what a peer did rather than a fault of the gateway's.
fn peer_caused(record: &log::Record<'_>) -> bool {
    match record.level() {
        // rustls warns only about what its peer sent or was answered. Its ERRORs stay:
        // the one it has ends a connection whose keys are exhausted.
        log::Level::Warn if in_crate(record.target(), "rustls") => true,
        log::Level::Error | log::Level::Warn => {
            let starts = |text: &str| PINGORA_CLIENT_CAUSED.iter().any(|p| text.starts_with(p));
            record
                .args()
                .as_str()
                .map_or_else(|| starts(&record.args().to_string()), starts)
        }
        _ => false,
    }
}

impl log::Log for LogBridge {
    fn enabled(&self, _metadata: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        if peer_caused(record) {
            let _ = tracing_log::format_trace(&at_debug(record));
        } else {
            let _ = tracing_log::format_trace(record);
        }
    }

    fn flush(&self) {}
}

/// `record` at DEBUG.
fn at_debug<'a>(record: &log::Record<'a>) -> log::Record<'a> {
    log::Record::builder()
        .level(log::Level::Debug)
        .target(record.target())
        .module_path(record.module_path())
        .file(record.file())
        .line(record.line())
        .args(*record.args())
        .build()
}

/// A layer that stops h2's WARN and ERROR events, logging each again at DEBUG (h2 warns
/// only about its peer). The copy is a `log` record through [`tracing_log`], as the
/// bridged crates' are: the filter decides on it at DEBUG, and it keeps its span.
pub(super) struct PeerEvents;

impl<S: Subscriber> Layer<S> for PeerEvents {
    fn event_enabled(&self, event: &Event<'_>, _ctx: Context<'_, S>) -> bool {
        let meta = event.metadata();
        if !matches!(*meta.level(), Level::WARN | Level::ERROR) || !in_crate(meta.target(), "h2") {
            return true;
        }
        let mut text = String::new();
        event.record(&mut Text(&mut text));
        let _ = tracing_log::format_trace(
            &log::Record::builder()
                .level(log::Level::Debug)
                .target(meta.target())
                .module_path(meta.module_path())
                .file(meta.file())
                .line(meta.line())
                .args(format_args!("{text}"))
                .build(),
        );
        false
    }
}

/// An event's fields as one line of text: the message, then `name=value` pairs.
struct Text<'a>(&'a mut String);

impl Visit for Text<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let sep = if self.0.is_empty() { "" } else { " " };
        let _ = if field.name() == "message" {
            write!(self.0, "{sep}{value:?}")
        } else {
            write!(self.0, "{sep}{}={value:?}", field.name())
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(level: log::Level, target: &'static str, args: fmt::Arguments<'static>) -> bool {
        peer_caused(
            &log::Record::builder()
                .level(level)
                .target(target)
                .args(args)
                .build(),
        )
    }

    #[test]
    fn rustls_warnings_and_pingora_client_failures_are_the_peers() {
        use log::Level::{Error, Info, Warn};
        let alert = format_args!("Sending warning alert NoRenegotiation");
        assert!(record(Warn, "rustls::common_state", alert));
        let unexpected =
            format_args!("Received a ApplicationData message while expecting [Handshake]");
        assert!(record(Warn, "rustls::check", unexpected));
        let exhausted = format_args!("traffic keys exhausted, closing connection");
        assert!(!record(Error, "rustls::common_state", exhausted));
        let shutdown = format_args!("TLS shutdown failed, connection reset");
        assert!(record(Warn, "pingora_core::protocols::tls", shutdown));
        let handshake = format_args!("Downstream handshake error");
        assert!(record(Error, "pingora_core::listeners", handshake));
        let other = format_args!("Response header is already sent, cannot send again");
        assert!(!record(Warn, "pingora_core::protocols::http", other));
        assert!(!record(Warn, "rustlsx", alert));
        assert!(!record(Info, "pingora_core::listeners", handshake));
    }

    #[test]
    fn crates_are_matched_by_whole_path_segments() {
        assert!(in_crate("h2", "h2"));
        assert!(in_crate("h2::proto::ping_pong", "h2"));
        assert!(!in_crate("h2c", "h2"));
        assert!(!in_crate("gateway::h2", "h2"));
    }
}
