//! This node's view of its own lease, on the monotonic clock.
//!
//! A renewal sent at `t` and committed by the leader holds there until at least `t + ttl` (the
//! leader stamps its own, later, time). Locally the lease counts as valid only until
//! `t + validity`, with `validity = ttl - renew - renew / 2`: the node gives up its shards
//! well before the leader may hand them to someone else. Validity is computed from
//! `Instant::now()` at every check, so a process that was frozen (SIGSTOP) and resumes sees its
//! lease as lost at once, whatever its timers say.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

/// Whether this node may act as the owner of its shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseState {
    Valid,
    Lost,
}

/// How long a renewal sent at `t` keeps the local lease valid.
pub fn local_validity(renew: Duration, ttl: Duration) -> Duration {
    ttl.saturating_sub(renew + renew / 2)
}

pub(crate) struct LeaseClock {
    validity: Duration,
    /// Local deadline of the lease (None: never renewed, or given up).
    deadline: Mutex<Option<Instant>>,
    tx: watch::Sender<LeaseState>,
    /// How many times a valid lease was lost since the process started.
    losses: AtomicU64,
}

impl LeaseClock {
    pub(crate) fn new(validity: Duration) -> Self {
        let (tx, _) = watch::channel(LeaseState::Lost);
        LeaseClock {
            validity,
            deadline: Mutex::new(None),
            tx,
            losses: AtomicU64::new(0),
        }
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<LeaseState> {
        self.tx.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.deadline.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A renewal that was sent at `sent_at` succeeded (and the local map has caught up with it).
    pub(crate) fn renewed(&self, sent_at: Instant) {
        let new = sent_at + self.validity;
        {
            let mut d = self.lock();
            if d.is_none_or(|d| d < new) {
                *d = Some(new);
            }
        }
        self.check();
    }

    /// Gives the lease up at once (e.g. the map no longer knows this node).
    pub(crate) fn lose(&self) {
        *self.lock() = None;
        self.check();
    }

    /// Gives the lease up because the node stops: not a loss (a rolling update is no alert).
    pub(crate) fn give_up(&self) {
        *self.lock() = None;
        self.publish(LeaseState::Lost, false);
    }

    /// Is the lease valid right now (fresh look at the clock)?
    pub(crate) fn is_valid_now(&self) -> bool {
        self.lock().is_some_and(|d| Instant::now() < d)
    }

    /// Time left before the local lease runs out.
    pub(crate) fn remaining(&self) -> Duration {
        self.lock()
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or_default()
    }

    /// How many times a valid lease was lost since the process started (an operator's alert: a
    /// healthy node should never lose its lease).
    pub(crate) fn losses(&self) -> u64 {
        self.losses.load(Ordering::Relaxed)
    }

    /// Re-evaluates the lease and publishes a change; returns the current state.
    pub(crate) fn check(&self) -> LeaseState {
        let state = if self.is_valid_now() {
            LeaseState::Valid
        } else {
            LeaseState::Lost
        };
        self.publish(state, true);
        state
    }

    /// Publishes `state` if it changed; a valid lease lost counts when `count` says so.
    fn publish(&self, state: LeaseState, count: bool) {
        self.tx.send_if_modified(|s| {
            if *s != state {
                if count && *s == LeaseState::Valid {
                    self.losses.fetch_add(1, Ordering::Relaxed);
                }
                *s = state;
                true
            } else {
                false
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_frozen_process_sees_its_lease_lost_on_wake() {
        let lease = LeaseClock::new(Duration::from_millis(100));
        let rx = lease.subscribe();
        assert_eq!(*rx.borrow(), LeaseState::Lost, "no renewal yet");
        lease.renewed(Instant::now());
        assert_eq!(lease.check(), LeaseState::Valid);
        assert_eq!(*rx.borrow(), LeaseState::Valid);
        // Block the only runtime thread, as SIGSTOP would: no timer or task runs meanwhile.
        std::thread::sleep(Duration::from_millis(150));
        // The first look at the clock after waking says Lost, whatever the timers did.
        assert!(!lease.is_valid_now());
        assert_eq!(lease.check(), LeaseState::Lost);
        assert_eq!(*rx.borrow(), LeaseState::Lost);
    }

    #[tokio::test]
    async fn validity_counts_from_when_the_renewal_was_sent() {
        let lease = LeaseClock::new(Duration::from_millis(100));
        lease.renewed(Instant::now() - Duration::from_millis(150));
        assert_eq!(
            lease.check(),
            LeaseState::Lost,
            "a renewal that took too long grants nothing"
        );
        lease.renewed(Instant::now());
        let left = lease.remaining();
        assert!(left > Duration::from_millis(50) && left <= Duration::from_millis(100));
        // An older renewal never shortens the lease.
        lease.renewed(Instant::now() - Duration::from_millis(90));
        assert!(lease.remaining() >= left - Duration::from_millis(20));
        lease.lose();
        assert_eq!(lease.check(), LeaseState::Lost);
        assert_eq!(
            local_validity(Duration::from_secs(2), Duration::from_secs(10)),
            Duration::from_secs(7)
        );
    }
}
