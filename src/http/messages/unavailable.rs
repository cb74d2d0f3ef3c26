//! Asking the account's phone for a message this device could not decrypt.

use axum::{Json, extract::State};
use whatsapp_rust::wacore_binary::JidExt;

use super::{recipient, required};
use crate::{
    app::AppState,
    error::{ApiError, ApiResult},
    http::{
        dto::{RequestUnavailableRequest, RequestUnavailableResponse},
        extract::{JsonBody, SessionCtx},
    },
};

/// Sends the phone a peer `PLACEHOLDER_MESSAGE_RESEND` request for `messageId`; the phone
/// answers with the message, which then arrives like any other. `id` is the peer request's
/// own message id. whatsapp-rust asks once per message while the session runs: a second
/// request for the same message is a 409.
pub(super) async fn request(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<RequestUnavailableRequest>,
) -> ApiResult<Json<RequestUnavailableResponse>> {
    let chat = recipient("chatJid", &req.chat_jid)?;
    let id = required("messageId", &req.message_id)?;
    let sender = match req.sender_jid.as_deref().filter(|j| !j.trim().is_empty()) {
        Some(j) => Some(recipient("senderJid", j)?),
        None if chat.is_group() => {
            return Err(ApiError::bad_request(
                "senderJid is required for a group chat (the phone finds the message by its author)",
            ));
        }
        None => None,
    };
    let request = s
        .engine
        .request_unavailable(&rec.name, chat, sender, id)
        .await?
        .ok_or_else(|| {
            ApiError::Conflict(format!(
                "messageId: the phone was already asked for {id} (once per message while the session runs)"
            ))
        })?;
    Ok(Json(RequestUnavailableResponse {
        message: "unavailable message request sent".into(),
        id: request,
    }))
}
