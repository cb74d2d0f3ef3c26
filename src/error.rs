//! The one error type of the HTTP layer and its single mapping to responses.
//!
//! Every module has its own `thiserror` error; each converts into [`ApiError`], and only
//! [`ApiError`] knows about HTTP status codes. Every failure answers `{"error": "..."}`.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    /// 403 with a message of its own (WhatsApp refused the account, e.g. not a group admin).
    #[error("{0}")]
    NotAllowed(String),
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("request body too large (limit {limit} bytes)")]
    PayloadTooLarge { limit: usize },
    #[error("rate limit exceeded")]
    RateLimited { retry_after_secs: u64, limit: u32 },
    #[error("not implemented")]
    NotImplemented,
    #[error("{0}")]
    Unavailable(String),
    #[error("request timed out")]
    Timeout,
    /// WhatsApp (or the client library) refused or failed.
    #[error("{0}")]
    Upstream(String),
    /// A failure the contract answers with 500 and a message of its own, e.g. `session not
    /// authenticated` for a session that was never paired.
    #[error("{0}")]
    Failed(String),
    /// 421: this node does not own the session's shard (any more); the client or the
    /// forwarding layer should ask the owner.
    #[error("{0}")]
    Misdirected(String),
    #[error("internal server error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn bad_request(msg: impl Into<String>) -> Self {
        ApiError::BadRequest(msg.into())
    }

    pub fn session_not_found(name: &str) -> Self {
        ApiError::NotFound(format!("session {name} not found"))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::NotAllowed(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ApiError::Misdirected(_) => StatusCode::MISDIRECTED_REQUEST,
            ApiError::Failed(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            ApiError::Internal(e) => tracing::error!(error = %format!("{e:#}"), "internal error"),
            ApiError::Unavailable(e) => tracing::warn!(error = %e, "service unavailable"),
            _ => {}
        }
        let mut resp = match &self {
            ApiError::RateLimited { .. } => (
                status,
                Json(json!({
                    "error": "rate limit exceeded",
                    "message": "Too many requests. Please try again later."
                })),
            )
                .into_response(),
            _ => (status, Json(json!({ "error": self.to_string() }))).into_response(),
        };
        if let ApiError::RateLimited {
            retry_after_secs,
            limit,
        } = self
        {
            let h = resp.headers_mut();
            h.insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after_secs.max(1)),
            );
            h.insert("x-ratelimit-limit", HeaderValue::from(limit));
            h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        }
        resp
    }
}

impl From<onwapp_cluster::ClusterError> for ApiError {
    fn from(e: onwapp_cluster::ClusterError) -> Self {
        use onwapp_cluster::ClusterError as C;
        match e {
            C::BadRequest(m) => ApiError::BadRequest(m),
            C::NoLeader | C::Shutdown | C::Transport(_) => ApiError::Unavailable(e.to_string()),
            C::Timeout(_) => ApiError::Timeout,
            C::Rejected(m) => ApiError::Conflict(m),
            other => ApiError::Internal(anyhow::anyhow!(other)),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(msg) => ApiError::Conflict(msg),
            StoreError::NotFound(msg) => ApiError::NotFound(msg),
            StoreError::Unavailable(e) => {
                ApiError::Unavailable(format!("database unavailable: {e}"))
            }
            StoreError::Fenced(msg) => ApiError::Misdirected(msg),
            StoreError::Other(e) => ApiError::Internal(e),
        }
    }
}

impl From<crate::engine::EngineError> for ApiError {
    fn from(e: crate::engine::EngineError) -> Self {
        use crate::engine::EngineError as E;
        match e {
            E::NotConnected(_) | E::AlreadyPaired(_) | E::NotReady(_) => {
                ApiError::Conflict(e.to_string())
            }
            E::Start(_) => ApiError::Internal(anyhow::anyhow!(e.to_string())),
            E::Fenced(m) => ApiError::Misdirected(m),
            E::Pair(_) | E::Send(_) | E::Action(_) => ApiError::Upstream(e.to_string()),
            E::NotFound(m) => ApiError::NotFound(m),
            E::Forbidden(m) => ApiError::NotAllowed(m),
            E::Invalid(m) => ApiError::BadRequest(m),
            E::NotRecorded { .. } => ApiError::Failed(e.to_string()),
            E::NotJournaled(_) => ApiError::Unavailable(e.to_string()),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
