//! A deadline that moves often and mostly later (an idle connection's, a silent
//! backend's): moving it only stores an instant. The runtime's timer is moved when the
//! deadline comes earlier than the timer, and re-armed when the timer fires before the
//! deadline; so a connection serving requests back to back touches the timer wheel
//! once per timeout at most, not once per request.

use std::pin::Pin;

use tokio::time::{Instant, Sleep};

/// A deadline over a pinned [`Sleep`] that may run early, never late.
pub(crate) struct Deadline<'a> {
    timer: Pin<&'a mut Sleep>,
    at: Instant,
}

impl<'a> Deadline<'a> {
    /// A deadline at the timer's own.
    pub(crate) fn new(timer: Pin<&'a mut Sleep>) -> Self {
        let at = timer.deadline();
        Self { timer, at }
    }

    /// Moves the deadline to `at`.
    pub(crate) fn set(&mut self, at: Instant) {
        self.at = at;
        if at < self.timer.deadline() {
            self.timer.as_mut().reset(at);
        }
    }

    /// Resolves once the deadline has passed. Cancel-safe.
    pub(crate) async fn passed(&mut self) {
        loop {
            self.timer.as_mut().await;
            if Instant::now() >= self.at {
                return;
            }
            // The deadline moved on since the timer was set: wait for it.
            self.timer.as_mut().reset(self.at);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_deadline_moved_later_or_earlier_is_kept() {
        let start = Instant::now();
        let timer = tokio::time::sleep(Duration::from_secs(10));
        tokio::pin!(timer);
        let mut deadline = Deadline::new(timer);
        deadline.set(start + Duration::from_secs(30));
        deadline.passed().await;
        assert_eq!(Instant::now() - start, Duration::from_secs(30));
        deadline.set(Instant::now() + Duration::from_secs(5));
        deadline.passed().await;
        assert_eq!(Instant::now() - start, Duration::from_secs(35));
        // Earlier than the timer: it is moved.
        deadline.set(Instant::now() + Duration::from_secs(60));
        deadline.set(Instant::now() + Duration::from_secs(1));
        deadline.passed().await;
        assert_eq!(Instant::now() - start, Duration::from_secs(36));
    }
}
