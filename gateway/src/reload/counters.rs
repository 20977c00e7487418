//! Routes' live counts (rate-limit buckets, requests in flight), carried from one
//! snapshot to the next for every route whose label and policy stay the same: a reload
//! (a config edit, a certificate rotation) neither resets a limit nor forgets the
//! requests in flight.

use std::collections::HashMap;
use std::sync::Arc;

use crate::ratelimit::SharedLink;
use crate::routes::filters::in_flight::InFlightLimit;
use crate::routes::filters::rate_limit::{Limiter, RateLimit};

#[derive(Debug, Default)]
pub(super) struct RouteCounters {
    limiters: HashMap<(String, RateLimit), Arc<Limiter>>,
    /// The link the limiters share through (`[rate_limit] shared`), if any.
    link: Option<Arc<SharedLink>>,
    in_flight: HashMap<(String, u32), Arc<InFlightLimit>>,
}

impl RouteCounters {
    /// The link of this build's limiters.
    pub(super) fn link(&self) -> Option<&Arc<SharedLink>> {
        self.link.as_ref()
    }

    /// Counters for a build whose limiters share through `link`.
    pub(super) fn with_link(link: Option<Arc<SharedLink>>) -> Self {
        Self {
            link,
            ..Self::default()
        }
    }

    /// The limiter of route `label` with `policy` in the snapshot being built (`self`):
    /// the one `old` had, unless another route of this build took it already or the
    /// link it shares through changed.
    pub(super) fn limiter(
        &mut self,
        old: &mut Self,
        label: &str,
        policy: &RateLimit,
    ) -> Arc<Limiter> {
        let key = (label.to_owned(), policy.clone());
        let fresh = || match &self.link {
            Some(link) => Limiter::shared(policy.clone(), label, link),
            None => Arc::new(Limiter::new(policy.clone())),
        };
        if self.limiters.contains_key(&key) {
            return fresh();
        }
        let same_link = |l: &Arc<Limiter>| match (l.link(), &self.link) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        let limiter = old
            .limiters
            .remove(&key)
            .filter(same_link)
            .unwrap_or_else(fresh);
        self.limiters.insert(key, limiter.clone());
        limiter
    }

    /// The in-flight count of route `label` with bound `max`, as [`Self::limiter`].
    pub(super) fn in_flight(
        &mut self,
        old: &mut Self,
        label: &str,
        max: u32,
    ) -> Arc<InFlightLimit> {
        let key = (label.to_owned(), max);
        if self.in_flight.contains_key(&key) {
            return Arc::new(InFlightLimit::new(max));
        }
        let count = old
            .in_flight
            .remove(&key)
            .unwrap_or_else(|| Arc::new(InFlightLimit::new(max)));
        self.in_flight.insert(key, count.clone());
        count
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::routes::filters::rate_limit::RateKey;

    fn policy(requests: u32) -> RateLimit {
        RateLimit {
            requests,
            per: Duration::from_secs(1),
            burst: 0,
            key: RateKey::Global,
        }
    }

    #[test]
    fn counts_carry_over_while_label_and_policy_stay() {
        let mut old = RouteCounters::default();
        let mut first = RouteCounters::default();
        let a = first.limiter(&mut old, "/a", &policy(5));
        let slot = first.in_flight(&mut old, "/a", 3);
        let mut second = RouteCounters::default();
        assert!(Arc::ptr_eq(
            &a,
            &second.limiter(&mut first, "/a", &policy(5))
        ));
        assert!(Arc::ptr_eq(&slot, &second.in_flight(&mut first, "/a", 3)));
        // Another route with the same label and policy gets its own.
        assert!(!Arc::ptr_eq(
            &a,
            &second.limiter(&mut first, "/a", &policy(5))
        ));
        // A new policy or a new bound starts afresh.
        let mut third = RouteCounters::default();
        assert!(!Arc::ptr_eq(
            &a,
            &third.limiter(&mut second, "/a", &policy(6))
        ));
        assert!(!Arc::ptr_eq(&slot, &third.in_flight(&mut second, "/a", 4)));
    }
}
