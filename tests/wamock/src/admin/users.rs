//! `/admin/users`: simulated users.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::error;
use crate::state::State;
use crate::users::media::MediaRequest;
use crate::users::{self, UserError};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateUser {
    pub phone: String,
    #[serde(default)]
    pub push_name: Option<String>,
}

/// `{"to", "text"}`, `{"to", "media": {"type", "data", "mimetype", "caption"?,
/// "fileName"?}}`, or `{"to", "poll": {"name", "options", "selectableCount"?}}`.
#[derive(Debug, Deserialize)]
pub struct SendRequest {
    pub to: String,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub media: Option<MediaRequest>,
    #[serde(default)]
    pub poll: Option<users::PollRequest>,
}

fn status(e: &UserError) -> StatusCode {
    match e {
        UserError::BadRequest(_) => StatusCode::BAD_REQUEST,
        UserError::NotFound => StatusCode::NOT_FOUND,
        UserError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        UserError::Client(_) => StatusCode::BAD_GATEWAY,
    }
}

pub(super) fn failed(e: UserError) -> Response {
    tracing::info!(error = %e, "user request failed");
    error(status(&e), e)
}

/// `POST /admin/users {"phone", "pushName"?}` → `{"jid"}` (idempotent).
pub async fn create(
    AxumState(state): AxumState<Arc<State>>,
    body: Result<Json<CreateUser>, JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    match users::create(&state, &req.phone, req.push_name).await {
        Ok(user) => Json(json!({ "jid": user.jid })).into_response(),
        Err(e) => failed(e),
    }
}

/// `POST /admin/users/{phone}/send {"to", "text" | "media"}` → `{"id"}`.
pub async fn send(
    AxumState(state): AxumState<Arc<State>>,
    Path(phone): Path<String>,
    body: Result<Json<SendRequest>, JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let user = match state.users.get(&phone).await {
        Ok(u) => u,
        Err(e) => return failed(e),
    };
    let sent = match (&req.text, &req.media, &req.poll) {
        (_, _, Some(poll)) => user.send_poll(&req.to, poll).await,
        (_, Some(media), None) => user.send_media(&req.to, media).await,
        (Some(text), None, None) => user.send_text(&req.to, text).await,
        (None, None, None) => Err(UserError::BadRequest(
            "a send needs \"text\", \"media\" or \"poll\"".into(),
        )),
    };
    match sent {
        Ok(id) => Json(json!({ "id": id })).into_response(),
        Err(e) => failed(e),
    }
}

/// `GET /admin/users/{phone}/inbox` → the decrypted messages, in arrival order.
pub async fn inbox(AxumState(state): AxumState<Arc<State>>, Path(phone): Path<String>) -> Response {
    match state.users.get(&phone).await {
        Ok(u) => Json(u.inbox()).into_response(),
        Err(e) => failed(e),
    }
}

/// `GET /admin/users/{phone}/receipts` → `[{"id", "from", "type"}]` the user's client got.
pub async fn receipts(
    AxumState(state): AxumState<Arc<State>>,
    Path(phone): Path<String>,
) -> Response {
    match state.users.get(&phone).await {
        Ok(u) => Json(u.receipts()).into_response(),
        Err(e) => failed(e),
    }
}
