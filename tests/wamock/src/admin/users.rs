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
use crate::users::{self, UserError};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateUser {
    pub phone: String,
    #[serde(default)]
    pub push_name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct SendText {
    pub to: String,
    pub text: String,
}

fn status(e: &UserError) -> StatusCode {
    match e {
        UserError::BadRequest(_) => StatusCode::BAD_REQUEST,
        UserError::NotFound => StatusCode::NOT_FOUND,
        UserError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        UserError::Client(_) => StatusCode::BAD_GATEWAY,
    }
}

fn failed(e: UserError) -> Response {
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

/// `POST /admin/users/{phone}/send {"to", "text"}` → `{"id"}`.
pub async fn send(
    AxumState(state): AxumState<Arc<State>>,
    Path(phone): Path<String>,
    body: Result<Json<SendText>, JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let user = match state.users.get(&phone).await {
        Ok(u) => u,
        Err(e) => return failed(e),
    };
    match user.send_text(&req.to, &req.text).await {
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
