//! Stored media shapes (`/:session/media/...`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Query of the media routes (`limit`, `offset`, `batchSize`, `messageId`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MediaQuery {
    /// Max results (default 100).
    #[serde(default)]
    pub limit: Option<i64>,
    /// Pagination offset (default 0).
    #[serde(default)]
    pub offset: Option<i64>,
    /// Downloads per batch for `process` (default 10).
    #[serde(default)]
    pub batch_size: Option<i64>,
    /// Message id for `download`.
    #[serde(default)]
    pub message_id: Option<String>,
}

/// A media file attached to a message. Optional fields are omitted when empty.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MediaRecord {
    /// Media id.
    pub id: String,
    /// Owning session id.
    pub session_id: String,
    /// Message id.
    pub msg_id: String,
    /// `image`, `video`, `audio`, `document` or `sticker`.
    pub media_type: String,
    /// MIME type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// Size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_size: Option<i64>,
    /// File name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    /// WhatsApp direct path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wa_direct_path: Option<String>,
    /// WhatsApp media key (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wa_media_key: Option<String>,
    /// SHA-256 of the plain file (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wa_file_sha256: Option<String>,
    /// SHA-256 of the encrypted file (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wa_file_enc_sha256: Option<String>,
    /// Media key timestamp, unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wa_media_key_timestamp: Option<i64>,
    /// Width in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<i64>,
    /// Height in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<i64>,
    /// Duration in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<i64>,
    /// Object storage key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_key: Option<String>,
    /// Public URL of the stored file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_url: Option<String>,
    /// Time the file was stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_at: Option<DateTime<Utc>>,
    /// Object storage key of the thumbnail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail_key: Option<String>,
    /// Public URL of the thumbnail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail_url: Option<String>,
    /// The file has been downloaded and stored.
    pub downloaded: bool,
    /// Last download error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_error: Option<String>,
    /// Download attempts so far.
    pub download_attempts: i64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last update time.
    pub updated_at: DateTime<Utc>,
    /// Chat JID of the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_jid: Option<String>,
    /// Message sent by this session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_me: Option<bool>,
    /// Message caption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    /// Sender display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_name: Option<String>,
}

/// Result of `GET /:session/media/list`, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MediaListResponse {
    /// Number of records returned.
    pub count: i64,
    /// Limit applied.
    pub limit: i64,
    /// Media records.
    pub media: Vec<MediaRecord>,
    /// Offset applied.
    pub offset: i64,
}

/// Result of `GET /:session/media/pending`, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MediaPendingResponse {
    /// Number of records returned.
    pub count: i64,
    /// Media records still to download.
    pub media: Vec<MediaRecord>,
}

/// Result of `POST /:session/media/process`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MediaProcessResponse {
    /// Downloads that failed.
    pub failed: i64,
    /// Outcome message.
    pub message: String,
    /// Downloads that succeeded.
    pub success: i64,
}
