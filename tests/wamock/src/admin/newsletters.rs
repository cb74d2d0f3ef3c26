//! Newsletters (channels) over the admin API: a simulated user creates one and posts to
//! it through its own whatsapp-rust client; tests read what the server holds.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use wacore_binary::{Jid, Server};
use waproto::whatsapp as wa;

use super::error;
use super::users::failed;
use crate::state::State;
use crate::users::UserError;

/// How long a user's newsletter request may take.
const TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Deserialize)]
pub struct CreateRequest {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct PostRequest {
    pub text: String,
}

fn newsletter_jid(raw: &str) -> Option<Jid> {
    raw.parse::<Jid>()
        .ok()
        .filter(|j| j.server == Server::Newsletter)
}

/// `POST /admin/users/{phone}/newsletters {"name", "description"?}` → `{"jid"}`: the
/// user's client creates the channel (`newsletter().create`), so the user owns it.
pub async fn create(
    AxumState(state): AxumState<Arc<State>>,
    Path(phone): Path<String>,
    body: Result<Json<CreateRequest>, JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let user = match state.users.get(&phone).await {
        Ok(u) => u,
        Err(e) => return failed(e),
    };
    let created = tokio::time::timeout(
        TIMEOUT,
        user.client()
            .newsletter()
            .create(&req.name, req.description.as_deref()),
    )
    .await;
    match created {
        Ok(Ok(meta)) => Json(json!({ "jid": meta.jid.to_string() })).into_response(),
        Ok(Err(e)) => failed(UserError::Client(e.to_string())),
        Err(_) => failed(UserError::Timeout("creating the newsletter")),
    }
}

/// `POST /admin/users/{phone}/newsletters/{jid}/post {"text"}` → `{"id", "serverId"}`: the
/// user's client sends a text to its channel (plaintext `<message>`); `serverId` is the
/// one the server gave it.
pub async fn post(
    AxumState(state): AxumState<Arc<State>>,
    Path((phone, jid)): Path<(String, String)>,
    body: Result<Json<PostRequest>, JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let Some(jid) = newsletter_jid(&jid) else {
        return error(StatusCode::BAD_REQUEST, "not a newsletter JID");
    };
    let user = match state.users.get(&phone).await {
        Ok(u) => u,
        Err(e) => return failed(e),
    };
    let message = wa::Message {
        conversation: Some(req.text),
        ..Default::default()
    };
    let sent = match tokio::time::timeout(TIMEOUT, user.client().send_message(jid.clone(), message))
        .await
    {
        Ok(Ok(sent)) => sent,
        Ok(Err(e)) => return failed(UserError::Client(e.to_string())),
        Err(_) => return failed(UserError::Timeout("posting to the newsletter")),
    };
    let key = jid.to_string();
    for _ in 0..200 {
        if let Some(server_id) = state.newsletters.server_id_of(&key, &sent.message_id) {
            return Json(json!({ "id": sent.message_id, "serverId": server_id })).into_response();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    error(
        StatusCode::BAD_GATEWAY,
        "the post did not reach the channel (not its owner, or unknown channel)",
    )
}

/// `GET /admin/newsletters/{jid}` → the channel as the server holds it. 404 unknown.
pub async fn view(AxumState(state): AxumState<Arc<State>>, Path(jid): Path<String>) -> Response {
    match state.newsletters.view(&jid) {
        Some(v) => Json(v).into_response(),
        None => error(StatusCode::NOT_FOUND, "no newsletter with this JID"),
    }
}
