//! Session settings shapes (`/:session/settings`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Settings of a session: local behaviour plus WhatsApp privacy.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SettingsResponse {
    /// Settings id.
    pub id: String,
    /// Id of the owning session.
    pub session_id: String,
    /// Keep the session shown as online.
    pub always_online: bool,
    /// Reject incoming calls automatically.
    pub auto_reject_calls: bool,
    /// Synchronise chat history.
    pub sync_history: bool,
    /// Who sees last seen: all, contacts, contact_blacklist, none.
    pub last_seen: String,
    /// Who sees online: all, match_last_seen.
    pub online: String,
    /// Who sees the profile photo: all, contacts, contact_blacklist, none.
    pub profile_photo: String,
    /// Who sees the status: all, contacts, contact_blacklist, none.
    pub status: String,
    /// Read receipts: all, none.
    pub read_receipts: String,
    /// Who can add to groups: all, contacts, contact_blacklist.
    pub group_add: String,
    /// Who can call: all, known.
    pub call_add: String,
    /// Default disappearing timer: off, 24h, 7d, 90d.
    pub default_disappearing_timer: String,
    /// Last time privacy was read from WhatsApp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy_synced_at: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last update time.
    pub updated_at: DateTime<Utc>,
}

/// Body of `POST /:session/settings`; every field is optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateSettingsRequest {
    /// Keep the session shown as online.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub always_online: Option<bool>,
    /// Reject incoming calls automatically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_reject_calls: Option<bool>,
    /// Synchronise chat history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_history: Option<bool>,
    /// all, contacts, contact_blacklist, none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
    /// all, match_last_seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<String>,
    /// all, contacts, contact_blacklist, none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_photo: Option<String>,
    /// all, contacts, contact_blacklist, none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// all, none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_receipts: Option<String>,
    /// all, contacts, contact_blacklist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_add: Option<String>,
    /// all, known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_add: Option<String>,
    /// off, 24h, 7d, 90d.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_disappearing_timer: Option<String>,
}
