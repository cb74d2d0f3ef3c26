//! Webhook delivery (design section 7): workers drain the outbox that the store fills in the
//! same transaction as each event's persistence, one session at a time, in order, with retries,
//! signatures and dead letters.

pub mod deliver;
pub mod nats;
pub mod retry;
pub mod sign;
pub mod worker;

use std::time::Duration;

pub use worker::Dispatcher;

/// Delivery tuning, from the `WEBHOOK_*` variables (see `Config`).
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSettings {
    /// Worker tasks (`WEBHOOK_WORKERS`).
    pub workers: usize,
    /// Per-attempt timeout (`WEBHOOK_TIMEOUT`, seconds).
    pub timeout: Duration,
    /// Attempts before an event becomes a dead letter (`WEBHOOK_MAX_ATTEMPTS`).
    pub max_attempts: i32,
    /// First retry delay before jitter (`WEBHOOK_BASE_DELAY_MS`).
    pub base_delay: Duration,
    /// Longest retry delay (`WEBHOOK_MAX_DELAY`, seconds); also caps `Retry-After`.
    pub max_delay: Duration,
    /// How long delivered and skipped events are kept (`WEBHOOK_RETENTION`, seconds).
    pub retention: Duration,
    /// How often idle workers look for due events (`WEBHOOK_POLL_MS`).
    pub poll_interval: Duration,
    /// Events a worker takes from a session's queue per claim.
    pub batch: i64,
    /// Lets webhooks reach loopback, link-local, unspecified and multicast addresses
    /// (`WEBHOOK_ALLOW_PRIVATE_URLS`): a receiver on the same host, tests.
    pub allow_private_urls: bool,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            workers: 16,
            timeout: Duration::from_secs(10),
            max_attempts: 10,
            base_delay: Duration::from_millis(1000),
            max_delay: Duration::from_secs(300),
            retention: Duration::from_secs(24 * 3600),
            poll_interval: Duration::from_millis(200),
            batch: 100,
            allow_private_urls: false,
        }
    }
}
