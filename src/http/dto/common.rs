//! Shapes shared by several contract sections.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Standard error body returned with every non-2xx status.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// Human readable error description.
    pub error: String,
}

/// Body made of a single human readable message.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageResponse {
    /// Result message, e.g. `session deleted`.
    pub message: String,
}

/// Empty JSON object (`{}`) returned by action routes with nothing to report.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmptyResponse {}

/// Body made of a single status word, e.g. `{"status":"archived"}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SimpleStatusResponse {
    /// Resulting state, e.g. `available`, `marked_unread`, `archived`.
    pub status: String,
}

/// Result of every message send and message action.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendResponse {
    /// WhatsApp message id of the sent message.
    pub message_id: String,
    /// Server timestamp of the send, in unix seconds.
    pub timestamp: i64,
}

/// Reference to a message being quoted (replied to) by a send.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Quoted {
    /// Id of the quoted message.
    pub message_id: String,
    /// JID of the quoted message's sender (needed in groups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participant: Option<String>,
}

/// Profile picture location of a contact or group.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PictureUrlResponse {
    /// Picture URL; empty when there is no picture.
    pub url: String,
    /// Picture id, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// Id of a newly set profile or group picture.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PictureIdResponse {
    /// WhatsApp picture id.
    pub picture_id: String,
}
