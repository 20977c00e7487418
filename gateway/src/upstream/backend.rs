//! One backend: its address, the peer pingora connects to, and its health state.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use pingora::upstreams::peer::HttpPeer;

use super::pool::Pool;
use crate::config::{PassiveHealth, Timeouts};

/// Milliseconds since the first call: a cheap monotonic clock for ejection deadlines.
pub(crate) fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A backend and what the gateway knows about it.
#[derive(Debug)]
pub struct Backend {
    pub addr: SocketAddr,
    peer: HttpPeer,
    in_flight: AtomicUsize,
    /// Failed connects in a row (passive health).
    connect_failures: AtomicU32,
    /// `now_ms()` until which the backend gets no requests; 0 when not ejected.
    ejected_until: AtomicU64,
    /// Verdict of the active checks (true until they say otherwise).
    active_healthy: AtomicBool,
    /// Active check results in a row: positive for successes, negative for failures.
    active_streak: std::sync::atomic::AtomicI32,
    /// Attempts by outcome, indexed by [`Outcome`].
    outcomes: [AtomicU64; 4],
    /// Idle keep-alive connections to it.
    pub pool: Pool,
    /// Its HTTP/2 connections (upstreams speaking HTTP/2).
    pub h2: super::Multiplex,
}

/// How an attempt to a backend ended, by what the backend did: each attempt is
/// counted once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response came back (even if the client then went away).
    Success = 0,
    /// The connection could not be made.
    ConnectFailure = 1,
    /// The backend's connection failed or timed out while proxying.
    Error = 2,
    /// The client or the gateway ended the exchange before any response (the client
    /// went away, a body past `max_body_size`): nothing the backend did.
    Cancelled = 3,
}

impl Backend {
    pub fn new(addr: SocketAddr, timeouts: &Timeouts) -> Self {
        let mut peer = HttpPeer::new(addr, false, String::new());
        peer.options.connection_timeout = Some(timeouts.connect);
        peer.options.read_timeout = Some(timeouts.read);
        peer.options.write_timeout = Some(timeouts.write);
        Self {
            addr,
            peer,
            in_flight: AtomicUsize::new(0),
            connect_failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            active_healthy: AtomicBool::new(true),
            active_streak: std::sync::atomic::AtomicI32::new(0),
            outcomes: Default::default(),
            pool: Pool::default(),
            h2: super::Multiplex::default(),
        }
    }

    /// The peer pingora connects to, with the upstream's timeouts.
    pub fn peer(&self) -> &HttpPeer {
        &self.peer
    }

    /// Whether the backend should get requests at `now` (from [`now_ms`]).
    pub fn available(&self, now: u64) -> bool {
        self.active_healthy.load(Ordering::Relaxed)
            && self.ejected_until.load(Ordering::Relaxed) <= now
    }

    /// Whether it counts as healthy for metrics: not ejected and passing active checks.
    pub fn healthy(&self) -> bool {
        self.available(now_ms())
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts an attempt's outcome.
    pub fn count(&self, outcome: Outcome) {
        self.outcomes[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Attempts so far, by outcome label.
    pub fn outcomes(&self) -> [(&'static str, u64); 4] {
        let n = |o: Outcome| self.outcomes[o as usize].load(Ordering::Relaxed);
        [
            ("success", n(Outcome::Success)),
            ("connect_failure", n(Outcome::ConnectFailure)),
            ("error", n(Outcome::Error)),
            ("cancelled", n(Outcome::Cancelled)),
        ]
    }

    /// A request to this backend, counted in flight until the guard is dropped when
    /// `counted` (only `least_requests` reads the count: other policies do not pay for
    /// it).
    pub fn start_request(self: &Arc<Self>, counted: bool) -> InFlight {
        if counted {
            self.in_flight.fetch_add(1, Ordering::Relaxed);
        }
        InFlight {
            backend: self.clone(),
            counted,
        }
    }

    /// A connect failed or timed out: after `unhealthy_after` in a row, eject for the
    /// cooldown. Once the cooldown is over the next request probes it, and one more
    /// failure ejects it again.
    pub fn connect_failed(&self, passive: &PassiveHealth) {
        let failures = self.connect_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= passive.unhealthy_after {
            let until =
                now_ms() + u64::try_from(passive.cooldown.as_millis()).unwrap_or(u64::MAX / 2);
            self.ejected_until.store(until, Ordering::Relaxed);
        }
    }

    /// A connect succeeded: the failure streak ends.
    pub fn connect_succeeded(&self) {
        if self.connect_failures.load(Ordering::Relaxed) != 0 {
            self.connect_failures.store(0, Ordering::Relaxed);
            self.ejected_until.store(0, Ordering::Relaxed);
        }
    }

    /// Records an active check result; flips the verdict after `healthy_after`
    /// successes or `unhealthy_after` failures in a row. Returns the active verdict
    /// before and after.
    pub fn record_check(&self, ok: bool, healthy_after: u32, unhealthy_after: u32) -> (bool, bool) {
        let before = self.active_healthy.load(Ordering::Relaxed);
        let streak = self.active_streak.load(Ordering::Relaxed);
        let streak = match (ok, streak) {
            (true, s) if s > 0 => s.saturating_add(1),
            (true, _) => 1,
            (false, s) if s < 0 => s.saturating_sub(1),
            (false, _) => -1,
        };
        self.active_streak.store(streak, Ordering::Relaxed);
        let threshold = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
        if streak >= threshold(healthy_after) {
            self.active_healthy.store(true, Ordering::Relaxed);
        } else if -streak >= threshold(unhealthy_after) {
            self.active_healthy.store(false, Ordering::Relaxed);
        }
        (before, self.active_healthy.load(Ordering::Relaxed))
    }
}

/// One request in flight to a backend; dropping it ends the request.
#[derive(Debug)]
pub struct InFlight {
    backend: Arc<Backend>,
    counted: bool,
}

impl InFlight {
    pub fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.counted {
            self.backend.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn passive_ejection_cools_down_then_probes() {
        let t = Timeouts {
            connect: Duration::from_secs(1),
            read: Duration::from_secs(1),
            write: Duration::from_secs(1),
            idle: Duration::from_secs(1),
        };
        let b = Backend::new("127.0.0.1:1".parse().unwrap(), &t);
        let passive = PassiveHealth {
            unhealthy_after: 2,
            cooldown: Duration::from_millis(50),
        };
        b.connect_failed(&passive);
        assert!(b.available(now_ms()), "one failure is not enough");
        b.connect_failed(&passive);
        assert!(
            !b.available(now_ms()),
            "ejected after unhealthy_after failures"
        );
        // After the cooldown it takes requests again (polled, not slept).
        let start = Instant::now();
        while !b.available(now_ms()) {
            assert!(start.elapsed() < Duration::from_secs(5), "never came back");
            std::thread::yield_now();
        }
        // The probe fails: ejected again at once. It succeeds: the streak ends.
        b.connect_failed(&passive);
        assert!(!b.available(now_ms()));
        b.connect_succeeded();
        assert!(b.available(now_ms()));
        b.connect_failed(&passive);
        assert!(b.available(now_ms()), "the streak restarted from zero");
    }
}
