//! Chatwoot integration shapes (`/sessions/:sessionId/chatwoot/...`, `/chatwoot/webhook/:sessionId`).
//!
//! 0.2.8 spellings `url`, `token`, `account` are accepted beside `baseUrl`, `apiAccessToken`,
//! `accountId`.

use super::bounded;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Body of `POST /sessions/:sessionId/chatwoot/set` (full replace).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatwootConfigRequest {
    /// Chatwoot base URL (0.2.8 spelling: `url`).
    #[serde(alias = "url")]
    pub base_url: String,
    /// Chatwoot API access token (0.2.8 spelling: `token`).
    #[serde(alias = "token")]
    pub api_access_token: String,
    /// Chatwoot account id (0.2.8 spelling: `account`).
    #[serde(alias = "account")]
    pub account_id: i64,
    /// Chatwoot inbox id; 0.2.8 clients may omit it and name the inbox with `inbox`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbox_id: Option<i64>,
    /// Integration enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Inbox name (default: session name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbox: Option<String>,
    /// Prefix the agent name to outgoing text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_agent: Option<bool>,
    /// Separator after the agent name (default newline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_separator: Option<String>,
    /// Reopen resolved conversations on new messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_reopen: Option<bool>,
    /// Create new conversations as pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_pending: Option<bool>,
    /// Merge Brazilian numbers with and without the ninth digit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_br_phones: Option<bool>,
    /// Sync contacts flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_contacts: Option<bool>,
    /// Sync messages flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_messages: Option<bool>,
    /// Days of history to sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_days: Option<i64>,
    /// Chat JIDs never mirrored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "bounded::opt_vec::<_, _, { bounded::IDS }>")]
    pub ignore_chats: Option<Vec<String>>,
    /// Create the bot contact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_create: Option<bool>,
    /// Bot contact number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    /// Bot contact organization name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    /// Bot contact avatar URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo: Option<String>,
    /// Chatwoot database host (needed by sync, overview, reset, resolve-all, stats).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chatwoot_db_host: Option<String>,
    /// Chatwoot database port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chatwoot_db_port: Option<i64>,
    /// Chatwoot database user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chatwoot_db_user: Option<String>,
    /// Chatwoot database password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chatwoot_db_pass: Option<String>,
    /// Chatwoot database name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chatwoot_db_name: Option<String>,
}

/// Chatwoot configuration of a session.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatwootConfigResponse {
    /// Config id; empty when none is configured.
    pub id: String,
    /// Id of the owning session.
    pub session_id: String,
    /// Integration enabled.
    pub enabled: bool,
    /// Chatwoot base URL.
    pub base_url: String,
    /// Chatwoot API access token.
    pub api_access_token: String,
    /// Chatwoot account id.
    pub account_id: i64,
    /// Chatwoot inbox id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbox_id: Option<i64>,
    /// Inbox name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbox: Option<String>,
    /// Prefix the agent name to outgoing text.
    pub sign_agent: bool,
    /// Separator after the agent name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_separator: Option<String>,
    /// Reopen resolved conversations on new messages.
    pub auto_reopen: bool,
    /// Create new conversations as pending.
    pub start_pending: bool,
    /// Merge Brazilian numbers with and without the ninth digit.
    pub merge_br_phones: bool,
    /// Sync contacts flag.
    pub sync_contacts: bool,
    /// Sync messages flag.
    pub sync_messages: bool,
    /// Days of history to sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_days: Option<i64>,
    /// Import conversations as resolved.
    pub import_as_resolved: bool,
    /// Chat JIDs never mirrored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_chats: Option<Vec<String>>,
    /// Create the bot contact.
    pub auto_create: bool,
    /// URL Chatwoot must call for this session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// Chatwoot database host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chatwoot_db_host: Option<String>,
    /// Chatwoot database port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chatwoot_db_port: Option<i64>,
    /// Chatwoot database user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chatwoot_db_user: Option<String>,
    /// Chatwoot database password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chatwoot_db_pass: Option<String>,
    /// Chatwoot database name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chatwoot_db_name: Option<String>,
    /// Creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    /// Last update time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
}

/// Query of the sync routes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatwootSyncQuery {
    /// Days of history to sync.
    #[serde(default)]
    pub days: Option<i64>,
}

/// Contact sync breakdown.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatwootContactDetails {
    /// Contacts saved in the address book.
    pub saved_contacts: i64,
    /// Business contacts.
    pub business_contacts: i64,
    /// Contacts already in Chatwoot.
    pub already_exists: i64,
    /// Groups skipped.
    pub groups: i64,
    /// Status broadcast entries skipped.
    pub status_broadcast: i64,
    /// Newsletters skipped.
    pub newsletters: i64,
    /// Contacts not in the address book.
    pub not_in_agenda: i64,
    /// LID-only contacts.
    pub lid_contacts: i64,
    /// Invalid phone numbers.
    pub invalid_phone: i64,
    /// Total WhatsApp contacts seen.
    pub total_whats_app: i64,
}

/// Message sync breakdown.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatwootMessageDetails {
    /// Text messages.
    pub text_messages: i64,
    /// Media messages.
    pub media_messages: i64,
    /// Group messages.
    pub group_messages: i64,
    /// Messages already synced.
    pub already_synced: i64,
    /// Messages older than the window.
    pub old_messages: i64,
    /// Status broadcast messages skipped.
    pub status_broadcast: i64,
    /// Newsletter messages skipped.
    pub newsletters: i64,
    /// Protocol messages skipped.
    pub protocol: i64,
    /// Reactions skipped.
    pub reactions: i64,
    /// System messages skipped.
    pub system: i64,
    /// Messages without content.
    pub empty_content: i64,
    /// Media messages without stored media.
    pub no_media: i64,
    /// LID chats.
    pub lid_chats: i64,
    /// Private chats.
    pub private_chats: i64,
    /// Group chats.
    pub group_chats: i64,
}

/// Counters of a sync run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatwootSyncStats {
    /// Contacts imported.
    pub contacts_imported: i64,
    /// Contacts skipped.
    pub contacts_skipped: i64,
    /// Contact errors.
    pub contacts_errors: i64,
    /// Messages imported.
    pub messages_imported: i64,
    /// Messages skipped.
    pub messages_skipped: i64,
    /// Message errors.
    pub messages_errors: i64,
    /// Conversations used.
    pub conversations_used: i64,
    /// Total errors.
    pub errors: i64,
    /// Contact breakdown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_details: Option<ChatwootContactDetails>,
    /// Message breakdown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_details: Option<ChatwootMessageDetails>,
}

/// State of the Chatwoot sync of a session (sync routes answer 202 with it).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatwootSyncStatusResponse {
    /// Id of the session.
    pub session_id: String,
    /// `idle`, `running`, `completed` or `failed`.
    pub status: String,
    /// `""`, `all`, `contacts` or `messages`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Start of the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// End of the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    /// Counters.
    pub stats: ChatwootSyncStats,
    /// Failure reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Chatwoot contacts overview.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatwootContactsOverview {
    /// Contacts in Chatwoot.
    pub total_chatwoot: i64,
    /// Contacts linked to WhatsApp.
    pub whats_app_synced: i64,
    /// Group contacts.
    pub groups: i64,
    /// Private contacts.
    pub private: i64,
    /// Contacts with a name.
    pub with_name: i64,
    /// Contacts without a name.
    pub without_name: i64,
}

/// Chatwoot conversations overview.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatwootConversationsOverview {
    /// All conversations.
    pub total: i64,
    /// Open conversations.
    pub open: i64,
    /// Resolved conversations.
    pub resolved: i64,
    /// Pending conversations.
    pub pending: i64,
    /// Group conversations.
    pub group_chats: i64,
    /// Private conversations.
    pub private_chats: i64,
}

/// Chatwoot messages overview.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatwootMessagesOverview {
    /// All messages.
    pub total: i64,
    /// Incoming messages.
    pub incoming: i64,
    /// Outgoing messages.
    pub outgoing: i64,
}

/// Chatwoot side of the overview.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatwootOverviewData {
    /// Contacts.
    pub contacts: ChatwootContactsOverview,
    /// Conversations.
    pub conversations: ChatwootConversationsOverview,
    /// Messages.
    pub messages: ChatwootMessagesOverview,
}

/// WhatsApp side of the overview.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WhatsAppOverview {
    /// WhatsApp contacts.
    pub contacts: i64,
}

/// Result of `GET /sessions/:sessionId/chatwoot/overview`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatwootOverviewResponse {
    /// Chatwoot counters.
    pub chatwoot: ChatwootOverviewData,
    /// WhatsApp counters.
    pub whatsapp: WhatsAppOverview,
}

/// Result of `POST /sessions/:sessionId/chatwoot/resolve-all`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatwootResolveAllResponse {
    /// Outcome message.
    pub message: String,
    /// Conversations resolved.
    pub resolved: i64,
}

/// Result of `GET /sessions/:sessionId/chatwoot/conversations/stats`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatwootConversationStatsResponse {
    /// Open conversations.
    pub open: i64,
}

/// Rows deleted by a reset.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatwootResetCounts {
    /// Contacts deleted.
    pub contacts: i64,
    /// Conversations deleted.
    pub conversations: i64,
    /// Messages deleted.
    pub messages: i64,
}

/// Result of `POST /sessions/:sessionId/chatwoot/reset`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatwootResetResponse {
    /// Rows deleted.
    pub deleted: ChatwootResetCounts,
    /// Outcome message.
    pub message: String,
}

/// Inbound Chatwoot webhook payload (Chatwoot's own snake_case names; unknown fields ignored).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub struct ChatwootWebhookPayload {
    /// Event name, e.g. `message_created`, `message_updated`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// Chatwoot message id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// Message text (Chatwoot markdown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// `incoming`, `outgoing`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_type: Option<String>,
    /// Private note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private: Option<bool>,
    /// Source id, `WAID:<id>` for messages coming from WhatsApp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_id: Option<String>,
    /// Content attributes (`deleted`, `in_reply_to`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub content_attributes: Option<Box<serde_json::value::RawValue>>,
    /// Conversation (with `meta.sender`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub conversation: Option<Box<serde_json::value::RawValue>>,
    /// Sender (agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub sender: Option<Box<serde_json::value::RawValue>>,
    /// Attachments (`data_url`, `file_type`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub attachments: Option<Box<serde_json::value::RawValue>>,
}
