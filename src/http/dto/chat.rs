//! Chat shapes (`/:session/chat/...`).

use super::bounded;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Body of `POST /:session/chat/presence`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatPresenceRequest {
    /// Phone number or JID of the chat.
    pub phone: String,
    /// `composing`, `recording` or `paused`.
    pub state: String,
    /// `audio` to show "recording" with state `composing`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<String>,
}

/// Result of `POST /:session/chat/presence`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatPresenceResponse {
    /// State now shown.
    pub state: String,
}

/// Body of `POST /:session/chat/markread`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MarkReadRequest {
    /// Phone number or JID of the chat.
    pub phone: String,
    /// Ids of the messages to mark as read.
    #[serde(deserialize_with = "bounded::vec::<_, _, { bounded::IDS }>")]
    pub message_ids: Vec<String>,
}

/// Body of `POST /:session/chat/unread`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MarkUnreadRequest {
    /// Phone number or JID of the chat.
    pub phone: String,
}

/// Body of `POST /:session/chat/archive`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveChatRequest {
    /// Phone number or JID of the chat.
    pub phone: String,
    /// `true` = archive, `false` = unarchive.
    pub archive: bool,
}

/// Body of `POST /:session/chat/disappearing`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DisappearingTimerRequest {
    /// Phone number or JID of the chat.
    pub phone: String,
    /// `24h`, `7d`, `90d` or `off`.
    pub timer: String,
}

/// Query of `GET /:session/chat/list`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatListQuery {
    /// Max results (default 100, max 500).
    #[serde(default)]
    pub limit: Option<i64>,
    /// Pagination offset (default 0).
    #[serde(default)]
    pub offset: Option<i64>,
    /// `true` to keep only unread chats.
    #[serde(default)]
    pub unread: Option<bool>,
}

/// Query of `GET /:session/chat/messages` and `GET /:session/chat/info`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatMessagesQuery {
    /// Chat JID.
    #[serde(default)]
    pub chat_id: Option<String>,
    /// Max results (default 50, max 200).
    #[serde(default)]
    pub limit: Option<i64>,
    /// Pagination offset (default 0).
    #[serde(default)]
    pub offset: Option<i64>,
}

/// A stored chat. Every field but `jid` is omitted when empty.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatRecord {
    /// Chat JID.
    pub jid: String,
    /// Chat name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Unread message count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unread_count: Option<i64>,
    /// Chat was marked as unread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marked_as_unread: Option<bool>,
    /// Disappearing timer in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_expiration: Option<i64>,
    /// Last activity, unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_timestamp: Option<i64>,
    /// Chat is read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// Chat is suspended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended: Option<bool>,
    /// Chat is locked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked: Option<bool>,
}

/// Result of `GET /:session/chat/list`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct ChatListResponse(pub Vec<ChatRecord>);

/// A stored message.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageRecord {
    /// WhatsApp message id.
    pub msg_id: String,
    /// Chat JID.
    pub chat_jid: String,
    /// Sender JID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_jid: Option<String>,
    /// Sender display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_name: Option<String>,
    /// Send time, unix seconds.
    pub timestamp: i64,
    /// Message type, e.g. `text`, `image`, `reaction`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Media type of media messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Text, caption, file name, `lat,lng`, contact or poll name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Sent by this session.
    pub from_me: bool,
    /// Chat is a group.
    pub is_group: bool,
    /// Id of the quoted message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quoted_id: Option<String>,
    /// `pending`, `sent`, `delivered`, `read`, `played` or `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// Result of `GET /:session/chat/messages`, newest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct ChatMessagesResponse(pub Vec<MessageRecord>);
