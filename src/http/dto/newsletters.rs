//! Newsletter (channel) shapes (`/:session/newsletter/...`).
//!
//! `newsletterJid` (0.2.8 spelling) is accepted beside `newsletterId` everywhere.

use super::bounded;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Query carrying a newsletter id (`?newsletterId=`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewsletterIdQuery {
    /// Newsletter JID (`...@newsletter`).
    #[serde(default)]
    pub newsletter_id: Option<String>,
    /// The same, under OnWapp 0.2.8's name; `newsletterId` wins when both are given.
    #[serde(default)]
    pub newsletter_jid: Option<String>,
}

impl NewsletterIdQuery {
    /// `newsletterId`, else `newsletterJid`: the first that is not blank.
    pub fn id(&self) -> Option<&str> {
        [&self.newsletter_id, &self.newsletter_jid]
            .into_iter()
            .filter_map(|v| v.as_deref())
            .find(|v| !v.trim().is_empty())
    }
}

/// Body of `POST /:session/newsletter/create`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateNewsletterRequest {
    /// Channel name.
    pub name: String,
    /// Channel description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Channel picture (base64); currently ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picture: Option<String>,
}

/// A newsletter as reported by WhatsApp (`create`, `info`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewsletterResponse {
    /// Newsletter metadata.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// Result of `GET /:session/newsletter/list`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = Vec<Object>)]
pub struct NewsletterListResponse(pub Vec<serde_json::Value>);

/// Result of `GET /:session/newsletter/messages`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewsletterMessagesResponse {
    /// Latest channel messages.
    #[schema(value_type = Vec<Object>)]
    pub data: Vec<serde_json::Value>,
}

/// Body carrying only a newsletter id (follow, unfollow, subscribe-live).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewsletterIdRequest {
    /// Newsletter JID.
    #[serde(alias = "newsletterJid")]
    pub newsletter_id: String,
}

/// Body of `POST /:session/newsletter/react`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewsletterReactRequest {
    /// Newsletter JID.
    #[serde(alias = "newsletterJid")]
    pub newsletter_id: String,
    /// Server id of the message.
    pub server_id: i64,
    /// Emoji.
    pub reaction: String,
    /// Message id, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
}

/// Body of `POST /:session/newsletter/mute`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewsletterMuteRequest {
    /// Newsletter JID.
    #[serde(alias = "newsletterJid")]
    pub newsletter_id: String,
    /// Mute state.
    pub mute: bool,
}

/// Body of `POST /:session/newsletter/viewed`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewsletterViewedRequest {
    /// Newsletter JID.
    #[serde(alias = "newsletterJid")]
    pub newsletter_id: String,
    /// Server ids of the viewed messages.
    #[serde(deserialize_with = "bounded::vec::<_, _, { bounded::IDS }>")]
    pub server_ids: Vec<i64>,
}

/// Result of `POST /:session/newsletter/subscribe-live`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewsletterLiveResponse {
    /// Subscription duration, e.g. `5m0s`.
    pub duration: String,
}
