//! Rate limits shared by the replicas through Redis (`[rate_limit] shared`). Each
//! route's limiter decides locally, from what it last heard of each key's shared GCRA
//! time plus what it admitted since; a background task sends the admitted counts of
//! every busy key in one script call every [`TICK`] and hears back each key's shared
//! time (Redis's clock, so the replicas' clocks do not matter). A request never waits
//! on Redis; when Redis is slow or down, `on_error` decides until it answers again.

mod sync;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

pub use sync::start;

use crate::routes::filters::rate_limit::Limiter;

/// How often the busy keys' counts go to Redis.
pub const TICK: Duration = Duration::from_millis(10);

/// What the limiters do while Redis does not answer within `timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OnError {
    /// Each replica applies the limit alone (N replicas: N times the rate).
    Local,
    /// Every request passes.
    Allow,
    /// Every request of a limited route gets 429.
    Deny,
}

/// A validated `[rate_limit] shared`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Shared {
    /// `redis://[user:password@]host:port[/db]`, checked by the client's parser.
    pub url: String,
    pub timeout: Duration,
    pub on_error: OnError,
}

/// `[rate_limit] shared`'s defaults.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(5);

/// Counters of the link, for `/metrics`.
#[derive(Debug, Default)]
pub struct SharedStats {
    configured: AtomicBool,
    up: AtomicBool,
    errors: AtomicU64,
    calls: AtomicU64,
}

impl SharedStats {
    /// Whether `[rate_limit] shared` is set (its metrics are rendered then).
    pub fn set_configured(&self, configured: bool) {
        self.configured.store(configured, Ordering::Relaxed);
    }

    /// Appends `gateway_rate_limit_shared_up`, `..._calls_total` and `..._errors_total`
    /// (nothing without `[rate_limit] shared`).
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        if !self.configured.load(Ordering::Relaxed) {
            return;
        }
        out.push_str("# HELP gateway_rate_limit_shared_up Whether Redis answered the shared rate limits' last call in time (1) or not (0: on_error applies).\n");
        out.push_str("# TYPE gateway_rate_limit_shared_up gauge\n");
        let up = u8::from(self.up.load(Ordering::Relaxed));
        let _ = writeln!(out, "gateway_rate_limit_shared_up {up}");
        out.push_str("# HELP gateway_rate_limit_shared_calls_total Calls to Redis for the shared rate limits (one per tick with busy keys).\n");
        out.push_str("# TYPE gateway_rate_limit_shared_calls_total counter\n");
        let calls = self.calls.load(Ordering::Relaxed);
        let _ = writeln!(out, "gateway_rate_limit_shared_calls_total {calls}");
        out.push_str("# HELP gateway_rate_limit_shared_errors_total Calls to Redis for the shared rate limits that failed or took longer than timeout.\n");
        out.push_str("# TYPE gateway_rate_limit_shared_errors_total counter\n");
        let errors = self.errors.load(Ordering::Relaxed);
        let _ = writeln!(out, "gateway_rate_limit_shared_errors_total {errors}");
    }
}

/// The process's link to Redis for one `[rate_limit] shared` setting: the limiters
/// that share through it and whether Redis answers.
#[derive(Debug)]
pub struct SharedLink {
    pub settings: Shared,
    client: redis::Client,
    up: AtomicBool,
    limiters: Mutex<Vec<Weak<Limiter>>>,
    stats: Arc<SharedStats>,
}

impl SharedLink {
    /// A link for `settings` (its URL already checked at validation).
    pub fn new(settings: Shared, stats: Arc<SharedStats>) -> Result<Arc<Self>, redis::RedisError> {
        let client = redis::Client::open(settings.url.as_str())?;
        stats.configured.store(true, Ordering::Relaxed);
        // Until the first call says otherwise, sharing is assumed to work.
        stats.up.store(true, Ordering::Relaxed);
        Ok(Arc::new(Self {
            settings,
            client,
            up: AtomicBool::new(true),
            limiters: Mutex::default(),
            stats,
        }))
    }

    /// Whether Redis answered the last call in time.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Adds a route's limiter to those synchronised.
    pub fn register(&self, limiter: &Arc<Limiter>) {
        let mut all = self.limiters.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|l| l.strong_count() > 0);
        all.push(Arc::downgrade(limiter));
    }

    /// The limiters still in use.
    fn limiters(&self) -> Vec<Arc<Limiter>> {
        let mut all = self.limiters.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|l| l.strong_count() > 0);
        all.iter().filter_map(Weak::upgrade).collect()
    }

    /// Records a call's outcome; logs the transitions once.
    pub(crate) fn record(&self, ok: bool) {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
        }
        let was = self.up.swap(ok, Ordering::Relaxed);
        self.stats.up.store(ok, Ordering::Relaxed);
        match (was, ok) {
            (true, false) => tracing::warn!(
                on_error = ?self.settings.on_error,
                timeout = ?self.settings.timeout,
                "shared rate limits: Redis did not answer in time; on_error applies until it does"
            ),
            (false, true) => {
                tracing::info!("shared rate limits: Redis answers again; sharing resumed")
            }
            _ => {}
        }
    }
}

/// A key's identity in Redis: the same on every replica (not the process's hasher).
pub fn stable_hash(bytes: &[u8]) -> u64 {
    // FNV-1a, 64 bits.
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_hashes_do_not_depend_on_the_process() {
        // FNV-1a test vectors.
        assert_eq!(stable_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(stable_hash(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
