//! Status (stories) shapes (`/:session/status/...`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Body of `POST /:session/status/send`; give `text`, `image` or `video`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendStatusRequest {
    /// Text status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Image as base64 or an http(s) URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Video as base64 or an http(s) URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<String>,
    /// Media caption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    /// MIME type of the media.
    #[serde(default, alias = "mimeType", skip_serializing_if = "Option::is_none")]
    pub mimetype: Option<String>,
}

/// Result of `GET /:session/status/privacy`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusPrivacyResponse {
    /// Status privacy lists as reported by WhatsApp.
    #[schema(value_type = Vec<Object>)]
    pub privacy: Vec<serde_json::Value>,
}
