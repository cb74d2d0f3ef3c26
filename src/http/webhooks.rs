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
    store::{WebhookConfig, WebhookRecord},
};

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/{session}/webhook",
        get(show).post(upsert).put(replace).delete(remove),
    )
}

/// Validates a request into the configuration to store.
pub fn config(req: WebhookRequest) -> Result<WebhookConfig, ApiError> {
    let url = req.url.map(|u| u.trim().to_string()).unwrap_or_default();
    if url.is_empty() {
        return Err(ApiError::bad_request("url is required"));
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
        url: Some(r.url),
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
    let cfg = config(req)?;
    Ok(Json(response(s.store.upsert_webhook(sess.id, &cfg).await?)))
}

async fn replace(
    State(s): State<AppState>,
    SessionCtx(sess): SessionCtx,
    JsonBody(req): JsonBody<WebhookRequest>,
) -> ApiResult<Json<WebhookResponse>> {
    let cfg = config(req)?;
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
