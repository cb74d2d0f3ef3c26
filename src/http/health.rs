//! `GET /` and `GET /health`: 200 while the database answers, 503 while it does not.
//!
//! The probes a load balancer or Kubernetes uses (extensions to the contract, no key):
//! - `GET /health/live`: 200 while the process serves requests (liveness: restarting it would
//!   not fix a database that is down, so the database is not asked).
//! - `GET /health/ready`: 200 while this node should take client traffic: a member of the
//!   cluster, its Raft log applied, not draining; else 503 with the reasons (readiness). The
//!   leader and the lease are reported, not required (`onwapp_cluster::Readiness`).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Json, Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use chrono::{SubsecRound, Utc};
use tokio::sync::Mutex;

use crate::{
    app::AppState,
    http::dto::{HealthResponse, LiveResponse, ReadyResponse},
    observability::Metrics,
    store::Store,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(health))
        .route("/health", get(health))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
}

async fn live() -> Json<LiveResponse> {
    Json(LiveResponse {
        status: "alive".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

async fn ready(State(s): State<AppState>) -> impl IntoResponse {
    let r = s.shards.node().readiness();
    let ready = r.ready();
    let body = ReadyResponse {
        status: if ready { "ready" } else { "not ready" }.into(),
        node_id: s.shards.node_id(),
        leader: r.leader,
        lease_valid: r.lease_valid,
        reasons: r.reasons().into_iter().map(String::from).collect(),
    };
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}

async fn health(State(s): State<AppState>) -> impl IntoResponse {
    let up = s.health.database_up(&*s.store).await;
    let body = HealthResponse {
        status: if up { "healthy" } else { "degraded" }.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        database: if up { "connected" } else { "disconnected" }.into(),
        time: Utc::now().trunc_subsecs(0),
    };
    let code = if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}

/// Checks the database at most once per [`HealthMonitor::MAX_AGE`]. Readers never wait on each
/// other: one caller refreshes a stale answer while the others use the last one. A failed check
/// is retried after `MAX_AGE`, so health recovers by itself when the database returns.
pub struct HealthMonitor {
    epoch: Instant,
    /// Milliseconds since `epoch` of the last check, plus one (0: never checked).
    checked_at: AtomicU64,
    up: AtomicBool,
    refreshing: Mutex<()>,
    metrics: Arc<Metrics>,
}

impl HealthMonitor {
    pub const MAX_AGE: Duration = Duration::from_millis(500);
    const PING_TIMEOUT: Duration = Duration::from_secs(2);

    pub fn new(metrics: Arc<Metrics>) -> Self {
        HealthMonitor {
            epoch: Instant::now(),
            checked_at: AtomicU64::new(0),
            up: AtomicBool::new(false),
            refreshing: Mutex::new(()),
            metrics,
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    pub async fn database_up(&self, store: &dyn Store) -> bool {
        let checked = self.checked_at.load(Ordering::Acquire);
        let fresh = checked != 0 && self.now_ms() - checked < Self::MAX_AGE.as_millis() as u64;
        if fresh {
            return self.up.load(Ordering::Acquire);
        }
        // The first caller to see a stale answer refreshes it; the rest keep the last one,
        // except before the very first check, where they wait for it.
        let _guard = match self.refreshing.try_lock() {
            Ok(g) => g,
            Err(_) if checked != 0 => return self.up.load(Ordering::Acquire),
            Err(_) => {
                let g = self.refreshing.lock().await;
                if self.checked_at.load(Ordering::Acquire) != 0 {
                    return self.up.load(Ordering::Acquire);
                }
                g
            }
        };
        let up = matches!(
            tokio::time::timeout(Self::PING_TIMEOUT, store.ping()).await,
            Ok(Ok(()))
        );
        let was = self.up.swap(up, Ordering::AcqRel);
        if !up && (was || checked == 0) {
            tracing::warn!("database health check failed");
        } else if up && !was && checked != 0 {
            tracing::info!("database reachable again");
        }
        self.metrics.db_up.set(i64::from(up));
        self.checked_at.store(self.now_ms(), Ordering::Release);
        up
    }
}
