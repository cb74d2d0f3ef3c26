//! `GET /` and `GET /health`: 200 while the database answers, 503 while it does not.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{Json, Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use chrono::{SubsecRound, Utc};
use tokio::sync::Mutex;

use crate::{app::AppState, http::dto::HealthResponse, observability::Metrics, store::Store};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(health))
        .route("/health", get(health))
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

/// Checks the database at most once per [`HealthMonitor::MAX_AGE`]; concurrent callers share
/// one check. A failed check is retried on the next call after that, so health recovers by
/// itself when the database returns.
pub struct HealthMonitor {
    last: Mutex<Option<(Instant, bool)>>,
    metrics: Arc<Metrics>,
}

impl HealthMonitor {
    pub const MAX_AGE: Duration = Duration::from_millis(500);
    const PING_TIMEOUT: Duration = Duration::from_secs(2);

    pub fn new(metrics: Arc<Metrics>) -> Self {
        HealthMonitor {
            last: Mutex::new(None),
            metrics,
        }
    }

    pub async fn database_up(&self, store: &dyn Store) -> bool {
        let mut last = self.last.lock().await;
        if let Some((at, up)) = *last
            && at.elapsed() < Self::MAX_AGE
        {
            return up;
        }
        let up = matches!(
            tokio::time::timeout(Self::PING_TIMEOUT, store.ping()).await,
            Ok(Ok(()))
        );
        if !up && last.is_none_or(|(_, was)| was) {
            tracing::warn!("database health check failed");
        }
        self.metrics.db_up.set(i64::from(up));
        *last = Some((Instant::now(), up));
        up
    }
}
