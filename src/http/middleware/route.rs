//! Runs inside routing, where the matched route template is known: hands the template outwards
//! for metrics, and spends the client's rate-limit budget (429 with `Retry-After`).

use std::net::SocketAddr;

use axum::{
    extract::{ConnectInfo, MatchedPath, Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{
    app::AppState,
    error::ApiError,
    ratelimit::{Decision, client_ip},
};

/// The route template that served a response.
#[derive(Clone)]
pub struct RouteTemplate(pub String);

/// Routes the scraper must always reach.
const UNLIMITED: &[&str] = &["/metrics"];

pub async fn route(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let limited = template.as_deref().is_none_or(|t| !UNLIMITED.contains(&t));
    let mut resp = if limited {
        let key = client_key(&state, &req);
        match check(&state, &key).await {
            Ok(()) => next.run(req).await,
            Err(e) => e.into_response(),
        }
    } else {
        next.run(req).await
    };
    if let Some(t) = template {
        resp.extensions_mut().insert(RouteTemplate(t));
    }
    resp
}

/// The rate-limit key: the client's IP.
fn client_key(state: &AppState, req: &Request) -> String {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    client_ip(peer, req.headers(), &state.config.trusted_proxies)
        .map(|ip| ip.to_string())
        .unwrap_or_else(|| "unknown".into())
}

async fn check(state: &AppState, key: &str) -> Result<(), ApiError> {
    match state.limiter.check(key).await {
        Decision::Allow => Ok(()),
        Decision::Deny { retry_after } => Err(ApiError::RateLimited {
            retry_after_secs: retry_after.as_secs_f64().ceil() as u64,
            limit: state.limiter.quota().per_second,
        }),
    }
}
