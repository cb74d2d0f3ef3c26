//! `Messages - Send`: what a session sends through its WhatsApp client.

use axum::{Json, Router, extract::State, routing::post};
use whatsapp_rust::{
    wacore::proto_helpers::{MessageBuilderExt, build_quote_context},
    waproto::whatsapp as wa,
};

use crate::{
    app::AppState,
    engine::jid::parse_recipient,
    error::{ApiError, ApiResult},
    http::{
        dto::{
            DeleteMessageRequest, EditMessageRequest, Quoted, SendContactRequest,
            SendLocationRequest, SendReactionRequest, SendResponse, SendTextRequest,
        },
        extract::{JsonBody, SessionCtx},
    },
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/{session}/message/send/text", post(send_text))
        .route("/{session}/message/send/location", post(send_location))
        .route("/{session}/message/send/contact", post(send_contact))
        .route("/{session}/message/edit", post(edit))
        .route("/{session}/message/react", post(react))
        .route("/{session}/message/delete", post(delete))
}

fn recipient(field: &str, raw: &str) -> Result<whatsapp_rust::Jid, ApiError> {
    parse_recipient(raw).map_err(|why| ApiError::bad_request(format!("{field} {why}")))
}

fn required<'a>(field: &str, value: &'a str) -> Result<&'a str, ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::bad_request(format!("{field} is required")));
    }
    Ok(value)
}

/// The reply context of `quoted`, the quoted sender defaulting to the chat.
fn quote(q: &Quoted, chat: &whatsapp_rust::Jid) -> Result<wa::ContextInfo, ApiError> {
    let id = required("quoted.messageId", &q.message_id)?;
    let sender = match &q.participant {
        Some(p) => recipient("quoted.participant", p)?.to_string(),
        None => chat.to_string(),
    };
    // The quoted body is not known here; WhatsApp clients show the original by its id.
    Ok(build_quote_context(id, sender, &wa::Message::text("")))
}

fn sent(message_id: String) -> Json<SendResponse> {
    Json(SendResponse {
        message_id,
        timestamp: chrono::Utc::now().timestamp(),
    })
}

/// Puts the reply context on any message kind that carries one.
fn with_quote(
    mut message: wa::Message,
    quoted: Option<&Quoted>,
    chat: &whatsapp_rust::Jid,
) -> Result<wa::Message, ApiError> {
    use whatsapp_rust::wacore::proto_helpers::MessageExt;
    if let Some(q) = quoted {
        message.set_context_info(quote(q, chat)?);
    }
    Ok(message)
}

async fn send_location(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<SendLocationRequest>,
) -> ApiResult<Json<SendResponse>> {
    let to = recipient("phone", &req.phone)?;
    // 0 is a real coordinate (the equator, Greenwich); only the range is checked.
    if !(-90.0..=90.0).contains(&req.latitude) {
        return Err(ApiError::bad_request("latitude must be between -90 and 90"));
    }
    if !(-180.0..=180.0).contains(&req.longitude) {
        return Err(ApiError::bad_request(
            "longitude must be between -180 and 180",
        ));
    }
    let location = wa::message::LocationMessage {
        degrees_latitude: Some(req.latitude),
        degrees_longitude: Some(req.longitude),
        name: req.name.filter(|n| !n.is_empty()),
        address: req.address.filter(|a| !a.is_empty()),
        ..Default::default()
    };
    let message = wa::Message {
        location_message: location.into(),
        ..Default::default()
    };
    let message = with_quote(message, req.quoted.as_ref(), &to)?;
    Ok(sent(s.engine.send(&rec.name, to, message).await?))
}

/// A vCard 3.0 for one phone number, as WhatsApp clients write them.
fn vcard(name: &str, phone: &str) -> String {
    let escaped = name
        .replace('\\', "\\\\")
        .replace(';', "\\;")
        .replace(',', "\\,");
    format!(
        "BEGIN:VCARD\nVERSION:3.0\nFN:{escaped}\nTEL;type=CELL;type=VOICE;waid={phone}:+{phone}\nEND:VCARD"
    )
}

async fn send_contact(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<SendContactRequest>,
) -> ApiResult<Json<SendResponse>> {
    let to = recipient("phone", &req.phone)?;
    let name = required("contactName", &req.contact_name)?;
    let contact = recipient("contactPhone", &req.contact_phone)?;
    let contact_phone = contact.user.to_string();
    let card = wa::message::ContactMessage {
        display_name: Some(name.to_string()),
        vcard: Some(vcard(name, &contact_phone)),
        ..Default::default()
    };
    let message = wa::Message {
        contact_message: card.into(),
        ..Default::default()
    };
    let message = with_quote(message, req.quoted.as_ref(), &to)?;
    Ok(sent(s.engine.send(&rec.name, to, message).await?))
}

async fn edit(
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
async fn react(
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
/// `forMe: true` (delete only on this device) needs app-state writes, not built yet: 501.
async fn delete(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<DeleteMessageRequest>,
) -> ApiResult<Json<SendResponse>> {
    use whatsapp_rust::{RevokeType, wacore_binary::JidExt};
    let chat = recipient("phone", &req.phone)?;
    let id = required("messageId", &req.message_id)?;
    if req.for_me == Some(true) {
        return Err(ApiError::NotImplemented);
    }
    let stored = s
        .store
        .get_message(rec.id, &chat.to_non_ad().to_string(), id)
        .await?;
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

async fn send_text(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<SendTextRequest>,
) -> ApiResult<Json<SendResponse>> {
    let to = recipient("phone", &req.phone)?;
    let text = required("text", &req.text)?;
    let message = match &req.quoted {
        Some(q) => wa::Message::text_with_context(text, quote(q, &to)?),
        None => wa::Message::text(text),
    };
    Ok(sent(s.engine.send(&rec.name, to, message).await?))
}
