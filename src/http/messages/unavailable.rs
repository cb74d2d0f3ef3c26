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
/// answers with the message, which then arrives like any other. whatsapp-rust sends one
/// request per message and does not expose the peer request's own id, so `id` is the
/// requested message's id.
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
    s.engine
        .request_unavailable(&rec.name, chat, sender, id)
        .await?;
    Ok(Json(RequestUnavailableResponse {
        message: "unavailable message request sent".into(),
        id: id.to_string(),
    }))
}
