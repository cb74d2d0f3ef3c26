//! Profile shapes (`/:session/profile/...`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Result of `GET /:session/profile`: the profile under `profile`, as OnWapp answers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileResponse {
    pub profile: OwnProfile,
}

/// The session's own profile.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OwnProfile {
    /// Own JID.
    pub jid: String,
    /// Own display name.
    pub push_name: String,
    /// Status (about) message, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Profile picture URL, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picture_url: Option<String>,
}

/// Body of `POST /:session/profile/status`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetStatusRequest {
    /// New status message.
    pub status: String,
}

/// Result of `POST /:session/profile/status`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetStatusResponse {
    /// The status message now set.
    pub status: String,
}

/// Body of `POST /:session/profile/name`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetPushNameRequest {
    /// New display name.
    pub name: String,
}

/// Result of `POST /:session/profile/name`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetPushNameResponse {
    /// The display name now set.
    pub name: String,
}

/// Body of `POST /:session/profile/picture`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetProfilePictureRequest {
    /// Image as base64 or an http(s) URL.
    pub image: String,
}
