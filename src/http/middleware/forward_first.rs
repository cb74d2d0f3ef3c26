//! A request for a session that another node owns leaves this node at once: after the client's
//! rate limit and before this node's own middleware and routing, which the owner runs anyway.
//! The owner's answer carries its CORS and security headers, the request id and the route it
//! matched, under which this node counts the request in its HTTP metrics (the owner does not
//! count a member's request). Everything else (this node's sessions, top-level routes, CORS
//! preflights, bodies over the limit, a client that sends member headers) takes the full path,
//! where [`super::route`] forwards what still has to be.
//!
//! Forwarding costs the entry node a rate-limit check, the hop and the relay; before, it also
//! paid a whole pass of its own middleware and routing for a request the owner serves.

use std::time::Instant;

use axum::{
    extract::{Request, State},
    http::{Method, header::AUTHORIZATION},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::route::{Charged, client_key};
use crate::{
    app::AppState,
    error::ApiError,
    http::sessions::RESERVED_NAMES,
    ratelimit::Decision,
    shards::{FORWARDED_BY, Route, SERVED_EPOCH, forward},
};

/// The outermost session layer: [`forward_or_continue`], then the served epoch
/// (`x-onwapp-served-epoch`) is taken off answers to clients. Members read it (a relayed
/// answer carries it back) and so do operators (the global key): it says which ownership of
/// the shard served the request, which only matters to the cluster and whoever runs it.
pub async fn forward_first(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let shows_epoch = state.auth.is_global(req.headers().get(AUTHORIZATION))
        || state
            .shards
            .is_member_request(req.headers(), req.extensions());
    let mut resp = forward_or_continue(state, req, next).await;
    if !shows_epoch {
        resp.headers_mut().remove(SERVED_EPOCH);
    }
    resp
}

async fn forward_or_continue(state: AppState, mut req: Request, next: Next) -> Response {
    let Some(name) = remote_session(&state, &req) else {
        return next.run(req).await;
    };
    let start = Instant::now();
    let method = req.method().clone();
    let decision = state.limiter.check(&client_key(&state, &req)).await;
    // Served through the full path from here on (a denial, or a shard that came back to this
    // node while the request was on its way), the client's budget is not spent again.
    req.extensions_mut().insert(Charged(decision));
    if matches!(decision, Decision::Deny { .. }) {
        return next.run(req).await;
    }
    // The request id the owner logs and answers with, and the log span, are the request's own
    // (`trace_context`, outside this layer).
    let limit = state.config.request_timeout;
    let mut resp = match tokio::time::timeout(
        limit,
        forward::serve_or_forward(&state.shards, &name, req, next),
    )
    .await
    {
        Ok(resp) => resp,
        Err(_) => ApiError::Timeout.into_response(),
    };
    // Unless the full path served it here (the shard came back) and counted it already.
    super::edge::count(&state, &method, &mut resp, start);
    resp
}

/// The session `req` is about when another node owns it and the request can leave as it is.
fn remote_session(state: &AppState, req: &Request) -> Option<String> {
    if req.method() == Method::OPTIONS || req.headers().contains_key(FORWARDED_BY) {
        return None;
    }
    if super::edge::declared_length(req.headers())
        .is_some_and(|n| n > state.config.max_body_bytes as u64)
    {
        return None;
    }
    let name = session_segment(req.uri().path())?;
    matches!(state.shards.route(name), Route::Remote { .. }).then(|| name.to_string())
}

/// The first segment of `path` when it can be a session's name: what session names may hold
/// (so no percent-decoding is needed) and no top-level route's first segment.
pub fn session_segment(path: &str) -> Option<&str> {
    let rest = path.strip_prefix('/')?;
    let seg = rest.split('/').next()?;
    let valid = !seg.is_empty()
        && seg.len() <= 64
        && seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    (valid && !RESERVED_NAMES.iter().any(|r| r.eq_ignore_ascii_case(seg))).then_some(seg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::catalog;

    #[test]
    fn only_session_paths_have_a_session_segment() {
        assert_eq!(session_segment("/shop-1/status"), Some("shop-1"));
        assert_eq!(session_segment("/shop_1"), Some("shop_1"));
        assert_eq!(session_segment("/shop/message/send/text"), Some("shop"));
        for not in [
            "/",
            "",
            "//status",
            "/sessions",
            "/Sessions/x",
            "/health",
            "/metrics",
            "/swagger/index.html",
            "/admin/cluster",
            "/cluster/append",
            "/chatwoot/webhook/x",
            "/events",
            "/shop%201/status",
            "/favicon.ico",
        ] {
            assert_eq!(session_segment(not), None, "{not}");
        }
    }

    /// Every route that is not a session's starts with a reserved segment, so no request for
    /// it can be taken for a session's and forwarded.
    #[test]
    fn no_top_level_route_looks_like_a_session() {
        let mut seen = 0;
        for e in catalog::ENDPOINTS {
            if e.path.starts_with("/:session") {
                continue;
            }
            seen += 1;
            let concrete = e.path.replace(':', "");
            assert_eq!(session_segment(&concrete), None, "{} {}", e.method, e.path);
        }
        assert!(seen > 5, "the catalog lists top-level routes");
        for internal in ["/cluster/vote", "/swagger/doc.json", "/metrics"] {
            assert_eq!(session_segment(internal), None, "{internal}");
        }
    }
}
