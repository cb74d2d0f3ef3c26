//! History sync from the phone: a real phone sends a new companion (and later, on demand)
//! its chats and recent messages as a `HistorySync` protobuf, zlib-compressed, announced by a
//! `HISTORY_SYNC_NOTIFICATION` protocol message. Large blobs are uploaded as media; small
//! ones ride inline (`initialHistBootstrapInlinePayload`), which is what wamock sends.

use serde::Deserialize;
use waproto::buffa::{Message as _, MessageField};
use waproto::whatsapp as wa;

use crate::accounts::DeviceAddr;
use crate::error::{Error, Result};
use crate::keyshare::{self, Phone};
use crate::state::{Delivery, State};

/// `{"conversations": [...], "pushnames"?: [{"id", "pushName"}]}`.
#[derive(Debug, Clone, Deserialize)]
pub struct HistoryRequest {
    pub conversations: Vec<ConversationRequest>,
    #[serde(default)]
    pub pushnames: Vec<PushnameRequest>,
}

/// One chat: `{"id": "<jid>", "name"?, "unreadCount"?, "messages": [...]}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationRequest {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub unread_count: Option<u32>,
    #[serde(default)]
    pub messages: Vec<MessageRequest>,
}

/// One text message: `{"id", "text", "fromMe"?, "timestamp"?, "pushName"?, "participant"?}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageRequest {
    pub id: String,
    pub text: String,
    #[serde(default)]
    pub from_me: bool,
    #[serde(default)]
    pub timestamp: Option<u64>,
    #[serde(default)]
    pub push_name: Option<String>,
    #[serde(default)]
    pub participant: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushnameRequest {
    pub id: String,
    pub push_name: String,
}

/// The `HistorySync` (type `RECENT`) a request describes.
pub fn build(req: &HistoryRequest) -> wa::HistorySync {
    let now = crate::nodes::unix_now();
    let conversations = req
        .conversations
        .iter()
        .map(|c| {
            let last = c.messages.iter().filter_map(|m| m.timestamp).max();
            wa::Conversation {
                id: c.id.clone(),
                name: c.name.clone(),
                unread_count: c.unread_count,
                conversation_timestamp: last.or(Some(now)),
                messages: c
                    .messages
                    .iter()
                    .enumerate()
                    .map(|(i, m)| wa::HistorySyncMsg {
                        message: MessageField::some(wa::WebMessageInfo {
                            key: MessageField::some(wa::MessageKey {
                                remote_jid: Some(c.id.clone()),
                                from_me: Some(m.from_me),
                                id: Some(m.id.clone()),
                                participant: m.participant.clone(),
                            }),
                            message: MessageField::some(wa::Message {
                                conversation: Some(m.text.clone()),
                                ..Default::default()
                            }),
                            message_timestamp: Some(m.timestamp.unwrap_or(now)),
                            push_name: m.push_name.clone(),
                            ..Default::default()
                        }),
                        msg_order_id: Some(i as u64 + 1),
                    })
                    .collect(),
                ..Default::default()
            }
        })
        .collect();
    wa::HistorySync {
        sync_type: wa::history_sync::HistorySyncType::RECENT,
        conversations,
        pushnames: req
            .pushnames
            .iter()
            .map(|p| wa::Pushname {
                id: Some(p.id.clone()),
                pushname: Some(p.push_name.clone()),
            })
            .collect(),
        chunk_order: Some(1),
        progress: Some(100),
        ..Default::default()
    }
}

/// A zlib stream of stored (uncompressed) deflate blocks: valid for any inflater.
pub fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let mut chunks = data.chunks(0xFFFF).peekable();
    if chunks.peek().is_none() {
        out.extend([1, 0, 0, 0xFF, 0xFF]);
    }
    while let Some(chunk) = chunks.next() {
        out.push(u8::from(chunks.peek().is_none()));
        let len = u16::try_from(chunk.len()).unwrap_or(u16::MAX);
        out.extend(len.to_le_bytes());
        out.extend((!len).to_le_bytes());
        out.extend(chunk);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    out.extend(((b << 16) | a).to_be_bytes());
    out
}

/// The phone's `HISTORY_SYNC_NOTIFICATION` carrying `sync` inline.
pub fn notification(sync: &wa::HistorySync) -> wa::Message {
    let compressed = zlib_stored(&sync.encode_to_vec());
    wa::Message {
        protocol_message: MessageField::some(wa::message::ProtocolMessage {
            r#type: Some(wa::message::protocol_message::Type::HISTORY_SYNC_NOTIFICATION),
            history_sync_notification: MessageField::some(wa::message::HistorySyncNotification {
                file_length: Some(compressed.len() as u64),
                sync_type: Some(wa::message::HistorySyncType::RECENT),
                chunk_order: sync.chunk_order,
                progress: sync.progress,
                initial_hist_bootstrap_inline_payload: Some(compressed),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Sends `sync` from the phone to the companion `addr` (now if it is connected, else at
/// its next login). Returns how it was delivered.
pub async fn push(state: &State, addr: &DeviceAddr, sync: &wa::HistorySync) -> Result<Delivery> {
    let mut keys = state
        .with_device(addr, |d| d.keys.clone())
        .ok_or_else(|| Error::Crypto("no such device".into()))?;
    // A fresh X3DH without a one-time pre-key: nothing to take from the server's bundle.
    keys.one_time.clear();
    let (key, registration_id, raw_id, app_state_key) = state
        .with_account(&addr.phone, false, |a| {
            (
                a.key.clone(),
                a.registration_id,
                a.raw_id,
                a.app_state_key.clone(),
            )
        })
        .ok_or_else(|| Error::Crypto("no such account".into()))?;
    let phone = Phone {
        phone: &addr.phone,
        key: &key,
        registration_id,
        raw_id,
        app_state_key: &app_state_key,
    };
    let node = keyshare::peer_stanza(&phone, addr.device, &keys, &notification(sync)).await?;
    tracing::info!(jid = %addr.jid(), chats = sync.conversations.len(), "history sync sent");
    Ok(state.deliver(addr, node))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_zlib_inflates_with_whatsapp_rusts_inflater() {
        for len in [0usize, 5, 70_000] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let z = zlib_stored(&data);
            let back = wacore_binary::zlib_pool::decompress_zlib_pooled(&z, len as u64 + 10)
                .expect("inflates");
            assert_eq!(back, data, "{len}");
        }
    }

    #[test]
    fn a_request_becomes_a_recent_sync() {
        let req: HistoryRequest = serde_json::from_value(serde_json::json!({
            "conversations": [{"id": "5511900000002@s.whatsapp.net", "name": "Ana", "unreadCount": 2,
                "messages": [{"id": "H1", "text": "old news", "timestamp": 1700000000}]}],
            "pushnames": [{"id": "5511900000002@s.whatsapp.net", "pushName": "Ana"}]
        }))
        .expect("request");
        let sync = build(&req);
        assert_eq!(sync.conversations[0].name.as_deref(), Some("Ana"));
        assert_eq!(
            sync.conversations[0].conversation_timestamp,
            Some(1_700_000_000)
        );
        let m = sync.conversations[0].messages[0]
            .message
            .as_option()
            .expect("msg");
        assert_eq!(
            m.message
                .as_option()
                .and_then(|x| x.conversation.as_deref()),
            Some("old news")
        );
        assert_eq!(sync.pushnames.len(), 1);
    }
}
