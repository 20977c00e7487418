//! Per-listener connection metrics: open connections (held under the listener's limit),
//! connections the gateway dropped and why, and TLS handshakes by version.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// TLS versions counted by name; anything else counts as "other".
const VERSIONS: [&str; 3] = ["TLSv1.2", "TLSv1.3", "other"];

/// Why the gateway closed a connection on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// The listener already had `max_connections` open.
    MaxConnections,
    TlsHandshakeTimeout,
    TlsHandshakeFailed,
    /// A request head did not arrive within `header_timeout`.
    HeaderTimeout,
    /// The client's address is not admitted by the listener's `allow`/`deny`.
    Denied,
    /// A peer outside `proxy_protocol.trusted` on a PROXY protocol listener.
    ProxyProtocolUntrusted,
    /// A PROXY protocol header missing or malformed.
    ProxyProtocolInvalid,
    /// No whole PROXY protocol header within `header_timeout`.
    ProxyProtocolTimeout,
}

impl Dropped {
    const ALL: [Dropped; 8] = [
        Dropped::MaxConnections,
        Dropped::TlsHandshakeTimeout,
        Dropped::TlsHandshakeFailed,
        Dropped::HeaderTimeout,
        Dropped::Denied,
        Dropped::ProxyProtocolUntrusted,
        Dropped::ProxyProtocolInvalid,
        Dropped::ProxyProtocolTimeout,
    ];

    fn label(self) -> &'static str {
        match self {
            Dropped::MaxConnections => "max_connections",
            Dropped::TlsHandshakeTimeout => "tls_handshake_timeout",
            Dropped::TlsHandshakeFailed => "tls_handshake_failed",
            Dropped::HeaderTimeout => "header_timeout",
            Dropped::Denied => "denied",
            Dropped::ProxyProtocolUntrusted => "proxy_protocol_untrusted",
            Dropped::ProxyProtocolInvalid => "proxy_protocol_invalid",
            Dropped::ProxyProtocolTimeout => "proxy_protocol_timeout",
        }
    }
}

/// Connection counters of one listener.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    handshakes: [AtomicU64; 3],
    active: AtomicU64,
    dropped: [AtomicU64; Dropped::ALL.len()],
}

impl ConnectionStats {
    /// Counts a new connection as open, unless `limit` are open already (then it is
    /// counted as dropped and `None` is returned). The guard counts it until dropped.
    pub fn open(self: &Arc<Self>, limit: u32) -> Option<ActiveConnection> {
        let admitted = self
            .active
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < u64::from(limit)).then_some(n + 1)
            })
            .is_ok();
        if admitted {
            Some(ActiveConnection(self.clone()))
        } else {
            self.dropped(Dropped::MaxConnections);
            None
        }
    }

    /// Counts a connection closed by the gateway for `reason`.
    pub fn dropped(&self, reason: Dropped) {
        let i = Dropped::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        self.dropped[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a completed handshake of `version` (e.g. "TLSv1.3").
    pub fn handshake(&self, version: Option<&str>) {
        // rustls names versions like its enum ("TLSv1_3"); labels use "TLSv1.3".
        let i = match version {
            Some("TLSv1_2" | "TLSv1.2") => 0,
            Some("TLSv1_3" | "TLSv1.3") => 1,
            _ => 2,
        };
        self.handshakes[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// One open connection; dropping it ends it.
#[derive(Debug)]
pub struct ActiveConnection(Arc<ConnectionStats>);

impl Drop for ActiveConnection {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Every listener's connection stats.
#[derive(Debug, Default)]
pub struct ConnectionRegistry {
    listeners: Mutex<Vec<(String, Arc<ConnectionStats>)>>,
}

impl ConnectionRegistry {
    /// The stats of `listener`, made on first use (at startup).
    pub fn listener(&self, listener: &str) -> Arc<ConnectionStats> {
        let mut all = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, s)) = all.iter().find(|(name, _)| name == listener) {
            return s.clone();
        }
        let stats = Arc::new(ConnectionStats::default());
        all.push((listener.to_owned(), stats.clone()));
        stats
    }

    /// Appends `gateway_connections_active`, `gateway_connections_dropped_total` and
    /// `gateway_tls_handshakes_total`.
    pub fn render(&self, out: &mut String) {
        let all = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        out.push_str("# HELP gateway_connections_active Open client connections, by listener.\n");
        out.push_str("# TYPE gateway_connections_active gauge\n");
        for (name, s) in all.iter() {
            out.push_str("gateway_connections_active{listener=\"");
            super::metrics::escape_label(name, out);
            let _ = writeln!(out, "\"}} {}", s.active.load(Ordering::Relaxed));
        }
        out.push_str("# HELP gateway_connections_dropped_total Client connections the gateway closed, by listener and reason.\n");
        out.push_str("# TYPE gateway_connections_dropped_total counter\n");
        for (name, s) in all.iter() {
            for (reason, n) in Dropped::ALL.iter().zip(&s.dropped) {
                out.push_str("gateway_connections_dropped_total{listener=\"");
                super::metrics::escape_label(name, out);
                let _ = writeln!(
                    out,
                    "\",reason=\"{}\"}} {}",
                    reason.label(),
                    n.load(Ordering::Relaxed)
                );
            }
        }
        out.push_str("# HELP gateway_tls_handshakes_total Completed TLS handshakes, by listener and version.\n");
        out.push_str("# TYPE gateway_tls_handshakes_total counter\n");
        for (name, s) in all.iter() {
            for (version, n) in VERSIONS.iter().zip(&s.handshakes) {
                out.push_str("gateway_tls_handshakes_total{listener=\"");
                super::metrics::escape_label(name, out);
                let _ = writeln!(
                    out,
                    "\",version=\"{version}\"}} {}",
                    n.load(Ordering::Relaxed)
                );
            }
        }
    }
}
