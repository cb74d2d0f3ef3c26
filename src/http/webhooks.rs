//! `GET/POST/PUT/DELETE /:session/webhook`: one webhook configuration per session.

use axum::{Json, Router, extract::State, routing::get};

use crate::{
    app::AppState,
    error::{ApiError, ApiResult},
    events,
    http::{
        dto::{MessageResponse, WebhookRequest, WebhookResponse},
        extract::{JsonBody, SessionCtx},
    },
    media::fetch::{is_local_target, is_localhost_name},
    store::{WebhookConfig, WebhookRecord},
};

/// A host this node must not call for a tenant: `localhost` or a local address literal.
fn targets_this_host(url: &url::Url) -> bool {
    use std::net::IpAddr;
    match url.host() {
        Some(url::Host::Ipv4(ip)) => is_local_target(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => is_local_target(IpAddr::V6(ip)),
        Some(url::Host::Domain(name)) => is_localhost_name(name),
        None => true,
    }
}

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/{session}/webhook",
        get(show).post(upsert).put(replace).delete(remove),
    )
}

/// Validates a request into the configuration to store. Unless `allow_private`, a URL whose
/// host is a loopback, link-local, unspecified or multicast address (or `localhost`) is refused
/// here; names are resolved, and every address checked, again at each delivery.
pub fn config(req: WebhookRequest, allow_private: bool) -> Result<WebhookConfig, ApiError> {
    let url = req.url.map(|u| u.trim().to_string()).unwrap_or_default();
    if url.is_empty() && req.enabled == Some(false) {
        // `{"url": "", "enabled": false}` turns the webhook off, as in OnWapp 0.2.8.
        return Ok(WebhookConfig {
            url,
            events: Vec::new(),
            enabled: false,
            secret: None,
        });
    }
    if url.is_empty() {
        return Err(ApiError::bad_request(
            "url is required (or {\"url\": \"\", \"enabled\": false} to turn the webhook off)",
        ));
    }
    let parsed = url::Url::parse(&url).map_err(|_| {
        ApiError::bad_request("invalid webhook URL: must be a valid http or https URL")
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(ApiError::bad_request(
            "invalid webhook URL: must be a valid http or https URL",
        ));
    }
    if url.len() > 2048 {
        return Err(ApiError::bad_request(
            "invalid webhook URL: longer than 2048 characters",
        ));
    }
    if !allow_private && targets_this_host(&parsed) {
        return Err(ApiError::bad_request(
            "invalid webhook URL: loopback, link-local, unspecified and multicast addresses are \
             refused (set WEBHOOK_ALLOW_PRIVATE_URLS=true to allow them)",
        ));
    }
    let mut list: Vec<String> = Vec::new();
    for e in req.events.unwrap_or_default() {
        let e = e.trim().to_string();
        if !events::is_known(&e) {
            return Err(ApiError::bad_request(format!(
                "invalid value {e:?} in field 'events': unknown event (GET /events lists them)"
            )));
        }
        if !list.contains(&e) {
            list.push(e);
        }
    }
    let secret = req.secret.filter(|s| !s.is_empty());
    if secret.as_ref().is_some_and(|s| s.len() > 512) {
        return Err(ApiError::bad_request(
            "invalid value for field 'secret': longer than 512 characters",
        ));
    }
    Ok(WebhookConfig {
        url,
        events: list,
        enabled: req.enabled.unwrap_or(true),
        secret,
    })
}

fn response(r: WebhookRecord) -> WebhookResponse {
    WebhookResponse {
        id: Some(r.id.to_string()),
        session_id: r.session_id.to_string(),
        // Omitted when empty (a webhook turned off), as OnWapp does.
        url: Some(r.url).filter(|u| !u.is_empty()),
        events: Some(r.events.0),
        enabled: r.enabled,
    }
}

async fn show(
    State(s): State<AppState>,
    SessionCtx(sess): SessionCtx,
) -> ApiResult<Json<WebhookResponse>> {
    Ok(Json(match s.store.get_webhook(sess.id).await? {
        Some(r) => response(r),
        None => WebhookResponse {
            id: None,
            session_id: sess.id.to_string(),
            url: None,
            events: None,
            enabled: false,
        },
    }))
}

async fn upsert(
    State(s): State<AppState>,
    SessionCtx(sess): SessionCtx,
    JsonBody(req): JsonBody<WebhookRequest>,
) -> ApiResult<Json<WebhookResponse>> {
    let cfg = config(req, s.config.webhooks.allow_private_urls)?;
    Ok(Json(response(s.store.upsert_webhook(sess.id, &cfg).await?)))
}

async fn replace(
    State(s): State<AppState>,
    SessionCtx(sess): SessionCtx,
    JsonBody(req): JsonBody<WebhookRequest>,
) -> ApiResult<Json<WebhookResponse>> {
    let cfg = config(req, s.config.webhooks.allow_private_urls)?;
    s.store
        .replace_webhook(sess.id, &cfg)
        .await?
        .map(|r| Json(response(r)))
        .ok_or_else(|| ApiError::NotFound("webhook not found for this session".into()))
}

async fn remove(
    State(s): State<AppState>,
    SessionCtx(sess): SessionCtx,
) -> ApiResult<Json<MessageResponse>> {
    if s.store.delete_webhook(sess.id).await? {
        Ok(Json(MessageResponse {
            message: "webhook deleted".into(),
        }))
    } else {
        Err(ApiError::NotFound(
            "webhook not found for this session".into(),
        ))
    }
}
