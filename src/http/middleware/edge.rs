//! What every request goes through, matched or not: metrics by route template and status
//! (except a member's forwarded request: the node it entered counts it),
//! the security headers, the body limit (413) and the request timeout (504).

use std::time::Instant;

use axum::{
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, Method, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::route::{Counted, MemberRequest, RouteTemplate};
use crate::{app::AppState, error::ApiError, http::extract::BodyLimit};

pub async fn edge(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let api = !req.uri().path().starts_with("/swagger");
    let limit = state.config.max_body_bytes;
    let mut resp = if declared_length(req.headers()).is_some_and(|n| n > limit as u64) {
        ApiError::PayloadTooLarge { limit }.into_response()
    } else {
        req.extensions_mut().insert(BodyLimit(limit));
        match tokio::time::timeout(state.config.request_timeout, next.run(req)).await {
            Ok(r) => r,
            Err(_) => ApiError::Timeout.into_response(),
        }
    };
    if state.config.security_headers {
        security_headers(resp.headers_mut(), api);
    }
    if resp.extensions().get::<MemberRequest>().is_some() {
        return resp;
    }

    count(&state, &method, &mut resp, start);
    resp
}

/// Counts `resp` in the HTTP metrics under its route template, once.
pub(super) fn count(state: &AppState, method: &Method, resp: &mut Response, start: Instant) {
    if resp.extensions().get::<Counted>().is_some() {
        return;
    }
    let route = resp
        .extensions()
        .get::<RouteTemplate>()
        .map_or("unmatched", |r| r.0.as_str());
    let status = resp.status();
    let labels = [method.as_str(), route, status.as_str()];
    state.metrics.http_requests.with_label_values(&labels).inc();
    state
        .metrics
        .http_duration
        .with_label_values(&labels)
        .observe(start.elapsed().as_secs_f64());
    resp.extensions_mut().insert(Counted);
}

/// The body length the request declares (`Content-Length`), if it is a number.
pub(super) fn declared_length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

fn security_headers(h: &mut HeaderMap, api: bool) {
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_XSS_PROTECTION,
        HeaderValue::from_static("1; mode=block"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("strict-origin-when-cross-origin"),
    );
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("geolocation=(), microphone=(), camera=()"),
    );
    if api && !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}
