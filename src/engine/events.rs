//! whatsapp-rust events and messages, mapped once to our model: the stored message row and the
//! webhook event (OnWapp's dotted names, flat payload: `event`, `sessionId`, then the fields).

use serde_json::{Value, json};
use whatsapp_rust::{Jid, wacore::proto_helpers::MessageExt, waproto::whatsapp as wa};

use crate::store::chat::MessageRow;

pub mod history;
pub mod info;
pub mod notify;
pub mod payload;
pub mod poll_vote;
pub mod session;
pub mod updates;

/// Who, where and when of one message.
pub struct Envelope<'a> {
    pub id: &'a str,
    pub chat: &'a Jid,
    pub sender: &'a Jid,
    /// The sender's phone JID when the sender is a LID.
    pub sender_pn: Option<&'a Jid>,
    pub from_me: bool,
    pub is_group: bool,
    pub push_name: &'a str,
    pub timestamp: i64,
}

/// `type` and `mediaType` of a message, as the chat endpoints report them.
pub(crate) fn kind(m: &wa::Message) -> (&'static str, Option<&'static str>) {
    let media = [
        (m.image_message.is_set(), "image"),
        (m.video_message.is_set(), "video"),
        (m.audio_message.is_set(), "audio"),
        (m.document_message.is_set(), "document"),
        (m.sticker_message.is_set(), "sticker"),
    ];
    if let Some((_, k)) = media.iter().find(|(set, _)| *set) {
        return (k, Some(k));
    }
    let k = if m.conversation.is_some() || m.extended_text_message.is_set() {
        "text"
    } else if m.reaction_message.is_set() {
        "reaction"
    } else if m.location_message.is_set() {
        "location"
    } else if m.contact_message.is_set() {
        "contact"
    } else if m.contacts_array_message.is_set() {
        "contacts"
    } else if super::rich::poll_of(m).is_some() {
        "poll"
    } else if m.buttons_message.is_set() {
        "buttons"
    } else if m.list_message.is_set() {
        "list"
    } else if m.template_message.is_set() {
        "template"
    } else if m.interactive_message.is_set() {
        "interactive"
    } else if m.protocol_message.is_set() {
        "protocol"
    } else {
        "unknown"
    };
    (k, None)
}

/// Text, caption, file name, `"lat,lng"` or contact name: what the chat endpoints show.
fn content(m: &wa::Message) -> Option<String> {
    if let Some(t) = m.text_content() {
        return Some(t.to_string());
    }
    if let Some(c) = m.get_caption() {
        return Some(c.to_string());
    }
    if let Some(l) = m.location_message.as_option() {
        return Some(format!(
            "{:.6},{:.6}",
            l.degrees_latitude.unwrap_or_default(),
            l.degrees_longitude.unwrap_or_default()
        ));
    }
    if let Some(c) = m.contact_message.as_option() {
        return c.display_name.clone();
    }
    if let Some(text) = rich_text(m) {
        return Some(text);
    }
    m.document_message
        .as_option()
        .and_then(|d| d.file_name.clone())
}

/// Poll name, or the body of a buttons, list, template or interactive message.
fn rich_text(m: &wa::Message) -> Option<String> {
    use wa::message::template_message::Format;
    if let Some(p) = super::rich::poll_of(m) {
        return p.name.clone();
    }
    if let Some(b) = m.buttons_message.as_option() {
        return b.content_text.clone();
    }
    if let Some(l) = m.list_message.as_option() {
        return l.description.clone().or_else(|| l.title.clone());
    }
    if let Some(t) = m.template_message.as_option() {
        let hydrated = match &t.format {
            Some(Format::HydratedFourRowTemplate(h)) => Some(&**h),
            _ => t.hydrated_template.as_option(),
        };
        return hydrated.and_then(|h| h.hydrated_content_text.clone());
    }
    let i = m.interactive_message.as_option()?;
    i.body.as_option().and_then(|b| b.text.clone())
}

/// The stored row of a message.
pub fn message_row(message: &wa::Message, e: &Envelope<'_>) -> MessageRow {
    let base = message.get_base_message();
    let (kind, media) = kind(base);
    MessageRow {
        msg_id: e.id.to_string(),
        chat_jid: e.chat.to_non_ad().to_string(),
        sender_jid: Some(e.sender.to_non_ad().to_string()),
        push_name: (!e.push_name.is_empty()).then(|| e.push_name.to_string()),
        timestamp: e.timestamp,
        kind: kind.to_string(),
        media_type: media.map(str::to_string),
        content: content(base),
        from_me: e.from_me,
        is_group: e.is_group,
        quoted_id: base
            .extended_text_message
            .as_option()
            .and_then(|x| x.context_info.as_option())
            .and_then(|c| c.stanza_id.clone()),
        status: if e.from_me { "sent" } else { "delivered" }.to_string(),
    }
}

/// `message.sent` for our own messages, `message.received` for everyone else's.
pub fn message_event(from_me: bool) -> &'static str {
    if from_me {
        "message.sent"
    } else {
        "message.received"
    }
}

/// The webhook payload of a message event.
///
/// OnWapp's keys (`Info`, `Message`, the `Is*` flags) come first in meaning; `message` is our
/// summary of the stored row.
pub fn message_payload(
    session: &str,
    event: &str,
    row: &MessageRow,
    e: &Envelope<'_>,
    message: &wa::Message,
) -> Value {
    let mut payload = json!({
        "event": event,
        "sessionId": session,
        "id": uuid::Uuid::now_v7().to_string(),
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "message": {
            "id": row.msg_id,
            "chat": row.chat_jid,
            "sender": row.sender_jid,
            "senderPhone": e.sender_pn.map(|j| j.to_non_ad().to_string()),
            "fromMe": row.from_me,
            "isGroup": row.is_group,
            "pushName": row.push_name,
            "type": row.kind,
            "mediaType": row.media_type,
            "content": row.content,
            "quotedId": row.quoted_id,
            "timestamp": row.timestamp,
        },
    });
    if let (Value::Object(out), Value::Object(onwapp)) =
        (&mut payload, info::message_fields(message, e))
    {
        out.extend(onwapp);
    }
    payload
}
