//! `Status (Stories)`: text, image and video stories to the session's contacts, and the
//! account's status privacy.

use axum::{
    Json, Router,
    extract::State,
    routing::{get, post},
};
use serde_json::json;
use whatsapp_rust::Jid;

use crate::{
    app::AppState,
    engine::{EngineError, State as Live, media::OutgoingMedia, status::Story},
    error::{ApiError, ApiResult},
    http::{
        dto::{SendResponse, SendStatusRequest, StatusPrivacyResponse},
        extract::{JsonBody, SessionCtx},
    },
    media::{Fetcher, MediaKind, input},
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/{session}/status/send", post(send))
        .route("/{session}/status/privacy", get(privacy))
}

fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// The session's contacts (users, by PN or LID) from our store: who sees the story.
async fn audience(s: &AppState, session: uuid::Uuid) -> ApiResult<Vec<Jid>> {
    let rows = s.store.list_contacts(session).await?;
    Ok(rows
        .iter()
        .filter_map(|c| c.jid.parse::<Jid>().ok())
        .filter(|j| (j.is_pn() || j.is_lid()) && !j.user.is_empty())
        .map(|j| j.to_non_ad())
        .collect())
}

/// Posts a story: `text`, or `image` / `video` (base64, data URL or http(s) URL) with an
/// optional `caption`; sent to every contact the session knows.
async fn send(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<SendStatusRequest>,
) -> ApiResult<Json<SendResponse>> {
    let media = match (given(&req.image), given(&req.video)) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "give either image or video, not both",
            ));
        }
        (Some(v), None) => Some((MediaKind::Image, v)),
        (None, Some(v)) => Some((MediaKind::Video, v)),
        (None, None) => None,
    };
    let text = given(&req.text);
    if media.is_none() && text.is_none() {
        return Err(ApiError::bad_request("text, image or video is required"));
    }
    if s.engine.state(&rec.name) != Live::Connected {
        return Err(EngineError::NotConnected(rec.name.clone()).into());
    }
    let recipients = audience(&s, rec.id).await?;
    if recipients.is_empty() {
        return Err(ApiError::bad_request(
            "the session has no contacts to show the status to",
        ));
    }
    let story = match media {
        Some((kind, value)) => {
            let fetcher = Fetcher {
                max_bytes: s.config.media_max_bytes,
                allow_private: s.config.media_allow_private_urls,
            };
            let file = input::load(kind, value, given(&req.mimetype), &fetcher).await?;
            Story::Media(OutgoingMedia {
                kind,
                bytes: file.bytes,
                mimetype: file.mimetype,
                caption: given(&req.caption).or(text).map(str::to_owned),
                file_name: None,
                ptt: false,
            })
        }
        None => Story::Text(text.unwrap_or_default().to_owned()),
    };
    let id = s.engine.send_status(&rec.name, story, &recipients).await?;
    Ok(Json(SendResponse {
        message_id: id,
        timestamp: chrono::Utc::now().timestamp(),
    }))
}

/// `{"privacy": [{"Type", "List", "IsDefault"}]}` from the account's privacy settings.
async fn privacy(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
) -> ApiResult<Json<StatusPrivacyResponse>> {
    let p = s.engine.status_privacy(&rec.name).await?;
    Ok(Json(StatusPrivacyResponse {
        privacy: vec![json!({"Type": p.kind, "List": [], "IsDefault": p.is_default})],
    }))
}
