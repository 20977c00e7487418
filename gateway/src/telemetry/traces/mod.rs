//! OpenTelemetry traces (`[tracing]`): W3C Trace Context read from the client and sent
//! to the backend, a server span per request and a client span per backend attempt,
//! exported over OTLP off the request path. Without `[tracing]` none of it runs (a
//! client's `traceparent` goes to the backend as it came).

mod context;
mod encode;
mod export;
mod protobuf;
mod send;
mod span;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use http::header::HeaderName;
use http::HeaderMap;

pub(crate) use span::{Finished, Trace};

use crate::config::Tracing;

pub(crate) const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub(crate) const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// `[tracing]` as last applied.
static TRACER: ArcSwapOption<export::Tracer> = ArcSwapOption::const_empty();
/// Whether `TRACER` holds one: without `[tracing]` a request reads this flag alone.
static ON: AtomicBool = AtomicBool::new(false);

/// Applies `[tracing]` (from the reloader): a changed section starts a new exporter
/// (the old one exports what it has queued, then ends); the same one keeps running.
pub fn configure(config: Option<&Tracing>) {
    let current = TRACER.load();
    if current.as_ref().map(|t| &t.config) == config {
        return;
    }
    let tracer = match config.map(export::Tracer::start).transpose() {
        Ok(tracer) => tracer,
        // The running exporter, if any, keeps serving.
        Err(e) => {
            tracing::error!(error = %crate::error_chain(&e), "tracing: cannot apply [tracing]; the last one stays");
            return;
        }
    };
    if let Some(t) = &tracer {
        tracing::info!(endpoint = %t.config.endpoint, protocol = ?t.config.protocol, sample_ratio = t.config.sample_ratio, "tracing: spans are exported");
    }
    ON.store(tracer.is_some(), Ordering::Relaxed);
    TRACER.store(tracer.map(Arc::new));
}

/// The trace of a request with `headers`, when `[tracing]` is on: the client's valid
/// `traceparent` is continued (its sampling decision kept), else a new trace starts,
/// sampled by the ratio. `random` gives the ids.
pub(crate) fn begin(headers: &HeaderMap, random: impl FnMut() -> u64) -> Option<Trace> {
    if !ON.load(Ordering::Relaxed) {
        return None;
    }
    let tracer = TRACER.load();
    let tracer = tracer.as_ref()?;
    let mut values = headers.get_all(TRACEPARENT).iter();
    // Two `traceparent` fields: neither is the caller's.
    let parent = match (values.next(), values.next()) {
        (Some(v), None) => context::parse(v.as_bytes()),
        _ => None,
    };
    // Only a sampled continued trace records the caller's `tracestate`.
    let state = match parent {
        Some(p) if p.sampled => headers.get(TRACESTATE).map(|v| v.as_bytes()),
        _ => None,
    };
    Some(Trace::new(tracer, parent, state, random))
}

/// At exit: exports what is queued, waiting at most `wait`.
pub fn flush(wait: std::time::Duration) {
    if let Some(tracer) = TRACER.load_full() {
        if !tracer.flush(std::time::Instant::now() + wait) {
            tracing::warn!("tracing: spans still queued at exit are lost");
        }
    }
}

/// Spans dropped and exported so far, for `/metrics`.
pub fn counts() -> (u64, u64) {
    (
        export::DROPPED.load(Ordering::Relaxed),
        export::EXPORTED.load(Ordering::Relaxed),
    )
}
