//! Presence shapes (`/:session/presence...`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Body of `POST /:session/presence`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetPresenceRequest {
    /// `true` = online, `false` = offline.
    pub available: bool,
}

/// Body of `POST /:session/presence/subscribe`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscribePresenceRequest {
    /// Phone number or JID to watch.
    pub phone: String,
}
