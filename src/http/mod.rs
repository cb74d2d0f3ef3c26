//! The HTTP surface: one module per area of the contract, each with `router()`.

pub mod calls;
pub mod catalog;
pub mod chat;
pub mod chat_actions;
pub mod cluster;
pub mod communities;
pub mod contacts;
pub mod dto;
pub mod events;
pub mod extract;
pub(crate) mod form;
#[doc(hidden)]
pub mod fuzzing;
pub mod groups;
pub mod health;
pub mod lifecycle;
pub mod media;
pub mod messages;
pub mod middleware;
pub mod newsletters;
pub mod openapi;
pub mod presence;
pub mod profile;
pub mod sessions;
pub mod settings;
pub mod status;
pub mod unimplemented;
pub mod webhook_failed;
pub mod webhooks;

use axum::{
    Router,
    extract::{DefaultBodyLimit, State},
    http::{StatusCode, header},
    middleware::from_fn_with_state,
    response::{IntoResponse, Response},
    routing::get,
};
use tower_http::{
    catch_panic::CatchPanicLayer,
    cors::{AllowOrigin, Any, CorsLayer},
    request_id::PropagateRequestIdLayer,
    trace::{DefaultOnFailure, TraceLayer},
};

use crate::{
    app::AppState, config::AllowedOrigins, error::ApiError,
    observability::trace_context::trace_context,
};

/// The whole router with every middleware, as served.
pub fn router(state: AppState) -> Router {
    let authenticated = Router::new()
        .merge(sessions::router())
        .merge(lifecycle::router())
        .merge(messages::router())
        .merge(media::router())
        .merge(chat::router())
        .merge(chat_actions::router())
        .merge(contacts::router())
        .merge(newsletters::router())
        .merge(groups::router())
        .merge(communities::router())
        .merge(presence::router())
        .merge(profile::router())
        .merge(settings::router())
        .merge(status::router())
        .merge(calls::router())
        .merge(webhooks::router())
        .merge(webhook_failed::router())
        .merge(events::router())
        .merge(cluster::admin_router())
        .merge(unimplemented::authenticated_router())
        .route_layer(from_fn_with_state(state.clone(), middleware::require_auth));
    let open = Router::new()
        .merge(health::router())
        .merge(unimplemented::open_router())
        .merge(openapi::router());

    let limit = state.config.max_body_bytes;
    let mut routes = Router::new().merge(authenticated).merge(open);
    // With METRICS_ADDR, `/metrics` lives on its own listener only (`metrics_router`).
    if state.config.metrics_addr.is_none() {
        routes = routes.route("/metrics", get(metrics));
    }
    routes
        .route_layer(from_fn_with_state(state.clone(), middleware::route))
        // Node to node: the cluster secret instead of API keys, never rate-limited.
        .merge(cluster::internal_router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(from_fn_with_state(state.clone(), middleware::edge))
        .layer(cors(&state.config.allowed_origins))
        .layer(CatchPanicLayer::custom(on_panic))
        // `trace_context` gives every request its `X-Request-Id`; this copies it to the answer.
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(current_span)
                // Internal errors are logged where they happen; 5xx here is only a warning.
                .on_failure(DefaultOnFailure::new().level(tracing::Level::WARN)),
        )
        .layer(from_fn_with_state(state.clone(), middleware::forward_first))
        .layer(axum::middleware::from_fn(trace_context))
        .with_state(state)
}

/// The span `trace_context` opened (TraceLayer logs failures in it).
fn current_span(_: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    tracing::Span::current()
}

fn cors(origins: &AllowedOrigins) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_methods([
            axum::http::Method::GET,
            axum::http::Method::POST,
            axum::http::Method::PUT,
            axum::http::Method::DELETE,
            axum::http::Method::OPTIONS,
        ])
        .allow_headers([
            header::ORIGIN,
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::AUTHORIZATION,
        ])
        .max_age(std::time::Duration::from_secs(86400));
    match origins {
        AllowedOrigins::Any => layer.allow_origin(Any),
        AllowedOrigins::List(list) => layer.allow_origin(AllowOrigin::list(
            list.iter().filter_map(|o| o.parse().ok()),
        )),
    }
}

fn on_panic(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::Internal(anyhow::anyhow!("handler panicked")).into_response()
}

async fn not_found() -> ApiError {
    ApiError::NotFound("route not found".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// `/metrics` alone, for the `METRICS_ADDR` listener.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(state)
}

async fn metrics(State(s): State<AppState>, headers: header::HeaderMap) -> Response {
    if let Some(token) = &s.config.metrics_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or_default();
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            given.as_bytes(),
            token.as_bytes(),
        )) {
            return ApiError::Unauthorized("metrics token required (Authorization: Bearer)")
                .into_response();
        }
    }
    s.metrics.observe(s.shards.node(), &s.engine.state_counts());
    // `onwapp_database_up` is fresh at every scrape, not only when `/health` is asked.
    s.health.database_up(&*s.store).await;
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}
