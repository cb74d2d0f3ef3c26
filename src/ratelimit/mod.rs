//! GCRA rate limits per client IP: in Redis when `REDIS_URL` is set (one limit shared by every
//! node), in-process otherwise, and in-process as a fallback while Redis is unreachable.

mod client_ip;
mod local;
mod redis;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio_util::sync::CancellationToken;

pub use client_ip::client_ip;
pub use local::LocalLimiter;
pub use redis::RedisLimiter;

use crate::observability::Metrics;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny { retry_after: Duration },
}

/// Requests per second and burst, the GCRA parameters.
#[derive(Debug, Clone, Copy)]
pub struct Quota {
    pub per_second: u32,
    pub burst: u32,
}

impl Quota {
    /// The time one request "costs".
    pub fn emission_interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / f64::from(self.per_second.max(1)))
    }
}

/// The limiter the HTTP layer uses: Redis first, the in-process limiter when Redis is absent or
/// unreachable. While in fallback a background probe returns to Redis by itself.
pub struct Limiter {
    quota: Quota,
    local: LocalLimiter,
    redis: Option<Arc<RedisLimiter>>,
    fallback: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
}

impl Limiter {
    pub fn local_only(quota: Quota, metrics: Arc<Metrics>) -> Self {
        Limiter {
            quota,
            local: LocalLimiter::new(quota),
            redis: None,
            fallback: Arc::new(AtomicBool::new(false)),
            metrics,
        }
    }

    /// A limiter backed by Redis; starts in fallback if Redis cannot be reached now.
    pub async fn with_redis(
        quota: Quota,
        url: &str,
        key_prefix: &str,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let redis = Arc::new(RedisLimiter::new(url, key_prefix, quota)?);
        let reachable = redis.ping().await.is_ok();
        let l = Limiter {
            quota,
            local: LocalLimiter::new(quota),
            redis: Some(redis),
            fallback: Arc::new(AtomicBool::new(false)),
            metrics,
        };
        if !reachable {
            l.enter_fallback("unreachable at start-up");
        }
        Ok(l)
    }

    pub fn quota(&self) -> Quota {
        self.quota
    }

    pub fn backend(&self) -> &'static str {
        match (&self.redis, self.in_fallback()) {
            (Some(_), false) => "redis",
            (Some(_), true) => "local-fallback",
            (None, _) => "local",
        }
    }

    pub fn in_fallback(&self) -> bool {
        self.fallback.load(Ordering::Relaxed)
    }

    pub async fn check(&self, key: &str) -> Decision {
        if let Some(redis) = &self.redis
            && !self.in_fallback()
        {
            match redis.check(key).await {
                Ok(d) => return self.record("redis", d),
                Err(e) => self.enter_fallback(&e.to_string()),
            }
        }
        let d = self.local.check(key);
        self.record("local", d)
    }

    fn record(&self, backend: &'static str, d: Decision) -> Decision {
        let outcome = match d {
            Decision::Allow => "allow",
            Decision::Deny { .. } => "deny",
        };
        self.metrics
            .ratelimit_decisions
            .with_label_values(&[backend, outcome])
            .inc();
        d
    }

    fn enter_fallback(&self, why: &str) {
        if !self.fallback.swap(true, Ordering::SeqCst) {
            tracing::warn!(error = %why, "redis rate limiter unreachable; using the in-process limiter until it returns");
            self.metrics.ratelimit_redis_fallback.set(1);
            self.metrics.ratelimit_fallback_transitions.inc();
        }
    }

    /// Spawns the probe that leaves fallback once Redis answers again. Ends on `cancel`.
    pub fn spawn_recovery(self: &Arc<Self>, cancel: CancellationToken) {
        let Some(redis) = self.redis.clone() else {
            return;
        };
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tick.tick() => {}
                }
                if this.in_fallback() && redis.ping().await.is_ok() {
                    this.fallback.store(false, Ordering::SeqCst);
                    this.metrics.ratelimit_redis_fallback.set(0);
                    tracing::info!("redis rate limiter reachable again; back to the shared limit");
                }
            }
        });
    }

    /// Drops idle in-process entries (bounded memory under many client IPs).
    pub fn sweep(&self) {
        self.local.sweep();
    }
}
