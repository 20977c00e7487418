//! Credentials verified lately, by their whole `Authorization` value: a bounded, sharded
//! map looked up without allocating. Basic auth keeps a deadline per value, JWT auth
//! what the token said. Looked up through std's randomly keyed SipHash (no guess can aim
//! at a cached value) and compared whole (no two values collide).

use std::collections::HashMap;
use std::sync::Mutex;

use http::HeaderValue;

const SHARDS: usize = 16;
/// Values kept per shard (16,384 in all); a full shard drops its stale ones, then all.
pub(super) const PER_SHARD: usize = 1024;
/// Longer values are verified every time (the cache's memory bound).
pub(super) const MAX_KEY: usize = 4096;

pub(super) struct Cache<V> {
    shards: [Mutex<HashMap<HeaderValue, V>>; SHARDS],
}

impl<V: Clone> Cache<V> {
    pub(super) fn new() -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
        }
    }

    fn shard(&self, key: &HeaderValue) -> &Mutex<HashMap<HeaderValue, V>> {
        let bytes = key.as_bytes();
        let spread = bytes.len() + bytes.last().map_or(0, |&b| usize::from(b));
        &self.shards[spread % SHARDS]
    }

    /// The value kept for `key`, if `fresh` says it still holds.
    pub(super) fn get(&self, key: &HeaderValue, fresh: impl Fn(&V) -> bool) -> Option<V> {
        let map = self.shard(key).lock().ok()?;
        map.get(key).filter(|v| fresh(v)).cloned()
    }

    /// Keeps `value` for `key` (not for overlong keys); a full shard first drops what
    /// `fresh` says is stale, then everything.
    pub(super) fn insert(&self, key: &HeaderValue, value: V, fresh: impl Fn(&V) -> bool) {
        if key.len() > MAX_KEY {
            return;
        }
        let Ok(mut map) = self.shard(key).lock() else {
            return;
        };
        if map.len() >= PER_SHARD {
            map.retain(|_, v| fresh(v));
            if map.len() >= PER_SHARD {
                map.clear();
            }
        }
        map.insert(key.clone(), value);
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |m| m.len()))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_shard_keeps_its_bound_and_stale_values_are_not_returned() {
        let cache = Cache::new();
        for i in 0..(SHARDS * PER_SHARD + 100) {
            cache.insert(&HeaderValue::from(i), i, |_| true);
        }
        assert!(cache.len() <= SHARDS * PER_SHARD);
        let key = HeaderValue::from_static("k");
        cache.insert(&key, 7, |_| true);
        assert_eq!(cache.get(&key, |v| *v == 7), Some(7));
        assert_eq!(cache.get(&key, |_| false), None, "stale");
        let long = HeaderValue::try_from("x".repeat(MAX_KEY + 1)).unwrap();
        cache.insert(&long, 1, |_| true);
        assert_eq!(
            cache.get(&long, |_| true),
            None,
            "overlong keys are not kept"
        );
    }
}
