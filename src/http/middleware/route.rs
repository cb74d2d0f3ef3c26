//! Runs inside routing, where the matched route template is known: hands the template outwards
//! for metrics, spends the client's rate-limit budget (429 with `Retry-After`), and sends a
//! session's request to the node that owns the session (`shards::forward`).

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
    shards::forward,
};

/// The route template that served a response.
#[derive(Clone)]
pub struct RouteTemplate(pub String);

/// Marks the answer to a request a member forwarded here: counted by the node it entered, so
/// the HTTP metrics summed over the cluster count each client request once.
#[derive(Clone, Copy)]
pub struct MemberRequest;

/// Routes the scraper must always reach.
const UNLIMITED: &[&str] = &["/metrics"];

pub async fn route(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let session = template
        .as_deref()
        .and_then(|t| forward::session_of(t, req.uri().path()));
    let mut resp = match session {
        // Forwarded by a member: served here if this node still owns the session, never
        // forwarded again, and not rate-limited twice.
        Some(name) if state.shards.is_member_request(req.headers()) => {
            let (outcome, mut resp) =
                match forward::misdirected_here(&state.shards, &name, req.headers()).await {
                    Ok(epoch) => ("served", forward::serve_here(epoch, req, next).await),
                    Err(misdirected) => ("misdirected", misdirected),
                };
            state
                .metrics
                .cluster_member_requests
                .with_label_values(&[outcome])
                .inc();
            // The entry node counts it in the HTTP metrics, with the latency its client saw.
            resp.extensions_mut().insert(MemberRequest);
            resp
        }
        session => {
            let limited = template.as_deref().is_none_or(|t| !UNLIMITED.contains(&t));
            let allowed = if limited {
                check(&state, &client_key(&state, &req)).await
            } else {
                Ok(())
            };
            match (allowed, session) {
                (Err(e), _) => e.into_response(),
                (Ok(()), Some(name)) => {
                    forward::serve_or_forward(&state.shards, &name, req, next).await
                }
                (Ok(()), None) => next.run(req).await,
            }
        }
    };
    if let Some(t) = template {
        if forward::session_of(&t, "/x").is_some() && !resp.headers().contains_key(SERVED_BY) {
            // Which node served a session's request (a forwarded answer keeps the owner's).
            resp.headers_mut()
                .insert(SERVED_BY, http::HeaderValue::from(state.shards.node_id()));
        }
        resp.extensions_mut().insert(RouteTemplate(t));
    }
    resp
}

/// Response header naming the node that served a session's request.
pub const SERVED_BY: &str = "x-onwapp-served-by";

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
