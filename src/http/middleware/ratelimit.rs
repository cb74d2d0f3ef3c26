//! 429 with `Retry-After` once a client IP spends its GCRA budget.

use std::net::SocketAddr;

use axum::{
    extract::{ConnectInfo, Request, State},
    middleware::Next,
    response::Response,
};

use crate::{
    app::AppState,
    error::ApiError,
    ratelimit::{Decision, client_ip},
};

pub async fn rate_limit(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let key = client_ip(peer, req.headers(), &state.config.trusted_proxies)
        .map(|ip| ip.to_string())
        .unwrap_or_else(|| "unknown".into());
    match state.limiter.check(&key).await {
        Decision::Allow => Ok(next.run(req).await),
        Decision::Deny { retry_after } => Err(ApiError::RateLimited {
            retry_after_secs: retry_after.as_secs_f64().ceil() as u64,
            limit: state.limiter.quota().per_second,
        }),
    }
}
