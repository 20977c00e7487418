//! Backend selection: round robin, random, least requests (two random choices) and a
//! consistent-hash ring. No allocation per choice.

use std::cell::Cell;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::backend::{now_ms, Backend};

/// Points per backend on the hash ring: enough for an even spread of keys.
const RING_POINTS: usize = 160;

/// A consistent-hash ring over a backend list.
#[derive(Debug, Default)]
pub(super) struct Ring {
    /// (point, backend index), sorted by point.
    points: Vec<(u64, usize)>,
}

impl Ring {
    pub(super) fn new(backends: &[Arc<Backend>]) -> Self {
        let mut points = Vec::with_capacity(backends.len() * RING_POINTS);
        for (i, b) in backends.iter().enumerate() {
            for n in 0..RING_POINTS {
                points.push((hash_of(&(b.addr, n)), i));
            }
        }
        points.sort_unstable();
        Self { points }
    }

    /// Backend indices clockwise from `key`'s point, each backend once per lap.
    fn walk(&self, key: u64) -> impl Iterator<Item = usize> + '_ {
        let start = self.points.partition_point(|(p, _)| *p < key);
        let len = self.points.len();
        (0..len).map(move |i| self.points[(start + i) % len].1)
    }
}

/// A stable 64-bit hash (SipHash with fixed keys: the same in every process).
pub fn hash_of<T: Hash + ?Sized>(value: &T) -> u64 {
    #[allow(deprecated)] // SipHasher's fixed keys are what a ring shared across restarts needs
    let mut h = std::hash::SipHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// Whether `b` may take the request: available, and not already tried (unless
/// `desperate`, when every backend was tried or is down).
fn usable(b: &Backend, now: u64, tried: &[SocketAddr], desperate: bool) -> bool {
    desperate || (b.available(now) && !tried.contains(&b.addr))
}

/// Runs `pick` first among available, untried backends, then among all.
fn with_fallback<'a>(
    tried: &[SocketAddr],
    mut pick: impl FnMut(&dyn Fn(&Backend) -> bool) -> Option<&'a Arc<Backend>>,
) -> Option<&'a Arc<Backend>> {
    let now = now_ms();
    pick(&|b| usable(b, now, tried, false)).or_else(|| pick(&|b| usable(b, now, tried, true)))
}

/// The first backend `ok` accepts, in turn from index `start` (wrapping around).
fn first_from<'a>(
    backends: &'a [Arc<Backend>],
    start: usize,
    ok: &dyn Fn(&Backend) -> bool,
) -> Option<&'a Arc<Backend>> {
    let len = backends.len();
    (0..len)
        .map(|i| &backends[(start + i) % len])
        .find(|b| ok(b))
}

/// Round-robin turns, one counter per worker thread slot on a cache line of its own:
/// threads never contend for it, and each thread's requests go round the backends
/// (two threads sharing a slot may lose a turn: harmless).
#[derive(Debug, Default)]
pub(super) struct Turns([Turn; TURN_SLOTS]);

#[derive(Debug, Default)]
#[repr(align(64))]
struct Turn(AtomicUsize);

const TURN_SLOTS: usize = 8;

impl Turns {
    /// The next turn of this thread.
    fn next(&self) -> usize {
        let slot = crate::lifecycle::thread_slot() % TURN_SLOTS;
        let turn = &self.0[slot].0;
        // Only this thread writes the slot: a load and a store, no locked instruction.
        let n = turn.load(Ordering::Relaxed);
        turn.store(n.wrapping_add(1), Ordering::Relaxed);
        n
    }
}

/// The next backend in turn.
pub(super) fn round_robin<'a>(
    backends: &'a [Arc<Backend>],
    turns: &Turns,
    tried: &[SocketAddr],
) -> Option<&'a Arc<Backend>> {
    let len = backends.len();
    if len == 0 {
        return None;
    }
    let start = turns.next();
    with_fallback(tried, |ok| first_from(backends, start, ok))
}

/// A uniformly random backend.
pub(super) fn random<'a>(
    backends: &'a [Arc<Backend>],
    tried: &[SocketAddr],
) -> Option<&'a Arc<Backend>> {
    let len = backends.len();
    if len == 0 {
        return None;
    }
    let start = random_below(len);
    with_fallback(tried, |ok| first_from(backends, start, ok))
}

/// Of two distinct random backends, the one with fewer requests in flight.
pub(super) fn least_requests<'a>(
    backends: &'a [Arc<Backend>],
    tried: &[SocketAddr],
) -> Option<&'a Arc<Backend>> {
    let len = backends.len();
    if len == 0 {
        return None;
    }
    // Two distinct candidates (when there are two): the idle one is always among them.
    let x = random_below(len);
    let y = if len > 1 {
        (x + 1 + random_below(len - 1)) % len
    } else {
        x
    };
    with_fallback(tried, |ok| {
        let first = first_from(backends, x, ok)?;
        let second = first_from(backends, y, ok)?;
        Some(if second.in_flight() < first.in_flight() {
            second
        } else {
            first
        })
    })
}

/// The first usable backend clockwise from `key` on the ring.
pub(super) fn consistent<'a>(
    backends: &'a [Arc<Backend>],
    ring: &Ring,
    key: u64,
    tried: &[SocketAddr],
) -> Option<&'a Arc<Backend>> {
    if backends.is_empty() {
        return None;
    }
    with_fallback(tried, |ok| {
        ring.walk(key).map(|i| &backends[i]).find(|b| ok(b))
    })
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    hash_of(&(t, std::thread::current().id())) | 1
}

/// A random number (xorshift64*, per thread; fast, not for secrets).
pub(crate) fn random_u64() -> u64 {
    RNG.with(|state| {
        let mut x = state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

/// A random number in `0..n`.
pub(super) fn random_below(n: usize) -> usize {
    (random_u64() % n as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PassiveHealth, Timeouts};
    use std::collections::HashMap;
    use std::time::Duration;

    fn backends(n: usize) -> Vec<Arc<Backend>> {
        let t = Timeouts {
            connect: Duration::from_secs(1),
            read: Duration::from_secs(1),
            write: Duration::from_secs(1),
            idle: Duration::from_secs(1),
        };
        (0..n)
            .map(|i| {
                Arc::new(Backend::new(
                    SocketAddr::from(([127, 0, 0, 1], 1000 + i as u16)),
                    &t,
                ))
            })
            .collect()
    }

    #[test]
    fn round_robin_skips_ejected_and_tried_backends() {
        let b = backends(3);
        let counter = Turns::default();
        let picks: Vec<u16> = (0..6)
            .map(|_| round_robin(&b, &counter, &[]).unwrap().addr.port())
            .collect();
        assert_eq!(picks, [1000, 1001, 1002, 1000, 1001, 1002]);
        let passive = PassiveHealth {
            unhealthy_after: 1,
            cooldown: Duration::from_secs(60),
        };
        b[1].connect_failed(&passive);
        let picks: Vec<u16> = (0..4)
            .map(|_| round_robin(&b, &counter, &[]).unwrap().addr.port())
            .collect();
        assert!(!picks.contains(&1001), "{picks:?}");
        let tried = [b[0].addr];
        for _ in 0..4 {
            assert_eq!(round_robin(&b, &counter, &tried).unwrap().addr.port(), 1002);
        }
        // Everything down or tried: still answer with some backend rather than none.
        b[0].connect_failed(&passive);
        b[2].connect_failed(&passive);
        assert!(round_robin(&b, &counter, &[]).is_some());
    }

    #[test]
    fn least_requests_prefers_the_idle_backend() {
        let b = backends(2);
        let _busy: Vec<_> = (0..10).map(|_| b[0].start_request(true)).collect();
        let mut counts = HashMap::new();
        for _ in 0..1000 {
            *counts
                .entry(least_requests(&b, &[]).unwrap().addr.port())
                .or_insert(0) += 1;
        }
        // Two distinct choices always include the idle backend.
        assert_eq!(counts[&1001], 1000, "{counts:?}");
    }

    #[test]
    fn consistent_hash_keeps_keys_and_moves_few_when_a_backend_leaves() {
        let b = backends(4);
        let ring = Ring::new(&b);
        let pick = |k: u64, b: &[Arc<Backend>], r: &Ring| consistent(b, r, k, &[]).unwrap().addr;
        let keys: Vec<u64> = (0..2000u64).map(|k| hash_of(&k)).collect();
        let before: Vec<SocketAddr> = keys.iter().map(|&k| pick(k, &b, &ring)).collect();
        assert_eq!(
            before,
            keys.iter().map(|&k| pick(k, &b, &ring)).collect::<Vec<_>>()
        );
        let fewer: Vec<Arc<Backend>> = b
            .iter()
            .filter(|x| x.addr.port() != 1002)
            .cloned()
            .collect();
        let ring2 = Ring::new(&fewer);
        let moved = keys
            .iter()
            .zip(&before)
            .filter(|(k, was)| was.port() != 1002 && pick(**k, &fewer, &ring2) != **was)
            .count();
        assert_eq!(moved, 0, "keys of the remaining backends stay put");
        let spread: HashMap<u16, usize> = before.iter().fold(HashMap::new(), |mut m, a| {
            *m.entry(a.port()).or_default() += 1;
            m
        });
        assert!(spread.values().all(|&n| n > 300), "{spread:?}");
    }

    #[test]
    fn random_spreads() {
        let b = backends(3);
        let mut counts = HashMap::new();
        for _ in 0..3000 {
            *counts
                .entry(random(&b, &[]).unwrap().addr.port())
                .or_insert(0) += 1;
        }
        assert!(counts.values().all(|&n| n > 800), "{counts:?}");
    }
}
