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
    auth::FailedAttempts,
    error::ApiError,
    ratelimit::{Decision, client_ip},
    shards::{FORWARDED_BY, ROUTE, forward},
};

/// The route template that served a response.
#[derive(Clone)]
pub struct RouteTemplate(pub String);

/// Marks the answer to a request a member forwarded here: counted by the node it entered, so
/// the HTTP metrics summed over the cluster count each client request once.
#[derive(Clone, Copy)]
pub struct MemberRequest;

/// The client's rate-limit decision, already taken for this request by
/// [`super::forward_first`]: the budget is spent once.
#[derive(Clone, Copy)]
pub struct Charged(pub Decision);

/// Marks a response already counted in the HTTP metrics (by [`super::edge`]).
#[derive(Clone, Copy)]
pub struct Counted;

/// Routes the scraper and the kubelet's probes must always reach (probes come from the node's
/// address, which a load balancer's SNAT may share with clients).
const UNLIMITED: &[&str] = &["/metrics", "/health/live", "/health/ready"];

pub async fn route(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let session = template
        .as_deref()
        .and_then(|t| forward::session_of(t, req.uri().path()));
    // Member headers with a wrong proof are counted like wrong secrets on `/cluster/*` (in a
    // table of their own): the secret cannot be guessed through the API routes either.
    let member = session.is_some()
        && state
            .shards
            .is_member_request(req.headers(), req.extensions());
    if session.is_some() && !member && req.headers().contains_key(FORWARDED_BY) {
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        if let Some(ip) = peer {
            if let Some(left) = state.member_proof_failures.refused(ip) {
                return ApiError::RateLimited {
                    retry_after_secs: left.as_secs().max(1),
                    limit: FailedAttempts::LIMIT,
                }
                .into_response();
            }
            state.member_proof_failures.failed(ip);
        }
    }
    let mut resp = match session {
        // Forwarded by a member: served here if this node still owns the session, never
        // forwarded again, and not rate-limited twice.
        Some(name) if member => {
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
            // The entry node counts it in the HTTP metrics, with the latency its client saw,
            // under the route matched here (it may not have routed the request itself).
            resp.extensions_mut().insert(MemberRequest);
            if let Some(t) = template
                .as_deref()
                .and_then(|t| http::HeaderValue::from_str(t).ok())
            {
                resp.headers_mut().insert(ROUTE, t);
            }
            resp
        }
        session => {
            let limited = template.as_deref().is_none_or(|t| !UNLIMITED.contains(&t));
            let allowed = match req.extensions().get::<Charged>() {
                Some(Charged(decision)) => verdict(&state, *decision),
                None if limited => {
                    verdict(&state, state.limiter.check(&client_key(&state, &req)).await)
                }
                None => Ok(()),
            };
            match (allowed, session) {
                (Err(e), _) => e.into_response(),
                (Ok(()), Some(name)) => {
                    let mut resp = forward::serve_or_forward(&state.shards, &name, req, next).await;
                    if resp.extensions().get::<forward::Relayed>().is_some() {
                        // This node's CORS layer answers the client: it sets the
                        // `Access-Control-*` headers again (replacing the owner's) and appends
                        // its `Vary`, which would otherwise come twice.
                        resp.headers_mut().remove(http::header::VARY);
                    }
                    resp
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
pub(super) fn client_key(state: &AppState, req: &Request) -> String {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    client_ip(peer, req.headers(), &state.config.trusted_proxies)
        .map(|ip| ip.to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn verdict(state: &AppState, decision: Decision) -> Result<(), ApiError> {
    match decision {
        Decision::Allow => Ok(()),
        Decision::Deny { retry_after } => Err(ApiError::RateLimited {
            retry_after_secs: retry_after.as_secs_f64().ceil() as u64,
            limit: state.limiter.quota().per_second,
        }),
    }
}
