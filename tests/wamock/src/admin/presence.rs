//! Presence, chat states and app state over the admin API: what a simulated user saw,
//! what it does, and what an account's devices wrote to their app state.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::error;
use super::users::failed;
use crate::state::State;

/// `GET /admin/users/{phone}/presence` → `[{"from", "available", "lastSeen"?}]`.
pub async fn seen(AxumState(state): AxumState<Arc<State>>, Path(phone): Path<String>) -> Response {
    match state.users.get(&phone).await {
        Ok(u) => Json(u.presences()).into_response(),
        Err(e) => failed(e),
    }
}

/// `GET /admin/users/{phone}/chatstates` → `[{"chat", "from", "state"}]`.
pub async fn chatstates(
    AxumState(state): AxumState<Arc<State>>,
    Path(phone): Path<String>,
) -> Response {
    match state.users.get(&phone).await {
        Ok(u) => Json(u.chatstates()).into_response(),
        Err(e) => failed(e),
    }
}

#[derive(Debug, Deserialize)]
pub struct SetPresence {
    pub available: bool,
}

/// `POST /admin/users/{phone}/presence {"available": bool}` → `{}`.
pub async fn set(
    AxumState(state): AxumState<Arc<State>>,
    Path(phone): Path<String>,
    body: Result<Json<SetPresence>, JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let done = match state.users.get(&phone).await {
        Ok(u) => u.set_presence(req.available).await,
        Err(e) => Err(e),
    };
    match done {
        Ok(()) => Json(json!({})).into_response(),
        Err(e) => failed(e),
    }
}

#[derive(Debug, Deserialize)]
pub struct Target {
    pub to: String,
}

/// `POST /admin/users/{phone}/presence/subscribe {"to"}` → `{}`.
pub async fn subscribe(
    AxumState(state): AxumState<Arc<State>>,
    Path(phone): Path<String>,
    body: Result<Json<Target>, JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let done = match state.users.get(&phone).await {
        Ok(u) => u.subscribe_presence(&req.to).await,
        Err(e) => Err(e),
    };
    match done {
        Ok(()) => Json(json!({})).into_response(),
        Err(e) => failed(e),
    }
}

#[derive(Debug, Deserialize)]
pub struct SendChatstate {
    pub to: String,
    pub state: String,
}

/// `POST /admin/users/{phone}/chatstate {"to", "state": "composing|recording|paused"}` → `{}`.
pub async fn send_chatstate(
    AxumState(state): AxumState<Arc<State>>,
    Path(phone): Path<String>,
    body: Result<Json<SendChatstate>, JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let done = match state.users.get(&phone).await {
        Ok(u) => u.send_chatstate(&req.to, &req.state).await,
        Err(e) => Err(e),
    };
    match done {
        Ok(()) => Json(json!({})).into_response(),
        Err(e) => failed(e),
    }
}

/// `GET /admin/accounts/{phone}/app-state` → every decrypted mutation the account's
/// devices uploaded: `[{"collection", "version", "device"?, "operation", "action",
/// "index", "value", "timestamp"?, "error"?}]`. 404 for an unknown account.
pub async fn app_state(
    AxumState(state): AxumState<Arc<State>>,
    Path(phone): Path<String>,
) -> Response {
    match state.with_account(&phone, false, |a| a.app_state.mutations()) {
        Some(m) => Json(m).into_response(),
        None => error(StatusCode::NOT_FOUND, "no account with this phone number"),
    }
}

/// `GET /admin/accounts/{phone}/profile` → `{"status", "pictureId", "pictureSha256",
/// "pushName"}` as the account's devices set them (null when never set). 404 for an
/// unknown account.
pub async fn profile(
    AxumState(state): AxumState<Arc<State>>,
    Path(phone): Path<String>,
) -> Response {
    match crate::profile::view(&state, &phone) {
        Some(v) => Json(v).into_response(),
        None => error(StatusCode::NOT_FOUND, "no account with this phone number"),
    }
}

#[derive(Debug, Deserialize)]
pub struct PictureOf {
    pub of: String,
}

/// `GET /admin/users/{phone}/picture?of=<digits or jid>` → `{"id", "url"}` the user's client
/// got for that account's picture (a `w:profile:picture` get), 404 when it has none.
pub async fn picture_of(
    AxumState(state): AxumState<Arc<State>>,
    Path(phone): Path<String>,
    Query(q): Query<PictureOf>,
) -> Response {
    let seen = match state.users.get(&phone).await {
        Ok(u) => u.picture_of(&q.of).await,
        Err(e) => Err(e),
    };
    match seen {
        Ok(Some(p)) => Json(p).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "no profile picture"),
        Err(e) => failed(e),
    }
}
