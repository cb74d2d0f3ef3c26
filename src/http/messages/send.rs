//! Text, location and contact messages.

use axum::{Json, extract::State};
use whatsapp_rust::{wacore::proto_helpers::MessageBuilderExt, waproto::whatsapp as wa};

use super::{quote, recipient, required, sent, with_quote};
use crate::{
    app::AppState,
    error::{ApiError, ApiResult},
    http::{
        dto::{SendContactRequest, SendLocationRequest, SendResponse, SendTextRequest},
        extract::{JsonBody, SessionCtx},
    },
};

pub(super) async fn text(
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

pub(super) async fn location(
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

pub(super) async fn contact(
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
