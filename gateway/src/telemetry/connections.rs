//! Per-listener connection metrics: TLS handshakes by version and open TLS connections.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// TLS versions counted by name; anything else counts as "other".
const VERSIONS: [&str; 3] = ["TLSv1.2", "TLSv1.3", "other"];

/// Connection counters of one listener.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    handshakes: [AtomicU64; 3],
    active: AtomicI64,
}

impl ConnectionStats {
    /// Counts a completed handshake of `version` (e.g. "TLSv1.3") and returns a guard
    /// that counts the connection as active until it is dropped with the connection.
    pub fn handshake(self: &Arc<Self>, version: Option<&str>) -> ActiveConnection {
        // rustls names versions like its enum ("TLSv1_3"); labels use "TLSv1.3".
        let i = match version {
            Some("TLSv1_2" | "TLSv1.2") => 0,
            Some("TLSv1_3" | "TLSv1.3") => 1,
            _ => 2,
        };
        self.handshakes[i].fetch_add(1, Ordering::Relaxed);
        self.active.fetch_add(1, Ordering::Relaxed);
        ActiveConnection(self.clone())
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

    /// Appends `gateway_connections_active` and `gateway_tls_handshakes_total`.
    pub fn render(&self, out: &mut String) {
        let all = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        out.push_str("# HELP gateway_connections_active Open TLS connections, by listener.\n");
        out.push_str("# TYPE gateway_connections_active gauge\n");
        for (name, s) in all.iter() {
            out.push_str("gateway_connections_active{listener=\"");
            super::metrics::escape_label(name, out);
            let _ = writeln!(out, "\"}} {}", s.active.load(Ordering::Relaxed));
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
