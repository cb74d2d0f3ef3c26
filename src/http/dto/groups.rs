//! Group shapes (`/:session/group/...`).

use super::bounded;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::common::Quoted;

/// Body of `POST /:session/group/create`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateGroupRequest {
    /// Group name.
    pub name: String,
    /// Phone numbers of the initial members.
    #[serde(deserialize_with = "bounded::vec::<_, _, { bounded::PARTICIPANTS }>")]
    pub participants: Vec<String>,
}

/// A group id with its full WhatsApp group information.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupInfoResponse {
    /// Group JID.
    pub group_id: String,
    /// Group information as reported by WhatsApp.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// Summary of one joined group.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupSummary {
    /// Group JID.
    pub jid: String,
    /// Group name.
    pub name: String,
    /// Group description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Number of members.
    pub participant_count: i64,
    /// Only admins can send messages.
    pub is_announce: bool,
    /// Only admins can edit group info.
    pub is_locked: bool,
    /// Creation time, unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<i64>,
}

/// Result of `GET /:session/group/list`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupListResponse {
    /// Joined groups.
    pub data: Vec<GroupSummary>,
}

/// Query carrying a group id (`?groupId=`), with `reset` for the invite link.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupIdQuery {
    /// Group JID or bare group id.
    #[serde(default)]
    pub group_id: Option<String>,
    /// `true` to revoke the current invite link (invitelink only).
    #[serde(default)]
    pub reset: Option<bool>,
}

/// Query of `GET /:session/group/inviteinfo`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InviteInfoQuery {
    /// Invite URL or code.
    #[serde(default)]
    pub invite_link: Option<String>,
    /// The same, under OnWapp 0.2.8's name; `inviteLink` wins when both are given.
    #[serde(default)]
    pub link: Option<String>,
}

impl InviteInfoQuery {
    /// `inviteLink`, else `link`: the first that is not blank.
    pub fn link(&self) -> Option<&str> {
        [&self.invite_link, &self.link]
            .into_iter()
            .filter_map(|v| v.as_deref().map(str::trim))
            .find(|v| !v.is_empty())
    }
}

/// Body carrying only a group id (leave, photo/remove).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupIdRequest {
    /// Group JID or bare group id.
    pub group_id: String,
}

/// Result carrying only a group id.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupIdResponse {
    /// Group JID or id.
    pub group_id: String,
}

/// Body of `POST /:session/group/name`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateGroupNameRequest {
    /// Group JID or bare group id.
    pub group_id: String,
    /// New name (0.2.8 spelling: `value`).
    #[serde(alias = "value")]
    pub name: String,
}

/// Body of `POST /:session/group/topic`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateGroupTopicRequest {
    /// Group JID or bare group id.
    pub group_id: String,
    /// New description (0.2.8 spelling: `value`).
    #[serde(alias = "value")]
    pub topic: String,
}

/// Body of `POST /:session/group/photo`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetGroupPhotoRequest {
    /// Group JID or bare group id.
    pub group_id: String,
    /// Image as base64 or an http(s) URL.
    pub image: String,
}

/// Body of `POST /:session/group/participants/{add,remove,promote,demote}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupParticipantsRequest {
    /// Group JID or bare group id.
    pub group_id: String,
    /// Phone numbers or JIDs of the participants.
    #[serde(deserialize_with = "bounded::vec::<_, _, { bounded::PARTICIPANTS }>")]
    pub participants: Vec<String>,
}

/// Result of participant changes and join request actions.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupParticipantsResponse {
    /// Group JID or id.
    pub group_id: String,
    /// Per-participant results as reported by WhatsApp.
    #[schema(value_type = Vec<Object>)]
    pub data: Vec<serde_json::Value>,
}

/// Body of `POST /:session/group/announce`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupAnnounceRequest {
    /// Group JID or bare group id.
    pub group_id: String,
    /// Only admins can send messages.
    pub announce: bool,
}

/// Body of `POST /:session/group/locked`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupLockedRequest {
    /// Group JID or bare group id.
    pub group_id: String,
    /// Only admins can edit group info.
    pub locked: bool,
}

/// Body of `POST /:session/group/approval`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupApprovalRequest {
    /// Group JID or bare group id.
    pub group_id: String,
    /// New members need admin approval.
    pub approval_mode: bool,
}

/// Body of `POST /:session/group/memberadd`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupMemberAddModeRequest {
    /// Group JID or bare group id.
    pub group_id: String,
    /// `admin_add` or `all_member_add`.
    pub mode: String,
}

/// Result of `GET /:session/group/invitelink`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupInviteLinkResponse {
    /// Group JID or id.
    pub group_id: String,
    /// Invite URL.
    pub link: String,
}

/// Body of `POST /:session/group/join`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JoinGroupRequest {
    /// Invite URL or code.
    pub invite_link: String,
}

/// Result of `GET /:session/group/requests`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupJoinRequestsResponse {
    /// Group id.
    pub group_id: String,
    /// Pending requests as reported by WhatsApp.
    #[schema(value_type = Vec<Object>)]
    pub participants: Vec<serde_json::Value>,
}

/// Body of `POST /:session/group/requests/action`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupRequestActionRequest {
    /// Group JID or bare group id.
    pub group_id: String,
    /// Phone numbers or JIDs of the requesters.
    #[serde(deserialize_with = "bounded::vec::<_, _, { bounded::PARTICIPANTS }>")]
    pub participants: Vec<String>,
    /// `approve` or `reject`.
    pub action: String,
}

/// Body of `POST /:session/group/send/text` (legacy).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendGroupTextRequest {
    /// Group JID.
    pub group_id: String,
    /// Message text.
    pub text: String,
    /// Message to reply to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quoted: Option<Quoted>,
}
