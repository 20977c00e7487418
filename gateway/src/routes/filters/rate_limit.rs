//! `rate_limit`: requests per key (client address, a header's value, or the whole
//! route) held to `requests` per `per` with `burst` extra, as nginx's `limit_req` with
//! `burst` and `nodelay`: past it `429` at once. The bucket is GCRA's (one "theoretical
//! arrival time" per key, no timer): lock-free for `global`, sharded maps for the
//! others, bounded in size (idle keys are the first to go; they hold nothing).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::header::HeaderName;
use http::HeaderMap;

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
        }
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
        let key = match &self.policy.key {
            RateKey::Global => return self.check_global(now),
            RateKey::ClientIp => match client.map(crate::cidr::canonical) {
                Some(IpAddr::V4(v4)) => u128::from(u32::from(v4)),
                Some(IpAddr::V6(v6)) => u128::from(v6),
                None => 0,
            },
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

    /// Keys tracked now (for tests and bounds).
    pub fn keys(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}

#[cfg(test)]
mod tests;
