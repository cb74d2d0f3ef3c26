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
        dto::{Quoted, SendResponse, SendTextRequest},
        extract::{JsonBody, SessionCtx},
    },
};

pub fn router() -> Router<AppState> {
    Router::new().route("/{session}/message/send/text", post(send_text))
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
    let id = s.engine.send(&rec.name, to, message).await?;
    Ok(Json(SendResponse {
        message_id: id,
        timestamp: chrono::Utc::now().timestamp(),
    }))
}
