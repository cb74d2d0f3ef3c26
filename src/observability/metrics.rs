//! Every metric of the process in one registry (one per `App`, so tests never share counters).

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub ratelimit_decisions: IntCounterVec,
    pub ratelimit_redis_fallback: IntGauge,
    pub ratelimit_fallback_transitions: IntCounter,
    pub db_up: IntGauge,
    /// Webhook events waiting for delivery (pending outbox rows).
    pub webhook_queue_depth: IntGauge,
    /// Webhook events parked as dead letters.
    pub webhook_dead_letters: IntGauge,
    /// Delivery attempts by outcome: delivered, retried, dead, skipped.
    pub webhook_attempts: IntCounterVec,
    /// Seconds from an event's enqueue to its delivery.
    pub webhook_latency: prometheus::Histogram,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("onwapp".into()), None).unwrap_or_default();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route template, method and status",
            ),
            &["method", "route", "status"],
        )
        .expect("static metric definition");
        let http_duration = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency").buckets(
                vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
                ],
            ),
            &["method", "route", "status"],
        )
        .expect("static metric definition");
        let ratelimit_decisions = IntCounterVec::new(
            Opts::new(
                "ratelimit_decisions_total",
                "Rate-limit decisions by backend and outcome",
            ),
            &["backend", "decision"],
        )
        .expect("static metric definition");
        let ratelimit_redis_fallback = IntGauge::new(
            "ratelimit_redis_fallback",
            "1 while Redis is unreachable and the in-process limiter is used",
        )
        .expect("static metric definition");
        let ratelimit_fallback_transitions = IntCounter::new(
            "ratelimit_redis_fallback_transitions_total",
            "Times the limiter fell back from Redis to the in-process limiter",
        )
        .expect("static metric definition");
        let db_up = IntGauge::new("database_up", "1 when the last database check succeeded")
            .expect("static metric definition");
        let webhook_queue_depth =
            IntGauge::new("webhook_queue_depth", "Webhook events waiting for delivery")
                .expect("static metric definition");
        let webhook_dead_letters = IntGauge::new(
            "webhook_dead_letters",
            "Webhook events parked as dead letters",
        )
        .expect("static metric definition");
        let webhook_attempts = IntCounterVec::new(
            Opts::new(
                "webhook_attempts_total",
                "Webhook delivery attempts by outcome (delivered, retried, dead, skipped)",
            ),
            &["outcome"],
        )
        .expect("static metric definition");
        let webhook_latency = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "webhook_delivery_latency_seconds",
                "Time from an event's enqueue to its delivery",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 300.0, 3600.0,
            ]),
        )
        .expect("static metric definition");
        for c in [
            Box::new(webhook_queue_depth.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(webhook_dead_letters.clone()),
            Box::new(webhook_attempts.clone()),
            Box::new(webhook_latency.clone()),
            Box::new(http_requests.clone()),
            Box::new(http_duration.clone()),
            Box::new(ratelimit_decisions.clone()),
            Box::new(ratelimit_redis_fallback.clone()),
            Box::new(ratelimit_fallback_transitions.clone()),
            Box::new(db_up.clone()),
        ] {
            registry.register(c).expect("metric registered once");
        }
        Metrics {
            registry,
            http_requests,
            http_duration,
            ratelimit_decisions,
            ratelimit_redis_fallback,
            ratelimit_fallback_transitions,
            db_up,
            webhook_queue_depth,
            webhook_dead_letters,
            webhook_attempts,
            webhook_latency,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "encoding metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
