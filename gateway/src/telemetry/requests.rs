//! Per-route request metrics: counts by status code and a latency histogram, kept in
//! atomics and resolved when a snapshot is built, so a request only adds to counters.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
/// Distinct status codes counted exactly per series; more go to a per-class counter.
const CODE_SLOTS: usize = 8;

/// The requests of one (listener, route, upstream).
#[derive(Debug, Default)]
pub struct RequestSeries {
    /// (status code, count); a code of 0 marks a free slot.
    codes: [(AtomicU16, AtomicU64); CODE_SLOTS],
    /// Requests whose code found no free slot, by class (1xx..5xx).
    other: [AtomicU64; 5],
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl RequestSeries {
    /// Counts a request answered with `status` after `elapsed`.
    pub fn record(&self, status: u16, elapsed: Duration) {
        self.count_code(status);
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    fn count_code(&self, status: u16) {
        for (code, count) in &self.codes {
            let current = code.load(Ordering::Relaxed);
            if current == status {
                count.fetch_add(1, Ordering::Relaxed);
                return;
            }
            if current == 0 {
                match code.compare_exchange(0, status, Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => {
                        count.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    Err(taken) if taken == status => {
                        count.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    Err(_) => {}
                }
            }
        }
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.other[class].fetch_add(1, Ordering::Relaxed);
    }
}

/// Labels of a series.
type Key = (String, String, String);

/// Every series, by (listener, route, upstream).
#[derive(Debug, Default)]
pub struct RequestRegistry {
    series: Mutex<BTreeMap<Key, Arc<RequestSeries>>>,
}

impl RequestRegistry {
    /// The series of `listener`, `route`, `upstream`, made on first use. Called when a
    /// snapshot is built, never per request.
    pub fn series(&self, listener: &str, route: &str, upstream: &str) -> Arc<RequestSeries> {
        let mut map = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let key = (listener.to_owned(), route.to_owned(), upstream.to_owned());
        map.entry(key).or_default().clone()
    }

    /// Forgets series no snapshot uses any more (routes removed by a reload).
    pub fn prune(&self) {
        let mut map = self.series.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, s| Arc::strong_count(s) > 1);
    }

    /// Appends `gateway_requests_total` and `gateway_request_duration_seconds`.
    pub fn render(&self, out: &mut String) {
        let map = self.series.lock().unwrap_or_else(|e| e.into_inner());
        out.push_str("# HELP gateway_requests_total Requests answered, by listener, route, upstream and status code.\n");
        out.push_str("# TYPE gateway_requests_total counter\n");
        for ((listener, route, upstream), s) in map.iter() {
            let mut line = |code: &str, n: u64| {
                if n > 0 {
                    out.push_str("gateway_requests_total{listener=\"");
                    super::metrics::escape_label(listener, out);
                    out.push_str("\",route=\"");
                    super::metrics::escape_label(route, out);
                    out.push_str("\",upstream=\"");
                    super::metrics::escape_label(upstream, out);
                    let _ = writeln!(out, "\",code=\"{code}\"}} {n}");
                }
            };
            for (code, count) in &s.codes {
                let code = code.load(Ordering::Relaxed);
                if code != 0 {
                    line(&code.to_string(), count.load(Ordering::Relaxed));
                }
            }
            for (i, n) in s.other.iter().enumerate() {
                line(&format!("{}xx", i + 1), n.load(Ordering::Relaxed));
            }
        }
        // The histogram is by route and upstream: listeners are summed.
        let mut by_route: BTreeMap<(&str, &str), ([u64; BUCKETS.len()], u64, u64)> =
            BTreeMap::new();
        for ((_, route, upstream), s) in map.iter() {
            let entry = by_route.entry((route, upstream)).or_default();
            for (i, b) in s.buckets.iter().enumerate() {
                entry.0[i] += b.load(Ordering::Relaxed);
            }
            entry.1 += s.count.load(Ordering::Relaxed);
            entry.2 += s.sum_micros.load(Ordering::Relaxed);
        }
        out.push_str("# HELP gateway_request_duration_seconds Time from the request head to the end of the response, by route and upstream.\n");
        out.push_str("# TYPE gateway_request_duration_seconds histogram\n");
        for ((route, upstream), (buckets, count, sum)) in by_route {
            let mut labels = String::from("route=\"");
            super::metrics::escape_label(route, &mut labels);
            labels.push_str("\",upstream=\"");
            super::metrics::escape_label(upstream, &mut labels);
            labels.push('"');
            let mut cumulative = 0;
            for (bound, n) in BUCKETS.iter().zip(buckets) {
                cumulative += n;
                let _ = writeln!(out, "gateway_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
            }
            let _ = writeln!(
                out,
                "gateway_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "gateway_request_duration_seconds_sum{{{labels}}} {}",
                sum as f64 / 1e6
            );
            let _ = writeln!(
                out,
                "gateway_request_duration_seconds_count{{{labels}}} {count}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_histogram_render() {
        let reg = RequestRegistry::default();
        let s = reg.series("https", "/", "hello");
        s.record(200, Duration::from_millis(2));
        s.record(200, Duration::from_millis(30));
        s.record(404, Duration::from_micros(100));
        let mut out = String::new();
        reg.render(&mut out);
        assert!(out.contains("gateway_requests_total{listener=\"https\",route=\"/\",upstream=\"hello\",code=\"200\"} 2"), "{out}");
        assert!(out.contains("code=\"404\"} 1"), "{out}");
        assert!(out.contains("gateway_request_duration_seconds_bucket{route=\"/\",upstream=\"hello\",le=\"0.001\"} 1"), "{out}");
        assert!(out.contains("gateway_request_duration_seconds_bucket{route=\"/\",upstream=\"hello\",le=\"0.05\"} 3"), "{out}");
        assert!(
            out.contains(
                "gateway_request_duration_seconds_count{route=\"/\",upstream=\"hello\"} 3"
            ),
            "{out}"
        );
        for code in 300..320 {
            s.record(code, Duration::ZERO);
        }
        let mut out = String::new();
        reg.render(&mut out);
        assert!(
            out.contains("code=\"3xx\"}"),
            "overflow goes to the class: {out}"
        );
        drop(s);
        reg.prune();
        let mut out = String::new();
        reg.render(&mut out);
        assert!(!out.contains("gateway_requests_total{"), "{out}");
    }
}
