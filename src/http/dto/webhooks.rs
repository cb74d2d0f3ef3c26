//! Webhook configuration and event list shapes (`/:session/webhook`, `/events`).

use std::collections::BTreeMap;

use super::bounded;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Body of `POST` and `PUT /:session/webhook`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookRequest {
    /// http(s) URL receiving the events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Event names to deliver; empty, `*` or `all` = every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "bounded::opt_vec::<_, _, { bounded::EVENTS }>")]
    pub events: Option<Vec<String>>,
    /// Deliver events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// HMAC-SHA256 secret for the `X-Webhook-Signature` header; never returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// Webhook configuration of a session.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookResponse {
    /// Webhook id; absent when none is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Id of the owning session.
    pub session_id: String,
    /// Delivery URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Subscribed event names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
    /// Events are delivered.
    pub enabled: bool,
}

/// Result of `GET /events`: every webhook event name.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventsResponse {
    /// Event names by category.
    pub categories: BTreeMap<String, Vec<String>>,
    /// All event names.
    pub all: Vec<String>,
    /// Names listed above that this server never emits, with why (whatsapp-rust does not
    /// report them); subscribing to them is accepted. Not in OnWapp.
    pub not_emitted: BTreeMap<String, String>,
}

/// One dead letter in `GET /:session/webhook/failed` (extension).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailedEvent {
    /// Outbox id: the `X-Webhook-Id` every attempt carried; give it to replay this event.
    pub id: String,
    /// Event name.
    pub event: String,
    /// The body that was sent.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// Attempts made.
    pub attempts: i32,
    /// HTTP status of the last attempt; null when there was no answer.
    pub last_status: Option<i32>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the event was enqueued (RFC 3339).
    pub created_at: String,
    /// When it became a dead letter (RFC 3339).
    pub failed_at: Option<String>,
}

/// Result of `GET /:session/webhook/failed` (extension): one page of dead letters, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailedEventsResponse {
    /// Dead letters of the session in all.
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
    pub events: Vec<FailedEvent>,
}

/// Body of `POST /:session/webhook/replay` (extension): `{}` or `{"all": true}` replays every
/// dead letter of the session, `{"ids": [...]}` only those (404 naming unknown ids, nothing
/// replayed).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplayRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<bool>,
    /// Dead-letter ids from `GET /:session/webhook/failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "bounded::opt_vec::<_, _, { bounded::IDS }>")]
    pub ids: Option<Vec<String>>,
}

/// Result of `POST /:session/webhook/replay` (extension).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplayResponse {
    /// Events queued again.
    pub replayed: u64,
}
