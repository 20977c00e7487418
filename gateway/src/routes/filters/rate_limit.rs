//! `rate_limit`: requests per key (client address, a header's value, or the whole
//! route) held to `requests` per `per` with `burst` extra, as nginx's `limit_req` with
//! `burst` and `nodelay`: past it `429` at once. The bucket is GCRA's (one "theoretical
//! arrival time" per key, no timer): lock-free for `global`, sharded maps for the
//! others, bounded in size (idle keys are the first to go; they hold nothing). With
//! `[rate_limit] shared`, the same GCRA runs on each key's time as Redis holds it for
//! every replica (`crate::ratelimit`).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::header::HeaderName;
use http::HeaderMap;

use crate::ratelimit::{stable_hash, OnError, SharedLink};

/// What a route's requests are counted by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateKey {
    /// The client address (the PROXY header's when the listener reads one).
    ClientIp,
    /// A request header's value (requests without it share one count).
    Header(HeaderName),
    /// Every request of the route together.
    Global,
}

/// A validated `rate_limit`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RateLimit {
    pub requests: u32,
    pub per: Duration,
    pub burst: u32,
    pub key: RateKey,
}

/// Keys tracked per route at most (then idle keys are dropped, and if none is idle,
/// a shard starts over): ~24 bytes each, well under 64 MiB in all.
pub const MAX_KEYS: usize = 1 << 20;
const SHARDS: usize = 64;

/// The decision on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Admitted.
    Pass,
    /// Refused: try again after this long.
    Limited { retry_after: Duration },
}

/// A route's limiter: its policy and the counts.
#[derive(Debug)]
pub struct Limiter {
    policy: RateLimit,
    /// Time between two requests at the steady rate, in nanoseconds.
    interval: u64,
    /// How far ahead of now a key may run (`burst` intervals).
    tolerance: u64,
    epoch: Instant,
    /// `global`: the theoretical arrival time, nanoseconds since `epoch`.
    global: AtomicU64,
    shards: Box<[Mutex<HashMap<u128, u64>>]>,
    hasher: RandomState,
    /// The shared counts, with `[rate_limit] shared`.
    shared: Option<SharedPart>,
}

/// A route limiter's view of the shared counts.
#[derive(Debug)]
struct SharedPart {
    link: Arc<SharedLink>,
    /// This route's keys in Redis start with it: the same on every replica with the
    /// same route and policy.
    prefix: String,
    shards: Box<[Mutex<SharedShard>]>,
}

#[derive(Debug, Default)]
struct SharedShard {
    entries: HashMap<u128, Entry>,
    /// Keys with admitted requests not yet sent.
    dirty: Vec<u128>,
}

/// One key as this replica knows it.
#[derive(Debug, Default, Clone, Copy)]
struct Entry {
    /// The key's GCRA time (nanoseconds since `epoch`): Redis's at its last answer,
    /// moved on by every request admitted here since.
    tat: u64,
    /// Admitted here and not yet sent.
    pending: u32,
    /// When the first of them was admitted (they were spread from then to the send).
    first_at: u64,
    dirty: bool,
}

/// What one tick sends for a route: its keys' counts admitted since the last one.
#[derive(Debug)]
pub struct Batch {
    pub prefix: String,
    /// The route's interval between two requests, in microseconds.
    pub interval_us: u64,
    /// Per key: the count admitted and over how many microseconds before the send.
    pub keys: Vec<(u128, u32, u64)>,
}

impl Limiter {
    pub fn new(policy: RateLimit) -> Self {
        let per = u64::try_from(policy.per.as_nanos()).unwrap_or(u64::MAX);
        let interval = (per / u64::from(policy.requests.max(1))).max(1);
        let shards = match policy.key {
            RateKey::Global => 0,
            _ => SHARDS,
        };
        Self {
            interval,
            tolerance: interval.saturating_mul(u64::from(policy.burst)),
            policy,
            epoch: Instant::now(),
            global: AtomicU64::new(0),
            shards: (0..shards).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            shared: None,
        }
    }

    /// A limiter whose counts are shared through `link` by every replica with route
    /// `label` and this policy.
    pub fn shared(policy: RateLimit, label: &str, link: &Arc<SharedLink>) -> Arc<Self> {
        let identity = format!("{label}\n{policy:?}");
        let mut limiter = Self::new(policy);
        limiter.shared = Some(SharedPart {
            link: link.clone(),
            prefix: format!("gw:rl:{:016x}:", stable_hash(identity.as_bytes())),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        });
        let limiter = Arc::new(limiter);
        link.register(&limiter);
        limiter
    }

    /// The link this limiter shares through, if any.
    pub fn link(&self) -> Option<&Arc<SharedLink>> {
        self.shared.as_ref().map(|s| &s.link)
    }

    pub fn policy(&self) -> &RateLimit {
        &self.policy
    }

    /// Counts a request from `client` with `headers` against the limit.
    pub fn check(&self, client: Option<IpAddr>, headers: &HeaderMap) -> Decision {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.check_at(client, headers, now)
    }

    fn check_at(&self, client: Option<IpAddr>, headers: &HeaderMap, now: u64) -> Decision {
        let Some(shared) = &self.shared else {
            return self.check_local(client, headers, now);
        };
        let on_error = shared.link.settings.on_error;
        // With on_error = "local" the local counts are kept warm for the fallback.
        let local = (on_error == OnError::Local).then(|| self.check_local(client, headers, now));
        if shared.link.is_up() {
            return self.check_shared(shared, self.stable_key(client, headers), now);
        }
        match (on_error, local) {
            (OnError::Allow, _) => Decision::Pass,
            (OnError::Deny, _) => Decision::Limited {
                retry_after: self.policy.per,
            },
            (OnError::Local, local) => local.unwrap_or(Decision::Pass),
        }
    }

    /// The key as every replica names it.
    fn stable_key(&self, client: Option<IpAddr>, headers: &HeaderMap) -> u128 {
        match &self.policy.key {
            RateKey::Global => 0,
            RateKey::ClientIp => address_key(client),
            RateKey::Header(name) => {
                let value = headers.get(name).map_or(&b""[..], |v| v.as_bytes());
                u128::from(stable_hash(value)) | (1 << 127)
            }
        }
    }

    /// GCRA on the key's shared time plus what this replica admitted since it heard it.
    fn check_shared(&self, shared: &SharedPart, key: u128, now: u64) -> Decision {
        let i = self.hasher.hash_one(key) as usize % shared.shards.len().max(1);
        let Some(shard) = shared.shards.get(i) else {
            return Decision::Pass;
        };
        let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
        if shard.entries.len() >= MAX_KEYS / SHARDS && !shard.entries.contains_key(&key) {
            shard.entries.retain(|_, e| e.dirty || e.tat > now);
            if shard.entries.len() >= MAX_KEYS / SHARDS * 3 / 4 {
                shard.entries.retain(|_, e| e.dirty);
            }
        }
        let entry = shard.entries.entry(key).or_default();
        let (decision, next) = self.step(entry.tat, now);
        if decision == Decision::Pass {
            entry.tat = next;
            if entry.pending == 0 {
                entry.first_at = now;
            }
            entry.pending = entry.pending.saturating_add(1);
            if !entry.dirty {
                entry.dirty = true;
                shard.dirty.push(key);
            }
        }
        decision
    }

    /// Takes the counts to send (`None`: nothing admitted since the last tick).
    pub fn take_batch(&self) -> Option<Batch> {
        let shared = self.shared.as_ref()?;
        let now = self.now();
        let mut keys = Vec::new();
        for shard in shared.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let dirty = std::mem::take(&mut shard.dirty);
            for key in dirty {
                if let Some(e) = shard.entries.get_mut(&key) {
                    let span_us = now.saturating_sub(e.first_at) / 1000;
                    keys.push((key, e.pending, span_us));
                    e.pending = 0;
                    e.dirty = false;
                }
            }
        }
        (!keys.is_empty()).then(|| Batch {
            prefix: shared.prefix.clone(),
            interval_us: (self.interval / 1000).max(1),
            keys,
        })
    }

    /// Applies Redis's answer to a batch: each key's shared time, as microseconds ahead
    /// of Redis's clock when it answered (`None`: the call failed; the counts are
    /// dropped, as the fallback counted them). The key's time becomes the later of
    /// this replica's and Redis's with what was admitted here since the send on top.
    pub fn apply(&self, batch: &Batch, ahead_us: Option<&[i64]>) {
        self.apply_at(batch, ahead_us, self.now());
    }

    fn apply_at(&self, batch: &Batch, ahead_us: Option<&[i64]>, now: u64) {
        let (Some(shared), Some(ahead_us)) = (&self.shared, ahead_us) else {
            return;
        };
        for (&(key, _, _), &ahead) in batch.keys.iter().zip(ahead_us) {
            let s = self.hasher.hash_one(key) as usize % shared.shards.len().max(1);
            let Some(shard) = shared.shards.get(s) else {
                continue;
            };
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(e) = shard.entries.get_mut(&key) {
                // Redis's time may be behind now (the key is idle there): then this
                // replica's own count stands.
                let since = u128::from(e.pending) * u128::from(self.interval);
                let shared = i128::from(now) + i128::from(ahead) * 1000 + since as i128;
                if let Ok(shared) = u64::try_from(shared) {
                    e.tat = e.tat.max(shared);
                }
            }
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn check_local(&self, client: Option<IpAddr>, headers: &HeaderMap, now: u64) -> Decision {
        let key = match &self.policy.key {
            RateKey::Global => return self.check_global(now),
            RateKey::ClientIp => address_key(client),
            RateKey::Header(name) => {
                let value = headers.get(name).map_or(&b""[..], |v| v.as_bytes());
                // Keys apart from addresses: the top bit set.
                u128::from(self.hasher.hash_one(value)) | (1 << 127)
            }
        };
        let shard_of = self.hasher.hash_one(key) as usize % self.shards.len().max(1);
        let Some(shard) = self.shards.get(shard_of) else {
            return Decision::Pass;
        };
        let mut map = shard.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_KEYS / SHARDS && !map.contains_key(&key) {
            // Keys whose time has passed are as good as absent.
            map.retain(|_, tat| *tat > now);
            if map.len() >= MAX_KEYS / SHARDS * 3 / 4 {
                map.clear();
            }
        }
        let tat = map.entry(key).or_insert(0);
        let (decision, next) = self.step(*tat, now);
        *tat = next;
        decision
    }

    fn check_global(&self, now: u64) -> Decision {
        let mut decision = Decision::Pass;
        let _ = self
            .global
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tat| {
                let (d, next) = self.step(tat, now);
                decision = d;
                (next != tat).then_some(next)
            });
        decision
    }

    /// GCRA: the decision for a request at `now` of a key at `tat`, and its new `tat`.
    fn step(&self, tat: u64, now: u64) -> (Decision, u64) {
        let start = tat.max(now);
        let ahead = start - now;
        if ahead > self.tolerance {
            let retry_after = Duration::from_nanos(ahead - self.tolerance);
            return (Decision::Limited { retry_after }, tat);
        }
        (Decision::Pass, start.saturating_add(self.interval))
    }

    /// Keys tracked now, locally (for tests and bounds).
    pub fn keys(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}

/// A client address as a key (an IPv4-mapped IPv6 address is the IPv4 one).
fn address_key(client: Option<IpAddr>) -> u128 {
    match client.map(crate::cidr::canonical) {
        Some(IpAddr::V4(v4)) => u128::from(u32::from(v4)),
        Some(IpAddr::V6(v6)) => u128::from(v6),
        None => 0,
    }
}

#[cfg(test)]
mod tests;
