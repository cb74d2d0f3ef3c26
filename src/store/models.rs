//! Rows and inputs of the storage traits, independent of the database.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct NewSession {
    pub name: String,
    pub api_key: String,
    pub api_key_hash: String,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct SessionRecord {
    pub id: Uuid,
    pub name: String,
    pub api_key: String,
    pub status: String,
    pub device_jid: Option<String>,
    pub phone: Option<String>,
    pub push_name: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The engine's view of a session's device, written on every state change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceUpdate {
    pub status: String,
    pub device_jid: Option<String>,
    pub phone: Option<String>,
    pub push_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct SettingsRecord {
    pub id: Uuid,
    pub session_id: Uuid,
    pub always_online: bool,
    pub auto_reject_calls: bool,
    pub sync_history: bool,
    pub last_seen: String,
    pub online: String,
    pub profile_photo: String,
    pub status: String,
    pub read_receipts: String,
    pub group_add: String,
    pub call_add: String,
    pub default_disappearing_timer: String,
    pub privacy_synced_at: Option<DateTime<Utc>>,
    /// Fields stored but not pushed to WhatsApp yet (API names, comma-separated).
    pub privacy_pending: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A partial update of the settings: `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SettingsPatch {
    pub always_online: Option<bool>,
    pub auto_reject_calls: Option<bool>,
    pub sync_history: Option<bool>,
    pub last_seen: Option<String>,
    pub online: Option<String>,
    pub profile_photo: Option<String>,
    pub status: Option<String>,
    pub read_receipts: Option<String>,
    pub group_add: Option<String>,
    pub call_add: Option<String>,
    pub default_disappearing_timer: Option<String>,
    /// Replaces the list of fields not pushed to WhatsApp yet.
    pub privacy_pending: Option<String>,
    /// When the privacy values were last read from WhatsApp.
    pub privacy_synced_at: Option<DateTime<Utc>>,
}

impl SettingsPatch {
    pub fn is_empty(&self) -> bool {
        *self == SettingsPatch::default()
    }
}

/// What a client configures for a session's webhook.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookConfig {
    pub url: String,
    pub events: Vec<String>,
    pub enabled: bool,
    pub secret: Option<String>,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct WebhookRecord {
    pub id: Uuid,
    pub session_id: Uuid,
    pub url: String,
    pub events: Json<Vec<String>>,
    pub enabled: bool,
    pub secret: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}
