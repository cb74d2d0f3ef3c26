//! Every metric of the process in one registry (one per `App`, so tests never share counters).

use std::sync::atomic::{AtomicU64, Ordering};

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
    /// The cluster as this node sees it (set at each scrape).
    pub cluster: ClusterGauges,
    /// Each try of the entry node to forward a request, by outcome.
    pub cluster_forwards: IntCounterVec,
    /// Requests forwarded here by a member, by outcome (served, misdirected).
    pub cluster_member_requests: IntCounterVec,
    /// Ownership events this node handled (acquired, releasing, lost).
    pub cluster_shard_events: IntCounterVec,
    /// Sessions whose client runs on this node, by state (set at each scrape).
    pub sessions: prometheus::IntGaugeVec,
}

/// Gauges read off the cluster node when `/metrics` is scraped.
pub struct ClusterGauges {
    pub term: IntGauge,
    pub is_leader: IntGauge,
    pub leader: IntGauge,
    pub last_applied: IntGauge,
    pub lease_valid: IntGauge,
    pub lease_remaining: prometheus::Gauge,
    /// A counter in effect (it only grows, from the cluster's own count); alert on any increase.
    pub lease_losses: IntCounter,
    /// The cluster's count as of the last scrape.
    lease_losses_seen: AtomicU64,
    pub shards_owned: IntGauge,
    pub shards_unassigned: IntGauge,
    pub moves_in_flight: IntGauge,
    pub node_shards: prometheus::IntGaugeVec,
    pub node_lease_remaining: prometheus::GaugeVec,
    /// 1 while this node passes its readiness check (`GET /health/ready`).
    pub ready: IntGauge,
    pub last_log_index: IntGauge,
    pub members: IntGauge,
    pub voters: IntGauge,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("onwapp".into()), None).unwrap_or_default();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests from clients by route template, method and status (a forwarded \
                 request is counted once, by the node it entered)",
            ),
            &["method", "route", "status"],
        )
        .expect("static metric definition");
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency as clients see it (forwarded: measured where it entered)",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ]),
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
        let cluster = ClusterGauges::new();
        let cluster_forwards = IntCounterVec::new(
            Opts::new(
                "cluster_forwards_total",
                "Tries to forward a request to the session's owner, by outcome (relayed, \
                 misdirected, unreachable, owner_gone, served_here, no_owner, gave_up)",
            ),
            &["outcome"],
        )
        .expect("static metric definition");
        let cluster_member_requests = IntCounterVec::new(
            Opts::new(
                "cluster_member_requests_total",
                "Requests another node forwarded here, by outcome (served, misdirected)",
            ),
            &["outcome"],
        )
        .expect("static metric definition");
        let cluster_shard_events = IntCounterVec::new(
            Opts::new(
                "cluster_shard_events_total",
                "Ownership events this node handled (acquired, releasing, lost)",
            ),
            &["event"],
        )
        .expect("static metric definition");
        let sessions = prometheus::IntGaugeVec::new(
            Opts::new(
                "sessions",
                "Sessions whose WhatsApp client runs on this node, by state (connecting, \
                 connected, disconnected)",
            ),
            &["state"],
        )
        .expect("static metric definition");
        let engine = &crate::engine::metrics::ENGINE;
        engine.touch();
        for c in engine.collectors() {
            registry.register(c).expect("metric registered once");
        }
        for c in cluster.collectors().into_iter().chain([
            Box::new(sessions.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(cluster_forwards.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(cluster_member_requests.clone()),
            Box::new(cluster_shard_events.clone()),
        ]) {
            registry.register(c).expect("metric registered once");
        }
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
        // Series dashboards and alerts read exist from the start, at zero.
        for o in ["delivered", "retried", "dead", "skipped"] {
            webhook_attempts.with_label_values(&[o]);
        }
        for e in ["acquired", "releasing", "lost"] {
            cluster_shard_events.with_label_values(&[e]);
        }
        for o in [
            "relayed",
            "misdirected",
            "unreachable",
            "owner_gone",
            "outcome_unknown",
            "served_here",
            "no_owner",
            "gave_up",
        ] {
            cluster_forwards.with_label_values(&[o]);
        }
        for o in ["served", "misdirected"] {
            cluster_member_requests.with_label_values(&[o]);
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
            cluster,
            cluster_forwards,
            cluster_member_requests,
            cluster_shard_events,
            sessions,
        }
    }

    /// Sets the gauges read at scrape time: the cluster as this node sees it, its readiness
    /// and the sessions by state.
    pub fn observe(&self, node: &onwapp_cluster::Node, sessions: &[(crate::engine::State, usize)]) {
        self.cluster.observe(&node.status());
        self.cluster.ready.set(i64::from(node.readiness().ready()));
        for (state, n) in sessions {
            self.sessions
                .with_label_values(&[state.as_str()])
                .set(*n as i64);
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

impl ClusterGauges {
    fn new() -> Self {
        let int = |name: &str, help: &str| IntGauge::new(name, help).expect("static metric");
        ClusterGauges {
            term: int("cluster_raft_term", "The Raft term this node is in"),
            is_leader: int(
                "cluster_is_leader",
                "1 while this node leads the Raft group",
            ),
            leader: int(
                "cluster_leader_id",
                "The node id of the Raft leader this node knows (0: none)",
            ),
            last_applied: int(
                "cluster_last_applied_index",
                "Index of the last Raft log entry applied to this node's shard map",
            ),
            lease_valid: int(
                "cluster_lease_valid",
                "1 while this node's own lease is valid",
            ),
            lease_remaining: prometheus::Gauge::new(
                "cluster_lease_remaining_seconds",
                "Local lease validity left (0 when lost)",
            )
            .expect("static metric"),
            lease_losses: IntCounter::new(
                "cluster_lease_losses_total",
                "Times this node's valid lease ran out or was given up (a healthy node: never)",
            )
            .expect("static metric"),
            lease_losses_seen: AtomicU64::new(0),
            shards_owned: int(
                "cluster_shards_owned",
                "Shards this node serves (owned in the map, lease valid)",
            ),
            shards_unassigned: int(
                "cluster_shards_unassigned",
                "Shards without an owner in this node's map",
            ),
            moves_in_flight: int(
                "cluster_moves_in_flight",
                "Planned handoffs in progress in this node's map",
            ),
            node_shards: prometheus::IntGaugeVec::new(
                Opts::new(
                    "cluster_node_shards",
                    "Shards each member owns, as this node's map says",
                ),
                &["node"],
            )
            .expect("static metric"),
            node_lease_remaining: prometheus::GaugeVec::new(
                Opts::new(
                    "cluster_node_lease_remaining_seconds",
                    "Lease left of each member, as this node's map says (negative: expired)",
                ),
                &["node"],
            )
            .expect("static metric"),
            ready: int(
                "cluster_node_ready",
                "1 while this node passes its readiness check (member, caught up, not \
                 draining)",
            ),
            last_log_index: int(
                "cluster_raft_last_log_index",
                "Index of the last Raft log entry this node received",
            ),
            members: int(
                "cluster_members",
                "Members in this node's shard map (alive or not)",
            ),
            voters: int("cluster_raft_voters", "Raft voters in the membership"),
        }
    }

    fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.term.clone()),
            Box::new(self.is_leader.clone()),
            Box::new(self.leader.clone()),
            Box::new(self.last_applied.clone()),
            Box::new(self.lease_valid.clone()),
            Box::new(self.lease_remaining.clone()),
            Box::new(self.lease_losses.clone()),
            Box::new(self.shards_owned.clone()),
            Box::new(self.shards_unassigned.clone()),
            Box::new(self.moves_in_flight.clone()),
            Box::new(self.node_shards.clone()),
            Box::new(self.node_lease_remaining.clone()),
            Box::new(self.ready.clone()),
            Box::new(self.last_log_index.clone()),
            Box::new(self.members.clone()),
            Box::new(self.voters.clone()),
        ]
    }

    /// Sets every gauge from the node's view of the cluster.
    pub fn observe(&self, st: &onwapp_cluster::status::ClusterStatus) {
        let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.term.set(int(st.term));
        self.is_leader.set(i64::from(st.leader == Some(st.node_id)));
        self.leader.set(st.leader.map_or(0, int));
        self.last_applied.set(int(st.last_applied));
        let valid = st.lease == onwapp_cluster::LeaseState::Valid;
        self.lease_valid.set(i64::from(valid));
        self.lease_remaining.set(if valid {
            st.lease_left_ms as f64 / 1000.0
        } else {
            0.0
        });
        // The cluster counts; the metric catches up with it, once per increase however many
        // scrapes run at once.
        let before = self
            .lease_losses_seen
            .fetch_max(st.lease_losses, Ordering::Relaxed);
        if st.lease_losses > before {
            self.lease_losses.inc_by(st.lease_losses - before);
        }
        self.shards_owned.set(st.owned_shards as i64);
        self.shards_unassigned.set(st.unassigned as i64);
        self.moves_in_flight.set(st.moves_in_flight as i64);
        self.last_log_index.set(int(st.last_log_index));
        self.members.set(st.nodes.len() as i64);
        self.voters
            .set(st.nodes.iter().filter(|n| n.voter).count() as i64);
        // Members that left the map leave the metric too.
        self.node_shards.reset();
        self.node_lease_remaining.reset();
        for n in &st.nodes {
            let id = n.id.to_string();
            self.node_shards
                .with_label_values(&[id.as_str()])
                .set(n.shards as i64);
            self.node_lease_remaining
                .with_label_values(&[id.as_str()])
                .set(n.lease_remaining_ms as f64 / 1000.0);
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
