//! Messages that change another message: reactions (`message.reaction`), edits
//! (`message.edited`) and deletions for everyone (`message.deleted`). Each is stored on the
//! message it changes (its reaction row, its new content, its deletion mark) together with the
//! event, in one transaction; what WhatsApp redelivers is neither stored nor announced twice.

use serde_json::{Value, json};
use uuid::Uuid;
use whatsapp_rust::{wacore::proto_helpers::MessageExt, waproto::whatsapp as wa};

use super::payload::event;
use super::{Envelope, content, info};
use crate::store::{
    Store, StoreResult,
    events::{MessageChange, ReactionRow},
};

/// A message that changes another one.
#[derive(Debug, Clone, Copy)]
pub enum Update<'a> {
    Reaction(&'a wa::message::ReactionMessage),
    Edit(&'a wa::message::ProtocolMessage),
    Revoke(&'a wa::message::ProtocolMessage),
}

impl Update<'_> {
    pub fn name(&self) -> &'static str {
        match self {
            Update::Reaction(_) => "reaction",
            Update::Edit(_) => "edit",
            Update::Revoke(_) => "revoke",
        }
    }
}

/// `Some` when `message` reacts to, edits or revokes another message.
pub fn classify(message: &wa::Message) -> Option<Update<'_>> {
    use wa::message::protocol_message::Type;
    let base = message.get_base_message();
    if let Some(r) = base.reaction_message.as_option() {
        return Some(Update::Reaction(r));
    }
    let p = base.protocol_message.as_option()?;
    match p.r#type {
        Some(Type::MESSAGE_EDIT) => Some(Update::Edit(p)),
        Some(Type::REVOKE) => Some(Update::Revoke(p)),
        _ => None,
    }
}

/// Stores the change and appends its event; `false` when it changed nothing (redelivered,
/// stale, or not the sender's to make).
pub async fn record(
    store: &dyn Store,
    session: &str,
    session_id: Uuid,
    update: Update<'_>,
    message: &wa::Message,
    e: &Envelope<'_>,
) -> StoreResult<bool> {
    let fields = info::message_fields(message, e);
    let chat = e.chat.to_non_ad().to_string();
    let sender = e.sender.to_non_ad().to_string();
    let sent_ms = e.timestamp.saturating_mul(1000);
    match update {
        Update::Reaction(r) => {
            let target = target_id(r.key.as_option());
            let emoji = r.text.clone().unwrap_or_default();
            let row = ReactionRow {
                chat_jid: chat,
                msg_id: target.clone(),
                sender_jid: sender,
                emoji: emoji.clone(),
                timestamp: r.sender_timestamp_ms.unwrap_or(sent_ms),
            };
            let extra = json!({"reaction": {
                "messageId": target,
                "chat": row.chat_jid,
                "sender": row.sender_jid,
                "senderPhone": e.sender_pn.map(|j| j.to_non_ad().to_string()),
                "fromMe": e.from_me,
                "emoji": emoji,
                "removed": emoji.is_empty(),
            }});
            let ev = event(session, "message.reaction", merged(fields, extra));
            store
                .record_reaction(session_id, &row, std::slice::from_ref(&ev))
                .await
        }
        Update::Edit(p) => {
            let change = change(p, e, sent_ms);
            let new_content = p
                .edited_message
                .as_option()
                .and_then(|m| content(m.get_base_message()));
            let extra = json!({"edit": {
                "messageId": change.msg_id,
                "chat": chat,
                "sender": change.sender_jid,
                "senderPhone": change.sender_pn,
                "fromMe": e.from_me,
                "content": new_content,
            }});
            let ev = event(session, "message.edited", merged(fields, extra));
            store
                .record_edit(
                    session_id,
                    &change,
                    new_content.as_deref(),
                    std::slice::from_ref(&ev),
                )
                .await
        }
        Update::Revoke(p) => {
            let change = change(p, e, sent_ms);
            let extra = json!({"deleted": {
                "messageId": change.msg_id,
                "chat": chat,
                "sender": change.sender_jid,
                "senderPhone": change.sender_pn,
                "fromMe": e.from_me,
                "originalSender": p.key.as_option().and_then(|k| k.participant.clone()),
            }});
            let ev = event(session, "message.deleted", merged(fields, extra));
            store
                .record_revoke(session_id, &change, std::slice::from_ref(&ev))
                .await
        }
    }
}

fn target_id(key: Option<&wa::MessageKey>) -> String {
    key.and_then(|k| k.id.clone()).unwrap_or_default()
}

fn change(p: &wa::message::ProtocolMessage, e: &Envelope<'_>, sent_ms: i64) -> MessageChange {
    MessageChange {
        msg_id: target_id(p.key.as_option()),
        sender_jid: e.sender.to_non_ad().to_string(),
        sender_pn: e.sender_pn.map(|j| j.to_non_ad().to_string()),
        from_me: e.from_me,
        is_group: e.is_group,
        at_ms: p.timestamp_ms.unwrap_or(sent_ms),
    }
}

fn merged(mut a: Value, b: Value) -> Value {
    if let (Value::Object(a), Value::Object(b)) = (&mut a, b) {
        a.extend(b);
    }
    a
}

/// The message whatsapp-rust sends for a reaction, built the same way for our store.
pub fn reaction_message(key: wa::MessageKey, emoji: &str) -> wa::Message {
    wa::Message {
        reaction_message: whatsapp_rust::waproto::buffa::MessageField::some(
            wa::message::ReactionMessage {
                key: whatsapp_rust::waproto::buffa::MessageField::some(key),
                text: Some(emoji.to_string()),
                sender_timestamp_ms: Some(chrono::Utc::now().timestamp_millis()),
                ..Default::default()
            },
        ),
        ..Default::default()
    }
}

/// The protocol message of an edit (`Some(content)`) or a revoke (`None`) we sent for the
/// message `id` (someone else's, `participant`, when a group admin revokes it).
pub fn own_change_message(
    chat: &whatsapp_rust::Jid,
    id: &str,
    participant: Option<&whatsapp_rust::Jid>,
    edit: Option<wa::Message>,
) -> wa::Message {
    use wa::message::protocol_message::Type;
    let key = wa::MessageKey {
        remote_jid: Some(chat.to_string()),
        from_me: Some(participant.is_none()),
        id: Some(id.to_string()),
        participant: participant.map(ToString::to_string),
    };
    let (kind, edited) = match edit {
        Some(m) => (
            Type::MESSAGE_EDIT,
            whatsapp_rust::waproto::buffa::MessageField::some(m),
        ),
        None => (Type::REVOKE, Default::default()),
    };
    wa::Message {
        protocol_message: whatsapp_rust::waproto::buffa::MessageField::some(
            wa::message::ProtocolMessage {
                key: whatsapp_rust::waproto::buffa::MessageField::some(key),
                r#type: Some(kind),
                edited_message: edited,
                timestamp_ms: Some(chrono::Utc::now().timestamp_millis()),
                ..Default::default()
            },
        ),
        ..Default::default()
    }
}
