//! `Messages - Send` and `Messages - Actions`: what a session sends through its WhatsApp client.
//!
//! One file per family: [`send`] (text, location, contact), [`media`] (image, audio, video,
//! document, sticker), [`actions`] (edit, react, delete),
//! [`poll`] (polls and votes), [`rich`] (buttons, lists, templates, interactive, carousels),
//! [`unavailable`] (asking the phone for a message);
//! the helpers here are shared by all of them.

mod actions;
pub(crate) mod media;
mod poll;
mod rich;
mod send;
mod unavailable;

use axum::{Json, Router, routing::post};
use whatsapp_rust::{
    wacore::proto_helpers::{MessageBuilderExt, build_quote_context},
    waproto::whatsapp as wa,
};

use crate::{
    app::AppState,
    engine::jid::parse_recipient,
    error::ApiError,
    http::dto::{Quoted, SendResponse},
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/{session}/message/send/text", post(send::text))
        .route("/{session}/message/send/location", post(send::location))
        .route("/{session}/message/send/contact", post(send::contact))
        .route("/{session}/message/send/image", post(media::image))
        .route("/{session}/message/send/audio", post(media::audio))
        .route("/{session}/message/send/video", post(media::video))
        .route("/{session}/message/send/document", post(media::document))
        .route("/{session}/message/send/sticker", post(media::sticker))
        .route("/{session}/message/send/poll", post(poll::send))
        .route("/{session}/message/send/buttons", post(rich::buttons))
        .route("/{session}/message/send/list", post(rich::list))
        .route(
            "/{session}/message/send/interactive",
            post(rich::interactive),
        )
        .route("/{session}/message/send/template", post(rich::template))
        .route("/{session}/message/send/carousel", post(rich::carousel))
        .route("/{session}/message/edit", post(actions::edit))
        .route("/{session}/message/react", post(actions::react))
        .route("/{session}/message/delete", post(actions::delete))
        .route("/{session}/message/poll/vote", post(poll::vote))
        .route(
            "/{session}/message/request-unavailable",
            post(unavailable::request),
        )
}

pub(super) fn recipient(field: &str, raw: &str) -> Result<whatsapp_rust::Jid, ApiError> {
    parse_recipient(raw).map_err(|why| ApiError::bad_request(format!("{field} {why}")))
}

pub(super) fn required<'a>(field: &str, value: &'a str) -> Result<&'a str, ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::bad_request(format!("{field} is required")));
    }
    Ok(value)
}

/// The reply context of `quoted`, the quoted sender defaulting to the chat.
pub(super) fn quote(q: &Quoted, chat: &whatsapp_rust::Jid) -> Result<wa::ContextInfo, ApiError> {
    let id = required("quoted.messageId", &q.message_id)?;
    let sender = match &q.participant {
        Some(p) => recipient("quoted.participant", p)?.to_string(),
        None => chat.to_string(),
    };
    // The quoted body is not known here; WhatsApp clients show the original by its id.
    Ok(build_quote_context(id, sender, &wa::Message::text("")))
}

pub(super) fn sent(message_id: String) -> Json<SendResponse> {
    Json(SendResponse {
        message_id,
        timestamp: chrono::Utc::now().timestamp(),
    })
}

/// Puts the reply context on any message kind that carries one.
pub(super) fn with_quote(
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
