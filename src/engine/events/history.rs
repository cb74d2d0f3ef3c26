//! History sync: the chats and messages the phone sends a companion, stored as OnWapp stores
//! them (chats come from history; its messages are stored without a `message.received` each)
//! and announced once as `history.sync`, with a summary instead of OnWapp's whole blob.

use serde_json::json;
use whatsapp_rust::{
    Jid, types::events::LazyHistorySync, wacore_binary::JidExt, waproto::whatsapp as wa,
};

use super::notify::Me;
use super::payload::event;
use super::{Envelope, message_row, updates};
use crate::store::{
    chat::{ChatRow, MessageRow},
    events::{ContactPatch, NewEvent},
};

/// What one history sync chunk stores.
#[derive(Debug, Clone, Default)]
pub struct HistoryRows {
    pub chats: Vec<ChatRow>,
    pub messages: Vec<MessageRow>,
    pub contacts: Vec<ContactPatch>,
}

/// Decodes the chunk (inflating it: call off the async runtime) into rows and its event.
pub fn decode(session: &str, sync: &LazyHistorySync, me: &Me) -> (HistoryRows, NewEvent) {
    let rows = sync.get().map(|d| rows(d, me)).unwrap_or_default();
    let ev = event(
        session,
        "history.sync",
        json!({
            "Type": sync.sync_type(),
            "ChunkOrder": sync.chunk_order(),
            "Progress": sync.progress(),
            "Size": sync.decompressed_size(),
            "Conversations": sync.get().map(|d| d.conversations.len()),
            "chats": rows.chats.len(),
            "messages": rows.messages.len(),
            "decoded": sync.get().is_some(),
        }),
    );
    (rows, ev)
}

/// The chats, messages and push names of a decoded chunk.
pub fn rows(sync: &wa::HistorySync, me: &Me) -> HistoryRows {
    let mut out = HistoryRows::default();
    for c in &sync.conversations {
        let Ok(chat) = c.id.parse::<Jid>() else {
            continue;
        };
        out.chats.push(ChatRow {
            jid: chat.to_non_ad().to_string(),
            name: c.name.clone().filter(|n| !n.is_empty()),
            unread_count: i32::try_from(c.unread_count.unwrap_or(0)).unwrap_or(i32::MAX),
            marked_as_unread: c.marked_as_unread.unwrap_or(false),
            ephemeral_expiration: i64::from(c.ephemeral_expiration.unwrap_or(0)),
            conversation_timestamp: c
                .conversation_timestamp
                .or(c.last_msg_timestamp)
                .and_then(|t| i64::try_from(t).ok()),
        });
        for m in c.messages.iter().filter_map(|h| h.message.as_option()) {
            if let Some(row) = message(&chat, m, me) {
                out.messages.push(row);
            }
        }
    }
    out.contacts = sync
        .pushnames
        .iter()
        .filter_map(|p| {
            let jid = p.id.as_deref()?.parse::<Jid>().ok()?;
            Some(ContactPatch {
                jid: jid.to_non_ad().to_string(),
                push_name: p.pushname.clone().filter(|n| !n.is_empty()),
                ..Default::default()
            })
        })
        .collect();
    out
}

/// One history message as a stored row; `None` for what is not a chat message.
fn message(chat: &Jid, m: &wa::WebMessageInfo, me: &Me) -> Option<MessageRow> {
    use wa::web_message_info::Status;
    let key = m.key.as_option()?;
    let id = key.id.as_deref()?;
    let content = m.message.as_option()?;
    if updates::classify(content).is_some() {
        return None;
    }
    let from_me = key.from_me.unwrap_or(false);
    let participant = key
        .participant
        .as_deref()
        .or(m.participant.as_deref())
        .and_then(|p| p.parse::<Jid>().ok());
    let sender = if from_me {
        me.pn.clone().unwrap_or_else(|| chat.clone())
    } else {
        participant.unwrap_or_else(|| chat.clone())
    };
    let envelope = Envelope {
        id,
        chat,
        sender: &sender,
        sender_pn: None,
        from_me,
        is_group: chat.is_group(),
        push_name: m.push_name.as_deref().unwrap_or_default(),
        timestamp: m
            .message_timestamp
            .and_then(|t| i64::try_from(t).ok())
            .unwrap_or_default(),
    };
    let mut row = message_row(content, &envelope);
    if row.kind == "protocol" || (row.kind == "unknown" && row.content.is_none()) {
        return None;
    }
    if from_me {
        row.status = match m.status {
            Some(Status::ERROR) => "failed",
            Some(Status::PENDING) => "pending",
            Some(Status::DELIVERY_ACK) => "delivered",
            Some(Status::READ) => "read",
            Some(Status::PLAYED) => "played",
            _ => "sent",
        }
        .to_string();
    }
    Some(row)
}

#[cfg(test)]
mod tests {
    use super::*;
    use whatsapp_rust::waproto::buffa::MessageField;

    fn web(id: &str, from_me: bool, text: &str, t: u64) -> wa::HistorySyncMsg {
        wa::HistorySyncMsg {
            message: MessageField::some(wa::WebMessageInfo {
                key: MessageField::some(wa::MessageKey {
                    remote_jid: Some("5511900000002@s.whatsapp.net".into()),
                    from_me: Some(from_me),
                    id: Some(id.into()),
                    participant: None,
                }),
                message: MessageField::some(wa::Message {
                    conversation: Some(text.into()),
                    ..Default::default()
                }),
                message_timestamp: Some(t),
                status: from_me.then_some(wa::web_message_info::Status::READ),
                ..Default::default()
            }),
            msg_order_id: None,
        }
    }

    #[test]
    fn chats_messages_and_push_names_of_a_chunk() {
        let sync = wa::HistorySync {
            sync_type: wa::history_sync::HistorySyncType::RECENT,
            conversations: vec![wa::Conversation {
                id: "5511900000002@s.whatsapp.net".into(),
                name: Some("Ana".into()),
                unread_count: Some(1),
                conversation_timestamp: Some(1_700_000_100),
                messages: vec![
                    web("H1", false, "old news", 1_700_000_000),
                    web("H2", true, "my answer", 1_700_000_100),
                ],
                ..Default::default()
            }],
            pushnames: vec![wa::Pushname {
                id: Some("5511900000002@s.whatsapp.net".into()),
                pushname: Some("Ana P.".into()),
            }],
            ..Default::default()
        };
        let me = Me {
            pn: Some("5511900000001:2@s.whatsapp.net".parse().expect("jid")),
            lid: None,
        };
        let r = rows(&sync, &me);
        assert_eq!(r.chats[0].name.as_deref(), Some("Ana"));
        assert_eq!(r.chats[0].conversation_timestamp, Some(1_700_000_100));
        let got: Vec<(&str, Option<&str>, &str, Option<&str>)> = r
            .messages
            .iter()
            .map(|m| {
                (
                    m.msg_id.as_str(),
                    m.content.as_deref(),
                    m.status.as_str(),
                    m.sender_jid.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "H1",
                    Some("old news"),
                    "delivered",
                    Some("5511900000002@s.whatsapp.net")
                ),
                (
                    "H2",
                    Some("my answer"),
                    "read",
                    Some("5511900000001@s.whatsapp.net")
                ),
            ]
        );
        assert_eq!(r.contacts[0].push_name.as_deref(), Some("Ana P."));
    }
}
