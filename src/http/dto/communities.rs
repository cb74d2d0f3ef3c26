//! Community shapes (`/:session/community/...`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Query of `GET /:session/community/groups`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommunityIdQuery {
    /// Community JID or bare id.
    #[serde(default)]
    pub community_id: Option<String>,
}

/// Result of `GET /:session/community/groups`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommunityGroupsResponse {
    /// Linked groups as reported by WhatsApp.
    #[schema(value_type = Vec<Object>)]
    pub groups: Vec<serde_json::Value>,
}

/// Body of `POST /:session/community/link` and `/unlink`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LinkGroupRequest {
    /// Community JID (0.2.8 spelling: `parentGroupId`).
    #[serde(alias = "parentGroupId")]
    pub community_id: String,
    /// JID of the group to link or unlink.
    pub child_group_id: String,
}
