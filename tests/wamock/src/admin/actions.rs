//! `/admin/users/{phone}/{react,edit,revoke,read,vote}`: a simulated user acting on messages.

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
use crate::users::actions::{EditRequest, ReactRequest, ReadRequest, RevokeRequest, VoteRequest};

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

/// `POST /admin/users/{phone}/vote {"to", "pollId", "options"}` → `{"id"}`.
pub async fn vote(
    AxumState(state): AxumState<Arc<State>>,
    Path(phone): Path<String>,
    body: Result<Json<VoteRequest>, JsonRejection>,
) -> Response {
    let req = body!(body);
    match user!(state, phone).vote(&req).await {
        Ok(id) => Json(json!({ "id": id })).into_response(),
        Err(e) => failed(e),
    }
}

/// `{"to": "<phone digits>"}`: a message "from" the user that no one can decrypt.
#[derive(Debug, serde::Deserialize)]
pub struct GarbageRequest {
    pub to: String,
}

/// `POST /admin/users/{phone}/undecryptable {"to"}` → `{"id", "devices"}`: wamock itself
/// sends every companion of `to` a `<message>` from the user whose `<enc type="msg">` is
/// random bytes, as a broken sender would; the client cannot decrypt it. 404 unknown user
/// or account.
pub async fn undecryptable(
    AxumState(state): AxumState<Arc<State>>,
    Path(phone): Path<String>,
    body: Result<Json<GarbageRequest>, JsonRejection>,
) -> Response {
    use wacore_binary::builder::NodeBuilder;
    let req = body!(body);
    let user = user!(state, phone);
    let to = req
        .to
        .trim()
        .trim_end_matches("@s.whatsapp.net")
        .to_string();
    let Some(devices) = state.with_account(&to, false, |a| {
        a.devices.keys().copied().collect::<Vec<_>>()
    }) else {
        return error(StatusCode::NOT_FOUND, "no account with this phone number");
    };
    let id = format!("3EB0{:016X}", rand::random::<u64>());
    let garbage: Vec<u8> = (0..48).map(|_| rand::random::<u8>()).collect();
    for device in &devices {
        let node = NodeBuilder::new("message")
            .attr("from", user.jid.as_str())
            .attr("id", id.as_str())
            .attr("type", "text")
            .attr("t", crate::nodes::unix_now().to_string())
            .attr("notify", "Simulated")
            .children([NodeBuilder::new("enc")
                .attr("v", "2")
                .attr("type", "msg")
                .bytes(garbage.clone())
                .build()])
            .build();
        state.deliver(
            &crate::accounts::DeviceAddr::new(to.as_str(), *device),
            node,
        );
    }
    Json(json!({ "id": id, "devices": devices.len() })).into_response()
}
