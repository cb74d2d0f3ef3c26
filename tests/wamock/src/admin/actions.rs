//! `/admin/users/{phone}/{react,edit,revoke,read}`: a simulated user acting on messages.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::error;
use super::users::failed;
use crate::state::State;
use crate::users::actions::{EditRequest, ReactRequest, ReadRequest, RevokeRequest};

macro_rules! body {
    ($body:expr) => {
        match $body {
            Ok(Json(b)) => b,
            Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
        }
    };
}

macro_rules! user {
    ($state:expr, $phone:expr) => {
        match $state.users.get(&$phone).await {
            Ok(u) => u,
            Err(e) => return failed(e),
        }
    };
}

/// `POST /admin/users/{phone}/react {"to", "id", "emoji", "fromMe"?}` → `{"id"}`.
pub async fn react(
    AxumState(state): AxumState<Arc<State>>,
    Path(phone): Path<String>,
    body: Result<Json<ReactRequest>, JsonRejection>,
) -> Response {
    let req = body!(body);
    match user!(state, phone).react(&req).await {
        Ok(id) => Json(json!({ "id": id })).into_response(),
        Err(e) => failed(e),
    }
}

/// `POST /admin/users/{phone}/edit {"to", "id", "text"}` → `{"id"}`.
pub async fn edit(
    AxumState(state): AxumState<Arc<State>>,
    Path(phone): Path<String>,
    body: Result<Json<EditRequest>, JsonRejection>,
) -> Response {
    let req = body!(body);
    match user!(state, phone).edit(&req).await {
        Ok(id) => Json(json!({ "id": id })).into_response(),
        Err(e) => failed(e),
    }
}

/// `POST /admin/users/{phone}/revoke {"to", "id"}` → `{"id"}`.
pub async fn revoke(
    AxumState(state): AxumState<Arc<State>>,
    Path(phone): Path<String>,
    body: Result<Json<RevokeRequest>, JsonRejection>,
) -> Response {
    let req = body!(body);
    match user!(state, phone).revoke(&req).await {
        Ok(()) => Json(json!({ "id": req.id })).into_response(),
        Err(e) => failed(e),
    }
}

/// `POST /admin/users/{phone}/read {"to", "ids"}` → `{"ids"}`.
pub async fn read(
    AxumState(state): AxumState<Arc<State>>,
    Path(phone): Path<String>,
    body: Result<Json<ReadRequest>, JsonRejection>,
) -> Response {
    let req = body!(body);
    match user!(state, phone).read(&req).await {
        Ok(()) => Json(json!({ "ids": req.ids })).into_response(),
        Err(e) => failed(e),
    }
}
