//! Health and session lifecycle shapes (`/`, `/health`, `/sessions`, `/:session/...`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Health report returned by `GET /` and `GET /health`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthResponse {
    /// `healthy`, or `degraded` when the database is unreachable.
    pub status: String,
    /// Server version.
    pub version: String,
    /// `connected` or `disconnected`.
    pub database: String,
    /// Current server time (RFC 3339, UTC, second precision).
    pub time: DateTime<Utc>,
}

/// Answer of `GET /health/live` (liveness probe).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LiveResponse {
    /// Always `alive`.
    pub status: String,
    pub version: String,
}

/// Answer of `GET /health/ready` (readiness probe): 200 when ready, 503 with the reasons.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadyResponse {
    /// `ready` or `not ready`.
    pub status: String,
    pub node_id: u64,
    /// The Raft leader this node knows.
    pub leader: Option<u64>,
    /// Whether this node's lease is valid (it may run WhatsApp connections).
    pub lease_valid: bool,
    /// What keeps the node from being ready (empty when ready).
    pub reasons: Vec<String>,
}

/// Message and chat counters of a connected session.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionStats {
    /// Stored messages.
    pub messages: i64,
    /// Stored chats.
    pub chats: i64,
    /// Known contacts.
    pub contacts: i64,
    /// Joined groups.
    pub groups: i64,
}

/// A WhatsApp session.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionResponse {
    /// Session id (UUID).
    pub id: String,
    /// Session name, used as `:session` in paths.
    pub session: String,
    /// Paired device JID, once paired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_jid: Option<String>,
    /// Paired phone number, once paired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// `disconnected`, `connecting` or `connected`.
    pub status: String,
    /// Why a `connecting` session is not connected yet (WhatsApp unreachable); absent
    /// otherwise. Not in OnWapp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// Session-scoped API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// WhatsApp display name (connected sessions only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_name: Option<String>,
    /// Profile picture URL (connected sessions only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_picture: Option<String>,
    /// Counters (connected sessions only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<SessionStats>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last update time.
    pub updated_at: DateTime<Utc>,
}

/// Array of sessions returned by `GET /sessions`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct SessionListResponse(pub Vec<SessionResponse>);

/// Body of `POST /sessions`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateSessionRequest {
    /// Unique session name.
    pub session: String,
    /// Session API key to use instead of a generated one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
}

/// Result of `POST /:session/connect`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectResponse {
    /// Human readable outcome.
    pub message: String,
    /// Session status after the call.
    pub status: String,
    /// Path of the QR endpoint, when a QR scan is needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qr: Option<String>,
}

/// Result of `GET /:session/qr` (JSON format).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QrResponse {
    /// QR code as a `data:image/png;base64,...` URL; absent when no QR is pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qr: Option<String>,
    /// The QR's text (what the image encodes), to render it elsewhere; absent with `qr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Session status.
    pub status: String,
}

/// Body of `POST /:session/pairphone`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PairPhoneRequest {
    /// Phone number with country code.
    pub phone: String,
}

/// Result of `POST /:session/pairphone`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PairPhoneResponse {
    /// Pairing code to type on the phone, e.g. `ABCD-EFGH`.
    pub code: String,
}

/// Query of `GET /:session/qr`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QrQuery {
    /// `json` (default) or `image` for the raw PNG.
    #[serde(default)]
    pub format: Option<String>,
}
