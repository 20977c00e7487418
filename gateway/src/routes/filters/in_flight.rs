//! `max_in_flight`: a bound on a route's concurrent requests (Envoy's circuit breaker
//! `max_requests`, nginx's `limit_conn` per location); past it the route answers 503
//! at once instead of queueing.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// A route's bound and its count of requests in flight.
#[derive(Debug)]
pub struct InFlightLimit {
    max: u32,
    now: Arc<AtomicU32>,
}

/// One admitted request: counted until dropped.
#[derive(Debug)]
pub struct Slot(Arc<AtomicU32>);

impl InFlightLimit {
    pub fn new(max: u32) -> Self {
        Self {
            max,
            now: Arc::default(),
        }
    }

    /// A slot for one more request, or `None` when `max` are in flight.
    pub fn enter(&self) -> Option<Slot> {
        self.now
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.now.clone()))
    }

    /// Requests in flight now.
    pub fn current(&self) -> u32 {
        self.now.load(Ordering::Relaxed)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_max_and_frees_on_drop() {
        let limit = InFlightLimit::new(2);
        let a = limit.enter().expect("first");
        let b = limit.enter().expect("second");
        assert!(limit.enter().is_none(), "a third is refused");
        assert_eq!(limit.current(), 2);
        drop(a);
        let c = limit.enter().expect("a slot freed");
        assert!(limit.enter().is_none());
        drop((b, c));
        assert_eq!(limit.current(), 0);
    }

    #[test]
    fn concurrent_entries_never_pass_the_bound() {
        let limit = Arc::new(InFlightLimit::new(8));
        let peak = Arc::new(AtomicU32::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (limit, peak) = (limit.clone(), peak.clone());
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        if let Some(slot) = limit.enter() {
                            peak.fetch_max(limit.current(), Ordering::Relaxed);
                            drop(slot);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(peak.load(Ordering::Relaxed) <= 8);
        assert_eq!(limit.current(), 0);
    }
}
