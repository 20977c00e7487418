//! A JWKS fetched from a URL (the IdP's `jwks_uri`) through its implicit upstream, and
//! kept fresh by a background task: again after the answer's `Cache-Control: max-age`
//! (clamped), at once when a token names a key the set lacks (at most every
//! `KICK_EVERY`), and with backoff after failures. The last good set keeps serving while
//! the IdP is unreachable. Kept across reloads while the route's URL stays the same.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use bytes::BytesMut;
use http::header::{ACCEPT, CACHE_CONTROL, HOST, USER_AGENT};
use http::{HeaderMap, HeaderValue, Method};
use tokio::sync::{watch, Notify};

use super::jwks::KeySet;
use crate::http1::{ClientConn, HeadLimits, OutBody, OutRequest, MAX_HEADER_SLOTS};
use crate::upstream::Upstream;

/// Refetched after this without `Cache-Control: max-age`.
const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
/// `max-age` is taken within these bounds (`no-cache`, `no-store`: the lower one).
const MIN_REFRESH: Duration = Duration::from_secs(30);
const MAX_REFRESH: Duration = Duration::from_secs(24 * 3600);
/// A fetch (connect, TLS, request, answer) gives up after this.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Retries after failures: 1 s, doubling, up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// An unknown `kid` makes the set be fetched again at most this often.
const KICK_EVERY: Duration = Duration::from_secs(5);
/// How long a request waits for a fetch: the first one, or one an unknown `kid` asked.
const FIRST_WAIT: Duration = Duration::from_secs(5);
const KICK_WAIT: Duration = Duration::from_secs(2);
/// A JWKS larger than this is refused.
const MAX_BODY: usize = 1024 * 1024;

const LIMITS: HeadLimits = HeadLimits {
    max_head: 64 * 1024,
    max_headers: MAX_HEADER_SLOTS,
    max_target: 0,
    reserve: 0,
};

/// A key set and its generation (which changes with the keys: kept tokens are then
/// checked again).
#[derive(Debug)]
pub struct Current {
    pub generation: u64,
    pub set: KeySet,
}

/// One JWKS URL's keys.
pub struct RemoteJwks {
    url: String,
    host: HeaderValue,
    path: String,
    upstream: Arc<Upstream>,
    current: ArcSwapOption<Current>,
    /// Fetches done (good or bad): what waiting requests watch.
    fetched: watch::Sender<u64>,
    /// Wakes the task: a kick, or this set dropped.
    wake: Arc<Notify>,
    kicked: Mutex<Option<Instant>>,
    /// A kick's fetch has not ended yet.
    pending: AtomicBool,
    started: AtomicBool,
    /// Good fetches, for tests and logs.
    loaded: AtomicU64,
}

impl std::fmt::Debug for RemoteJwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteJwks")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Drop for RemoteJwks {
    fn drop(&mut self) {
        self.wake.notify_one();
    }
}

impl RemoteJwks {
    /// The keys of `url` (its path `path`), fetched through `upstream`.
    pub fn new(url: &str, path: &str, upstream: Arc<Upstream>) -> Self {
        let host = url
            .parse::<http::Uri>()
            .ok()
            .and_then(|u| HeaderValue::try_from(u.authority()?.as_str()).ok())
            .unwrap_or_else(|| HeaderValue::from_static("localhost"));
        Self {
            url: url.to_owned(),
            host,
            path: path.to_owned(),
            upstream,
            current: ArcSwapOption::empty(),
            fetched: watch::Sender::new(0),
            wake: Arc::new(Notify::new()),
            kicked: Mutex::new(None),
            pending: AtomicBool::new(false),
            started: AtomicBool::new(false),
            loaded: AtomicU64::new(0),
        }
    }

    /// The upstream it is fetched through.
    pub fn upstream(&self) -> &Arc<Upstream> {
        &self.upstream
    }

    /// Serves `old`'s keys until its own first fetch (the same URL, another upstream).
    pub fn inherit(&self, old: &RemoteJwks) {
        self.current.store(old.current.load_full());
    }

    /// Starts its task on `runtime` (once).
    pub fn start(self: &Arc<Self>, runtime: &tokio::runtime::Handle) {
        if !self.started.swap(true, Ordering::AcqRel) {
            runtime.spawn(refresh_loop(Arc::downgrade(self), self.wake.clone()));
        }
    }

    /// The keys, waiting up to `FIRST_WAIT` for the first fetch when there are none yet.
    pub async fn current_or_wait(&self) -> Option<Arc<Current>> {
        if let Some(c) = self.current.load_full() {
            return Some(c);
        }
        let mut fetched = self.fetched.subscribe();
        let wait = async {
            loop {
                if let Some(c) = self.current.load_full() {
                    return Some(c);
                }
                if fetched.changed().await.is_err() {
                    return None;
                }
            }
        };
        tokio::time::timeout(FIRST_WAIT, wait).await.ok().flatten()
    }

    /// A token named a key that generation `seen` lacks: fetches again (unless one was
    /// asked within `KICK_EVERY` and has ended) and waits up to `KICK_WAIT` for it.
    /// The newer keys, if they came.
    pub async fn refetch(&self, seen: u64) -> Option<Arc<Current>> {
        let mut fetched = self.fetched.subscribe();
        let kick = match self.kicked.lock() {
            Ok(mut last) => {
                let now = Instant::now();
                let due = last.is_none_or(|t| now.duration_since(t) >= KICK_EVERY);
                if due {
                    *last = Some(now);
                    self.pending.store(true, Ordering::Release);
                }
                due
            }
            Err(_) => false,
        };
        if kick {
            self.wake.notify_one();
        } else if !self.pending.load(Ordering::Acquire) {
            return None;
        }
        let _ = tokio::time::timeout(KICK_WAIT, fetched.changed()).await;
        self.current.load_full().filter(|c| c.generation != seen)
    }

    /// Good fetches so far.
    pub fn loaded(&self) -> u64 {
        self.loaded.load(Ordering::Relaxed)
    }

    /// Takes a fetched set: a new generation only when the keys changed.
    fn publish(&self, set: KeySet) {
        let old = self.current.load_full();
        if old.as_ref().is_none_or(|c| c.set != set) {
            let generation = old.map_or(1, |c| c.generation + 1);
            self.current
                .store(Some(Arc::new(Current { generation, set })));
        }
        self.loaded.fetch_add(1, Ordering::Relaxed);
    }

    /// One GET of the URL: the set and how long it may be kept.
    async fn fetch(&self) -> Result<(KeySet, Duration), String> {
        let upstream = &self.upstream;
        let Some(chosen) = upstream.select(None, &[]) else {
            return Err("no address for the JWKS host (yet)".to_owned());
        };
        let addr = chosen.backend().addr;
        let exchange = async {
            let stream = upstream.dial(addr).await.map_err(|e| e.to_string())?;
            let mut conn = ClientConn::new(stream);
            let mut fields = HeaderMap::with_capacity(3);
            fields.insert(HOST, self.host.clone());
            fields.insert(ACCEPT, HeaderValue::from_static("application/json"));
            fields.insert(USER_AGENT, HeaderValue::from_static("gateway"));
            let skip = |_: &http::HeaderName| false;
            let out = OutRequest {
                method: &Method::GET,
                target: self.path.as_bytes(),
                headers: &fields,
                skip: &skip,
                extra: &[],
                body: OutBody::None,
            };
            let failed = |e: crate::http1::Http1Error| format!("HTTP with {addr}: {e}");
            conn.write_request(out, b"", true).await.map_err(failed)?;
            let head = loop {
                let head = conn.read_response(&LIMITS).await.map_err(failed)?;
                if !head.is_interim() {
                    break head;
                }
            };
            if head.status != http::StatusCode::OK {
                return Err(format!("{addr} answered {}", head.status.as_u16()));
            }
            let mut body = BytesMut::new();
            while let Some(piece) = conn.read_body().await.map_err(failed)? {
                if body.len() + piece.len() > MAX_BODY {
                    return Err(format!("the JWKS is larger than {MAX_BODY} bytes"));
                }
                body.extend_from_slice(&piece);
            }
            let keep = refresh_after(head.headers.get(CACHE_CONTROL));
            let set = KeySet::parse(&body).map_err(|e| crate::error_chain(&e))?;
            Ok((set, keep))
        };
        match tokio::time::timeout(FETCH_TIMEOUT, exchange).await {
            Ok(done) => done,
            Err(_) => Err(format!("{addr} did not answer within {FETCH_TIMEOUT:?}")),
        }
    }
}

/// How long an answer's keys are kept, by its `Cache-Control`.
fn refresh_after(cache_control: Option<&HeaderValue>) -> Duration {
    let Some(text) = cache_control.and_then(|v| v.to_str().ok()) else {
        return DEFAULT_REFRESH;
    };
    let mut keep = None;
    for directive in text.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-cache" || lower == "no-store" {
            return MIN_REFRESH;
        }
        if let Some(secs) = lower.strip_prefix("max-age=") {
            keep = secs
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    keep.map_or(DEFAULT_REFRESH, |k| k.clamp(MIN_REFRESH, MAX_REFRESH))
}

/// Fetches, then waits (the answer's keep time, or the backoff) or is woken; ends when
/// the set is dropped.
async fn refresh_loop(remote: Weak<RemoteJwks>, wake: Arc<Notify>) {
    let mut failures: u32 = 0;
    loop {
        let wait = {
            let Some(remote) = remote.upgrade() else {
                return;
            };
            let wait = match remote.fetch().await {
                Ok((set, keep)) => {
                    if failures > 0 || remote.loaded() == 0 {
                        tracing::info!(url = %remote.url, "JWKS loaded");
                    }
                    failures = 0;
                    remote.publish(set);
                    keep
                }
                Err(reason) => {
                    failures = failures.saturating_add(1);
                    let serving = remote.current.load().is_some();
                    if failures == 1 || failures % 20 == 0 {
                        tracing::warn!(
                            url = %remote.url,
                            reason,
                            failures,
                            serving_last_good = serving,
                            "JWKS fetch failed"
                        );
                    }
                    let shift = failures.saturating_sub(1).min(5);
                    Duration::from_secs(1u64 << shift).min(MAX_BACKOFF)
                }
            };
            remote.pending.store(false, Ordering::Release);
            remote.fetched.send_modify(|n| *n += 1);
            wait
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = wake.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_sets_the_refresh_within_bounds() {
        let at = |v: &'static str| refresh_after(Some(&HeaderValue::from_static(v)));
        assert_eq!(refresh_after(None), DEFAULT_REFRESH);
        assert_eq!(at("public, max-age=3600"), Duration::from_secs(3600));
        assert_eq!(at("max-age=1"), MIN_REFRESH);
        assert_eq!(at("Max-Age=999999999"), MAX_REFRESH);
        assert_eq!(at("no-cache"), MIN_REFRESH);
        assert_eq!(at("private"), DEFAULT_REFRESH);
    }
}
