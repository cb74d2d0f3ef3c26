//! The in-process GCRA limiter (governor), keyed by client.

use std::num::NonZeroU32;

use governor::{
    Quota as GQuota, RateLimiter,
    clock::{Clock, DefaultClock},
    state::keyed::DefaultKeyedStateStore,
};

use super::{Decision, Quota};

pub struct LocalLimiter {
    inner: RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock>,
    clock: DefaultClock,
}

impl LocalLimiter {
    pub fn new(q: Quota) -> Self {
        let per_second = NonZeroU32::new(q.per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(q.burst).unwrap_or(NonZeroU32::MIN);
        LocalLimiter {
            inner: RateLimiter::keyed(GQuota::per_second(per_second).allow_burst(burst)),
            clock: DefaultClock::default(),
        }
    }

    pub fn check(&self, key: &str) -> Decision {
        // The keyed store wants an owned key; clients are few compared to requests, and the
        // allocation is cheaper than a second lookup.
        match self.inner.check_key(&key.to_string()) {
            Ok(()) => Decision::Allow,
            Err(not_until) => Decision::Deny {
                retry_after: not_until.wait_time_from(self.clock.now()),
            },
        }
    }

    pub fn sweep(&self) {
        self.inner.retain_recent();
        self.inner.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_deny_per_key() {
        let l = LocalLimiter::new(Quota {
            per_second: 1,
            burst: 3,
        });
        for _ in 0..3 {
            assert_eq!(l.check("a"), Decision::Allow);
        }
        assert!(matches!(l.check("a"), Decision::Deny { .. }));
        assert_eq!(l.check("b"), Decision::Allow);
    }
}
