//! The cluster over HTTP.
//!
//! - `POST /cluster/{*rest}`: node-to-node endpoints (Raft append/vote/snapshot, writes sent to
//!   the leader, joins), authenticated with `CLUSTER_SECRET`, never rate-limited; the
//!   `onwapp-cluster` crate serves them.
//! - `GET /admin/cluster` (global key): nodes, leader, term, leases, shards per node, moves in
//!   flight, as this node sees them.
//! - `POST /admin/drain` (global key): hands every shard of this node to the others (planned
//!   handoffs: the sessions disconnect here and connect there) and answers when done;
//!   `POST /admin/undrain` takes shards again. Kubernetes calls drain in `preStop`.

use std::time::Duration;

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    app::AppState,
    auth::Principal,
    error::{ApiError, ApiResult},
    http::extract::Caller,
};

/// The node-to-node endpoints (outside authentication and rate limits).
pub fn internal_router() -> Router<AppState> {
    Router::new().route("/cluster/{*rest}", post(rpc))
}

/// The operator's routes (global key).
pub fn admin_router() -> Router<AppState> {
    Router::new()
        .route("/admin/cluster", get(status))
        .route("/admin/drain", post(drain))
        .route("/admin/undrain", post(undrain))
}

async fn rpc(State(s): State<AppState>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let node = s.shards.node();
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !node.verify_secret(auth) {
        return ApiError::Unauthorized("cluster secret required").into_response();
    }
    let Some(kind) = onwapp_cluster::RpcKind::from_path(uri.path()) else {
        return ApiError::NotFound(format!("no cluster endpoint {}", uri.path())).into_response();
    };
    match node.handle_rpc(kind, &body).await {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => {
            let code =
                StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (code, Json(json!({ "error": e.to_string() }))).into_response()
        }
    }
}

fn global_only(who: &Principal) -> Result<(), ApiError> {
    if *who != Principal::Global {
        return Err(ApiError::Forbidden("global API key required"));
    }
    Ok(())
}

async fn status(State(s): State<AppState>, Caller(who): Caller) -> ApiResult<Json<Value>> {
    global_only(&who)?;
    let status = s.shards.node().status();
    Ok(Json(
        serde_json::to_value(status).map_err(|e| ApiError::Internal(e.into()))?,
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DrainRequest {
    /// How long to wait for the handoffs (default 60 s, at most 600).
    timeout_seconds: Option<u64>,
}

async fn drain(
    State(s): State<AppState>,
    Caller(who): Caller,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    global_only(&who)?;
    let req: DrainRequest = if body.iter().all(u8::is_ascii_whitespace) {
        DrainRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("invalid request body: {e}")))?
    };
    let secs = match req.timeout_seconds {
        None => 60,
        Some(n @ 1..=600) => n,
        Some(_) => {
            return Err(ApiError::BadRequest(
                "invalid value for field 'timeoutSeconds': must be from 1 to 600".into(),
            ));
        }
    };
    let report = s.shards.node().drain(Duration::from_secs(secs)).await?;
    Ok(Json(json!({
        "nodeId": s.shards.node_id(),
        "shardsBefore": report.shards_before,
        "shardsRemaining": report.shards_remaining,
        "timedOut": report.timed_out,
        "elapsedMs": report.elapsed.as_millis() as u64,
        "done": !report.timed_out && report.shards_remaining == 0,
    })))
}

async fn undrain(State(s): State<AppState>, Caller(who): Caller) -> ApiResult<Json<Value>> {
    global_only(&who)?;
    s.shards.node().undrain().await?;
    Ok(Json(
        json!({ "nodeId": s.shards.node_id(), "draining": false }),
    ))
}
