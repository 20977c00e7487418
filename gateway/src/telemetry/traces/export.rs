//! Where spans go: a bounded queue the request path fills without waiting (a span that
//! does not fit is dropped and counted), and a thread of its own that wakes every
//! schedule delay, or when a batch's worth is queued, and exports what is queued as OTLP
//! (HTTP/protobuf or gRPC). A batch the collector does not take in time is dropped and
//! counted too. Requests never wake the thread one by one: a queued request costs its
//! sender no system call.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::send::Collector;
use super::span::Record;
use crate::config::Tracing;

/// Spans waiting for export at most; past it new ones are dropped
/// (`OTEL_BSP_MAX_QUEUE_SIZE` sets another).
const QUEUE: usize = 2048;
/// Spans in one export at most (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`).
const BATCH: usize = 512;
/// How long a span waits for its batch to fill (`OTEL_BSP_SCHEDULE_DELAY`, ms).
const BATCH_DELAY: Duration = Duration::from_secs(1);

/// What the export thread is sent.
// Nearly every item is a request: boxing it would allocate once more per request.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Item {
    /// A finished sampled request: its spans.
    Request(Record),
    /// Export what came before now, then answer.
    Flush(std::sync::mpsc::Sender<()>),
}

/// The batching settings: the defaults above, or OpenTelemetry's standard
/// `OTEL_BSP_*` variables when set to a positive whole number.
#[derive(Debug, Clone, Copy)]
struct Batching {
    queue: usize,
    batch: usize,
    delay: Duration,
}

impl Batching {
    fn from_env() -> Self {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    fn from_vars(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let var = |name: &str| {
            lookup(name)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|n| *n > 0)
        };
        let as_size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        let queue = var("OTEL_BSP_MAX_QUEUE_SIZE").map_or(QUEUE, as_size);
        Self {
            queue,
            batch: var("OTEL_BSP_MAX_EXPORT_BATCH_SIZE")
                .map_or(BATCH, as_size)
                .min(queue),
            delay: var("OTEL_BSP_SCHEDULE_DELAY").map_or(BATCH_DELAY, Duration::from_millis),
        }
    }
}

/// Spans dropped (queue full, export failed or timed out), since the process started.
pub(crate) static DROPPED: AtomicU64 = AtomicU64::new(0);
/// Spans the collector took.
pub(crate) static EXPORTED: AtomicU64 = AtomicU64::new(0);

/// Why the exporter could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExportError {
    #[error("cannot start the span export thread")]
    Thread(#[source] std::io::Error),
    #[error(transparent)]
    Collector(#[from] super::send::SendError),
}

/// What the senders and the export thread share besides the queue.
#[derive(Debug, Default)]
struct Shared {
    /// Spans queued and not yet taken by the thread.
    pending: AtomicUsize,
    /// The tracer is gone: export what is queued and end.
    closed: AtomicBool,
}

/// One `[tracing]` as applied: its settings and its queue.
pub(crate) struct Tracer {
    pub(crate) config: Tracing,
    /// New traces are sampled when their id's low 63 bits are below this.
    bound: u64,
    queue: SyncSender<Item>,
    shared: Arc<Shared>,
    /// The export thread, woken when a batch's worth is queued; with it, the batch size.
    thread: Option<std::thread::Thread>,
    batch: usize,
}

impl Drop for Tracer {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        if let Some(t) = &self.thread {
            t.unpark();
        }
    }
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("config", &self.config)
            .finish()
    }
}

impl Tracer {
    /// Starts the export thread of `config`; it ends when the tracer is dropped (and
    /// every sampled request holding it is done), after exporting what is queued.
    pub(crate) fn start(config: &Tracing) -> Result<Self, ExportError> {
        let batching = Batching::from_env();
        let collector = Collector::new(&config.endpoint, config.protocol)?;
        let (queue, spans) = sync_channel(batching.queue);
        let shared = Arc::new(Shared::default());
        let thread_config = config.clone();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("span-export".into())
            .spawn(move || {
                export_thread(&thread_config, collector, batching, &spans, &thread_shared)
            })
            .map_err(ExportError::Thread)?;
        Ok(Self {
            config: config.clone(),
            bound: ratio_bound(config.sample_ratio),
            queue,
            shared,
            thread: Some(thread.thread().clone()),
            batch: batching.batch,
        })
    }

    /// A tracer whose spans stay in the returned queue (no export thread).
    #[cfg(test)]
    pub(crate) fn capture(config: &Tracing, size: usize) -> (Self, Receiver<Item>) {
        let (queue, spans) = sync_channel(size);
        let tracer = Self {
            config: config.clone(),
            bound: ratio_bound(config.sample_ratio),
            queue,
            shared: Arc::default(),
            thread: None,
            batch: size,
        };
        (tracer, spans)
    }

    /// Whether a new trace of id `trace_id` is recorded (OpenTelemetry's
    /// TraceIdRatioBased: the id's random low bits against the ratio).
    pub(crate) fn samples(&self, trace_id: u128) -> bool {
        (trace_id as u64 >> 1) < self.bound
    }

    /// Queues a finished request's spans, or drops and counts them when the queue is
    /// full.
    pub(crate) fn submit(&self, record: Record) {
        let n = record.span_count();
        // Counted before it is queued, so the thread never takes more than was counted.
        let pending = self.shared.pending.fetch_add(n, Ordering::Relaxed) + n;
        match self.queue.try_send(Item::Request(record)) {
            Ok(()) => {
                if pending >= self.batch {
                    if let Some(t) = &self.thread {
                        t.unpark();
                    }
                }
            }
            Err(TrySendError::Full(item) | TrySendError::Disconnected(item)) => {
                self.shared.pending.fetch_sub(n, Ordering::Relaxed);
                if let Item::Request(record) = item {
                    DROPPED.fetch_add(record.span_count() as u64, Ordering::Relaxed);
                }
            }
        }
    }

    /// Has what is queued exported, waiting at most until `deadline`; whether it was.
    pub(crate) fn flush(&self, deadline: Instant) -> bool {
        let (done, acked) = std::sync::mpsc::channel();
        let mut item = Item::Flush(done);
        loop {
            match self.queue.try_send(item) {
                Ok(()) => {
                    if let Some(t) = &self.thread {
                        t.unpark();
                    }
                    break;
                }
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(back)) => {
                    if Instant::now() >= deadline {
                        return false;
                    }
                    item = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        acked
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }
}

/// The sampling bound of `ratio` over 63 bits (1.0: every id).
fn ratio_bound(ratio: f64) -> u64 {
    if ratio >= 1.0 {
        u64::MAX
    } else if ratio <= 0.0 {
        0
    } else {
        (ratio * (1u64 << 63) as f64) as u64
    }
}

/// Whether the last export failed (one WARN per run of failures).
static FAILING: AtomicBool = AtomicBool::new(false);

/// Takes what `spans` brings and exports it in batches, every `delay` or as soon as a
/// batch's worth is queued, until the tracer is gone.
fn export_thread(
    config: &Tracing,
    mut collector: Collector,
    batching: Batching,
    spans: &Receiver<Item>,
    shared: &Shared,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "tracing: cannot start the span exporter's runtime; spans are dropped");
            drain(spans);
            return;
        }
    };
    let mut batch = Batch::default();
    loop {
        let mut flushed = Vec::new();
        // What is queued, a batch at a time.
        let closed = loop {
            match spans.try_recv() {
                Ok(Item::Request(record)) => {
                    shared
                        .pending
                        .fetch_sub(record.span_count(), Ordering::Relaxed);
                    batch.spans += record.span_count();
                    batch.records.push(record);
                }
                Ok(Item::Flush(done)) => flushed.push(done),
                Err(TryRecvError::Empty) => break shared.closed.load(Ordering::Acquire),
                Err(TryRecvError::Disconnected) => break true,
            }
            if batch.spans >= batching.batch {
                export(config, &runtime, &mut collector, &mut batch);
            }
        };
        export(config, &runtime, &mut collector, &mut batch);
        for done in flushed {
            let _ = done.send(());
        }
        if closed {
            return;
        }
        std::thread::park_timeout(batching.delay);
    }
}

/// Requests taken from the queue, and the buffers their export request is written in.
#[derive(Default)]
struct Batch {
    records: Vec<Record>,
    spans: usize,
    scratch: Vec<u8>,
}

/// Exports `batch` (when it has spans) and empties it.
fn export(
    config: &Tracing,
    runtime: &tokio::runtime::Runtime,
    collector: &mut Collector,
    batch: &mut Batch,
) {
    if batch.records.is_empty() {
        return;
    }
    let n = batch.spans as u64;
    let mut body = Vec::new();
    super::encode::request(
        &batch.records,
        &config.service_name,
        &mut batch.scratch,
        &mut body,
    );
    batch.records.clear();
    batch.spans = 0;
    let sent = runtime.block_on(async {
        match tokio::time::timeout(config.timeout, collector.send(body.into())).await {
            Ok(done) => done.map_err(|e| crate::error_chain(&e)),
            Err(_) => Err(format!("no answer within {:?}", config.timeout)),
        }
    });
    match sent {
        Ok(()) => {
            EXPORTED.fetch_add(n, Ordering::Relaxed);
            if FAILING.swap(false, Ordering::Relaxed) {
                tracing::info!(endpoint = %config.endpoint, "tracing: spans are exported again");
            }
        }
        Err(e) => {
            DROPPED.fetch_add(n, Ordering::Relaxed);
            if !FAILING.swap(true, Ordering::Relaxed) {
                tracing::warn!(endpoint = %config.endpoint, error = %e, "tracing: cannot export spans; they are dropped (gateway_tracing_spans_dropped_total)");
            } else {
                tracing::debug!(endpoint = %config.endpoint, error = %e, "tracing: cannot export spans");
            }
        }
    }
}

/// Counts every span `spans` brings as dropped (no exporter).
fn drain(spans: &Receiver<Item>) {
    for item in spans.iter() {
        match item {
            Item::Request(record) => {
                DROPPED.fetch_add(record.span_count() as u64, Ordering::Relaxed);
            }
            Item::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OtlpProtocol;

    #[test]
    fn the_ratio_bounds_the_ids_sampled() {
        assert_eq!(ratio_bound(1.0), u64::MAX);
        assert_eq!(ratio_bound(0.0), 0);
        assert_eq!(ratio_bound(0.5), 1 << 62);
        let config = Tracing {
            endpoint: "http://127.0.0.1:9/v1/traces".into(),
            protocol: OtlpProtocol::Http,
            sample_ratio: 0.25,
            service_name: "t".into(),
            timeout: Duration::from_secs(1),
        };
        let tracer = Tracer::start(&config).unwrap();
        // About a quarter of ids spread evenly over the low bits.
        let sampled = (0..4096u128)
            .filter(|i| tracer.samples(i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)))
            .count();
        assert!((800..1250).contains(&sampled), "{sampled}");
        assert!(tracer.samples(0));
        assert!(!tracer.samples(u128::from(u64::MAX)));
    }

    #[test]
    fn batching_takes_the_standard_variables() {
        let b = Batching::from_vars(|_| None);
        assert_eq!(
            (b.queue, b.batch, b.delay),
            (2048, 512, Duration::from_secs(1))
        );
        let b = Batching::from_vars(|name| match name {
            "OTEL_BSP_MAX_QUEUE_SIZE" => Some("100".into()),
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE" => Some("1000".into()),
            "OTEL_BSP_SCHEDULE_DELAY" => Some(" 250 ".into()),
            _ => None,
        });
        // A batch is at most the queue.
        assert_eq!(
            (b.queue, b.batch, b.delay),
            (100, 100, Duration::from_millis(250))
        );
        let b = Batching::from_vars(|_| Some("0".into()));
        assert_eq!((b.queue, b.batch), (2048, 512));
    }
}
