//! Prometheus metrics in the text exposition format, kept in atomics.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

/// The gateway's metrics. Writers only touch atomics; `/metrics` renders them.
#[derive(Debug, Default)]
pub struct Metrics {
    reloads_success: AtomicU64,
    reloads_failure: AtomicU64,
    last_reload_success: AtomicBool,
    last_reload_timestamp: AtomicI64,
    /// `(cert dir, notAfter)` of every certificate being served.
    cert_expiry: ArcSwap<Vec<(String, i64)>>,
    /// Request counts and latencies by listener, route and upstream.
    pub requests: super::RequestRegistry,
    /// TLS handshakes and open connections by listener.
    pub connections: super::ConnectionRegistry,
    /// When the process started, in seconds since the epoch.
    start_time: AtomicI64,
    /// The shared rate limits' link to Redis.
    pub rate_limits: Arc<crate::ratelimit::SharedStats>,
}

impl Metrics {
    /// Records the config loaded at startup: good, but not a reload.
    pub fn initial_load(&self, now: i64, cert_expiry: Vec<(String, i64)>) {
        let _ = self
            .start_time
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        self.last_reload_success.store(true, Ordering::Relaxed);
        self.last_reload_timestamp.store(now, Ordering::Relaxed);
        self.cert_expiry.store(cert_expiry.into());
    }

    /// Records a reload that was applied.
    pub fn reload_succeeded(&self, now: i64, cert_expiry: Vec<(String, i64)>) {
        self.reloads_success.fetch_add(1, Ordering::Relaxed);
        self.initial_load(now, cert_expiry);
    }

    /// Records a reload that was refused (the last good state keeps serving).
    pub fn reload_failed(&self) {
        self.reloads_failure.fetch_add(1, Ordering::Relaxed);
        self.last_reload_success.store(false, Ordering::Relaxed);
    }

    /// Appends every metric to `out` in the Prometheus text format; `in_flight` is the
    /// number of requests being processed (counted by the lifecycle, which drains them).
    pub fn render(&self, in_flight: usize, out: &mut String) {
        let success = self.reloads_success.load(Ordering::Relaxed);
        let failure = self.reloads_failure.load(Ordering::Relaxed);
        out.push_str(
            "# HELP gateway_config_reloads_total Config and certificate reloads, by result.\n",
        );
        out.push_str("# TYPE gateway_config_reloads_total counter\n");
        let _ = writeln!(
            out,
            "gateway_config_reloads_total{{result=\"success\"}} {success}"
        );
        let _ = writeln!(
            out,
            "gateway_config_reloads_total{{result=\"failure\"}} {failure}"
        );
        out.push_str("# HELP gateway_config_last_reload_success Whether the last load of config and certificates was applied (1) or refused (0).\n");
        out.push_str("# TYPE gateway_config_last_reload_success gauge\n");
        let last = u8::from(self.last_reload_success.load(Ordering::Relaxed));
        let _ = writeln!(out, "gateway_config_last_reload_success {last}");
        out.push_str("# HELP gateway_config_last_reload_timestamp_seconds When config and certificates were last applied, in seconds since the epoch.\n");
        out.push_str("# TYPE gateway_config_last_reload_timestamp_seconds gauge\n");
        let ts = self.last_reload_timestamp.load(Ordering::Relaxed);
        let _ = writeln!(out, "gateway_config_last_reload_timestamp_seconds {ts}");
        out.push_str("# HELP gateway_requests_in_flight Requests being processed.\n");
        out.push_str("# TYPE gateway_requests_in_flight gauge\n");
        let _ = writeln!(out, "gateway_requests_in_flight {in_flight}");
        out.push_str("# HELP gateway_tls_certificate_expiry_timestamp_seconds notAfter of each served certificate, in seconds since the epoch.\n");
        out.push_str("# TYPE gateway_tls_certificate_expiry_timestamp_seconds gauge\n");
        for (dir, not_after) in self.cert_expiry.load().iter() {
            out.push_str("gateway_tls_certificate_expiry_timestamp_seconds{cert=\"");
            escape_label(dir, out);
            let _ = writeln!(out, "\"}} {not_after}");
        }
        self.requests.render(out);
        self.connections.render(out);
        self.rate_limits.render(out);
        let (dropped, exported) = super::traces::counts();
        out.push_str("# HELP gateway_tracing_spans_dropped_total Spans not exported: the queue was full, or the collector did not take them in time.\n");
        out.push_str("# TYPE gateway_tracing_spans_dropped_total counter\n");
        let _ = writeln!(out, "gateway_tracing_spans_dropped_total {dropped}");
        out.push_str(
            "# HELP gateway_tracing_spans_exported_total Spans the OTLP collector took.\n",
        );
        out.push_str("# TYPE gateway_tracing_spans_exported_total counter\n");
        let _ = writeln!(out, "gateway_tracing_spans_exported_total {exported}");
        render_process(self.start_time.load(Ordering::Relaxed), out);
    }
}

/// Appends `process_*` metrics read from /proc (Linux).
fn render_process(start_time: i64, out: &mut String) {
    // utime and stime (fields 14 and 15) in clock ticks (USER_HZ: sysconf(_SC_CLK_TCK)).
    let hz = rustix::param::clock_ticks_per_second() as f64;
    let cpu = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            let after_name = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = after_name.split_whitespace().collect();
            let ticks =
                fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
            Some(ticks as f64 / hz)
        });
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
            Some(
                kb.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()?
                    * 1024,
            )
        });
    let fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count()).ok();
    if let Some(cpu) = cpu {
        out.push_str("# HELP process_cpu_seconds_total User and system CPU time spent.\n# TYPE process_cpu_seconds_total counter\n");
        let _ = writeln!(out, "process_cpu_seconds_total {cpu}");
    }
    if let Some(rss) = rss {
        out.push_str("# HELP process_resident_memory_bytes Resident memory size.\n# TYPE process_resident_memory_bytes gauge\n");
        let _ = writeln!(out, "process_resident_memory_bytes {rss}");
    }
    if let Some(fds) = fds {
        out.push_str(
            "# HELP process_open_fds Open file descriptors.\n# TYPE process_open_fds gauge\n",
        );
        let _ = writeln!(out, "process_open_fds {fds}");
    }
    out.push_str("# HELP process_start_time_seconds Start time of the process since the epoch.\n# TYPE process_start_time_seconds gauge\n");
    let _ = writeln!(out, "process_start_time_seconds {start_time}");
}

/// Appends the upstream metrics of `upstreams`: backends by state, and DNS outcomes
/// for upstreams with server names.
pub fn render_upstreams(upstreams: &[std::sync::Arc<crate::upstream::Upstream>], out: &mut String) {
    out.push_str("# HELP gateway_upstream_backends Backends of each upstream, by health.\n");
    out.push_str("# TYPE gateway_upstream_backends gauge\n");
    for u in upstreams {
        let set = u.backends();
        let healthy = set.backends.iter().filter(|b| b.healthy()).count();
        for (state, n) in [
            ("healthy", healthy),
            ("unhealthy", set.backends.len() - healthy),
        ] {
            out.push_str("gateway_upstream_backends{upstream=\"");
            escape_label(u.name(), out);
            let _ = writeln!(out, "\",state=\"{state}\"}} {n}");
        }
    }
    out.push_str(
        "# HELP gateway_upstream_requests_total Attempts sent to each backend, by outcome.\n",
    );
    out.push_str("# TYPE gateway_upstream_requests_total counter\n");
    for u in upstreams {
        for b in u.backends().backends.iter() {
            for (outcome, n) in b.outcomes() {
                out.push_str("gateway_upstream_requests_total{upstream=\"");
                escape_label(u.name(), out);
                let _ = writeln!(out, "\",backend=\"{}\",outcome=\"{outcome}\"}} {n}", b.addr);
            }
        }
    }
    out.push_str("# HELP gateway_dns_resolutions_total DNS resolutions of upstream server names, by result.\n");
    out.push_str("# TYPE gateway_dns_resolutions_total counter\n");
    for u in upstreams.iter().filter(|u| u.resolves_names()) {
        for (result, n) in [
            ("success", &u.discovery_ok),
            ("failure", &u.discovery_failed),
        ] {
            out.push_str("gateway_dns_resolutions_total{upstream=\"");
            escape_label(u.name(), out);
            let _ = writeln!(
                out,
                "\",result=\"{result}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
    }
}

/// Escapes a label value: backslash, double quote and newline.
pub(super) fn escape_label(value: &str, out: &mut String) {
    for ch in value.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_reload_and_certificate_metrics() {
        let m = Metrics::default();
        m.initial_load(100, vec![("/etc/gateway/tls".into(), 2_000)]);
        m.reload_failed();
        m.reload_succeeded(200, vec![("/a\"b".into(), 3_000)]);
        m.reload_failed();
        let mut out = String::new();
        m.render(3, &mut out);
        for line in [
            "gateway_config_reloads_total{result=\"success\"} 1",
            "gateway_config_reloads_total{result=\"failure\"} 2",
            "gateway_config_last_reload_success 0",
            "gateway_config_last_reload_timestamp_seconds 200",
            "gateway_tls_certificate_expiry_timestamp_seconds{cert=\"/a\\\"b\"} 3000",
            "gateway_requests_in_flight 3",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} missing in\n{out}");
        }
    }
}
