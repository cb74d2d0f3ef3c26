//! Actions on messages already sent: edit, react, delete.

use axum::{Json, extract::State};
use whatsapp_rust::{wacore::proto_helpers::MessageBuilderExt, waproto::whatsapp as wa};

use super::{recipient, required, sent};
use crate::{
    app::AppState,
    error::{ApiError, ApiResult},
    http::{
        dto::{DeleteMessageRequest, EditMessageRequest, SendReactionRequest, SendResponse},
        extract::{JsonBody, SessionCtx},
    },
};

pub(super) async fn edit(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<EditMessageRequest>,
) -> ApiResult<Json<SendResponse>> {
    let to = recipient("phone", &req.phone)?;
    let id = required("messageId", &req.message_id)?.to_string();
    let text = required("newText", &req.new_text)?;
    let edit_id = s
        .engine
        .edit(&rec.name, to, id, wa::Message::text(text))
        .await?;
    Ok(sent(edit_id))
}

/// Reacts to a message of the chat with `phone`; an empty `emoji` removes the reaction. Whether
/// the message was ours comes from the store (a message never seen counts as theirs).
pub(super) async fn react(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<SendReactionRequest>,
) -> ApiResult<Json<SendResponse>> {
    use whatsapp_rust::wacore_binary::JidExt;
    let chat = recipient("phone", &req.phone)?;
    let id = required("messageId", &req.message_id)?;
    let stored = s
        .store
        .get_message(rec.id, &chat.to_non_ad().to_string(), id)
        .await?;
    let from_me = stored.as_ref().is_some_and(|m| m.from_me);
    let participant = match &stored {
        Some(m) if chat.is_group() && !m.from_me => m.sender_jid.clone(),
        _ => None,
    };
    let key = wa::MessageKey {
        remote_jid: Some(chat.to_string()),
        from_me: Some(from_me),
        id: Some(id.to_string()),
        participant,
    };
    Ok(sent(
        s.engine.react(&rec.name, chat, key, &req.emoji).await?,
    ))
}

/// Deletes a message for everyone: our own anywhere, someone else's in a group (as admin).
/// `forMe: true` deletes it on this account's devices only (app state), see
/// [`crate::http::chat_actions::delete_for_me`].
pub(super) async fn delete(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<DeleteMessageRequest>,
) -> ApiResult<Json<SendResponse>> {
    use whatsapp_rust::{RevokeType, wacore_binary::JidExt};
    let chat = recipient("phone", &req.phone)?;
    let id = required("messageId", &req.message_id)?;
    let stored = s
        .store
        .get_message(rec.id, &chat.to_non_ad().to_string(), id)
        .await?;
    if req.for_me == Some(true) {
        crate::http::chat_actions::delete_for_me(&s, &rec, chat, id, stored).await?;
        return Ok(sent(id.to_string()));
    }
    let how = match stored {
        Some(m) if !m.from_me => {
            if !chat.is_group() {
                return Err(ApiError::bad_request(
                    "messageId: only your own messages can be deleted for everyone in a direct chat",
                ));
            }
            let sender = m.sender_jid.as_deref().unwrap_or_default();
            RevokeType::Admin {
                original_sender: recipient("sender", sender)?,
            }
        }
        _ => RevokeType::Sender,
    };
    s.engine.revoke(&rec.name, chat, id, how).await?;
    Ok(sent(id.to_string()))
}
