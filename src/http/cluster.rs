//! The cluster over HTTP.
//!
//! - `POST /cluster/{*rest}`: node-to-node endpoints (Raft append/vote/snapshot, writes sent to
//!   the leader, joins), authenticated with `CLUSTER_SECRET`, never rate-limited; the
//!   `onwapp-cluster` crate serves them.
//! - `GET /admin/cluster` (global key): nodes, leader, term, leases, shards per node, moves in
//!   flight, as this node sees them (camelCase: the crate's status mapped to
//!   [`ClusterStatusResponse`]).
//! - `POST /admin/drain` (global key): hands every shard of this node to the others (planned
//!   handoffs: the sessions disconnect here and connect there) and answers when done;
//!   `POST /admin/undrain` takes shards again. Kubernetes calls drain in `preStop`.
//!
//! The three operator routes are in the endpoint catalog, hence in the OpenAPI document.

use std::{net::SocketAddr, time::Duration};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{ConnectInfo, Request, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::json;

use crate::{
    app::AppState,
    auth::{FailedAttempts, Principal},
    error::{ApiError, ApiResult},
    http::{
        dto::{ClusterStatusResponse, DrainRequest, DrainResponse, UndrainResponse},
        extract::Caller,
    },
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

/// The largest node-to-node body: Raft appends, votes, writes sent to the leader and snapshots
/// of the shard map (1,024 shards and the members: well under a megabyte).
pub const MAX_RPC_BODY: usize = 16 * 1024 * 1024;

/// Checks the secret from the headers before reading a byte of the body (a stranger's upload
/// is refused at once, whatever its size), refuses an address that keeps failing (429), and
/// reads at most [`MAX_RPC_BODY`].
async fn rpc(State(s): State<AppState>, req: Request) -> Response {
    let node = s.shards.node();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(left) = peer.and_then(|ip| s.cluster_auth_failures.refused(ip)) {
        return ApiError::RateLimited {
            retry_after_secs: left.as_secs().max(1),
            limit: FailedAttempts::LIMIT,
        }
        .into_response();
    }
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !s.shards.over_member_channel(req.extensions()) {
        return ApiError::Unauthorized("cluster calls go over TLS (https://)").into_response();
    }
    if !node.verify_secret(auth) {
        if let Some(ip) = peer {
            s.cluster_auth_failures.failed(ip);
        }
        return ApiError::Unauthorized("cluster secret required").into_response();
    }
    let Some(kind) = onwapp_cluster::RpcKind::from_path(req.uri().path()) else {
        return ApiError::NotFound(format!("no cluster endpoint {}", req.uri().path()))
            .into_response();
    };
    let body = match axum::body::to_bytes(req.into_body(), MAX_RPC_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::PayloadTooLarge {
                limit: MAX_RPC_BODY,
            }
            .into_response();
        }
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

async fn status(
    State(s): State<AppState>,
    Caller(who): Caller,
) -> ApiResult<Json<ClusterStatusResponse>> {
    global_only(&who)?;
    Ok(Json(s.shards.node().status().into()))
}

async fn drain(
    State(s): State<AppState>,
    Caller(who): Caller,
    body: Bytes,
) -> ApiResult<Json<DrainResponse>> {
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
    Ok(Json(DrainResponse {
        node_id: s.shards.node_id(),
        shards_before: report.shards_before,
        shards_remaining: report.shards_remaining,
        timed_out: report.timed_out,
        elapsed_ms: u64::try_from(report.elapsed.as_millis()).unwrap_or(u64::MAX),
        done: !report.timed_out && report.shards_remaining == 0,
    }))
}

async fn undrain(
    State(s): State<AppState>,
    Caller(who): Caller,
) -> ApiResult<Json<UndrainResponse>> {
    global_only(&who)?;
    s.shards.node().undrain().await?;
    Ok(Json(UndrainResponse {
        node_id: s.shards.node_id(),
        draining: false,
    }))
}
