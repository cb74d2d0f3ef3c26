//! `/admin/groups/{jid}` (a group's state) and the simulated users' group actions:
//! `/admin/users/{phone}/groups` (create), `/join`, `/group` (change one).

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::error;
use super::users::failed;
use crate::state::State;
use crate::users::groups::{CreateGroupRequest, GroupActionRequest, group_jid};

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

/// `GET /admin/groups/{jid}` → the group's state.
pub async fn get(AxumState(state): AxumState<Arc<State>>, Path(jid): Path<String>) -> Response {
    let jid = match group_jid(&jid) {
        Ok(j) => j,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match state.groups.view(&jid.user) {
        Some(v) => Json(v).into_response(),
        None => error(StatusCode::NOT_FOUND, "no such group"),
    }
}

/// `POST /admin/users/{phone}/groups {"subject", "participants"}` → `{"jid"}`.
pub async fn create(
    AxumState(state): AxumState<Arc<State>>,
    Path(phone): Path<String>,
    body: Result<Json<CreateGroupRequest>, JsonRejection>,
) -> Response {
    let req = body!(body);
    match user!(state, phone).create_group(&req).await {
        Ok(jid) => Json(json!({ "jid": jid })).into_response(),
        Err(e) => failed(e),
    }
}

#[derive(Debug, Deserialize)]
pub struct JoinRequest {
    pub code: String,
}

/// `POST /admin/users/{phone}/join {"code"}` → `{"jid", "pending"}`.
pub async fn join(
    AxumState(state): AxumState<Arc<State>>,
    Path(phone): Path<String>,
    body: Result<Json<JoinRequest>, JsonRejection>,
) -> Response {
    let req = body!(body);
    match user!(state, phone).join_group(&req.code).await {
        Ok((jid, pending)) => Json(json!({ "jid": jid, "pending": pending })).into_response(),
        Err(e) => failed(e),
    }
}

/// `POST /admin/users/{phone}/group {"group", "action", "value"?, "participants"?}` → `{}`.
pub async fn action(
    AxumState(state): AxumState<Arc<State>>,
    Path(phone): Path<String>,
    body: Result<Json<GroupActionRequest>, JsonRejection>,
) -> Response {
    let req = body!(body);
    match user!(state, phone).group_action(&req).await {
        Ok(()) => Json(json!({})).into_response(),
        Err(e) => failed(e),
    }
}
