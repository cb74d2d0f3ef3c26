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
        extract::SessionCtx,
        form::{Form, MediaBody},
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

/// Where a story's file is: a JSON field's value or a multipart `file`.
enum FileSource {
    Value(String),
    Bytes(Vec<u8>, Option<String>),
}

/// A story request, from JSON or from a multipart form.
struct StoryInput {
    text: Option<String>,
    caption: Option<String>,
    mimetype: Option<String>,
    media: Option<(MediaKind, FileSource)>,
}

fn from_json(req: SendStatusRequest) -> ApiResult<StoryInput> {
    let media = match (given(&req.image), given(&req.video)) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "give either image or video, not both",
            ));
        }
        (Some(v), None) => Some((MediaKind::Image, FileSource::Value(v.to_owned()))),
        (None, Some(v)) => Some((MediaKind::Video, FileSource::Value(v.to_owned()))),
        (None, None) => None,
    };
    Ok(StoryInput {
        text: given(&req.text).map(str::to_owned),
        caption: given(&req.caption).map(str::to_owned),
        mimetype: given(&req.mimetype).map(str::to_owned),
        media,
    })
}

/// 0.2.8's form: `text`, `caption`, `mimetype`, and the file in `file` (a video when its
/// MIME type says so, else an image).
fn from_form(mut form: Form) -> StoryInput {
    let mimetype = form.text(&["mimetype", "mimeType"]).map(str::to_owned);
    let media = form.take_file().map(|f| {
        let (bytes, ct) = (f.bytes, f.content_type);
        let is_video = mimetype
            .as_deref()
            .or(ct.as_deref())
            .is_some_and(|m| m.trim().to_ascii_lowercase().starts_with("video/"));
        let kind = if is_video {
            MediaKind::Video
        } else {
            MediaKind::Image
        };
        (kind, FileSource::Bytes(bytes, ct))
    });
    StoryInput {
        text: form.text(&["text"]).map(str::to_owned),
        caption: form.text(&["caption"]).map(str::to_owned),
        mimetype,
        media,
    }
}

/// Posts a story: `text`, or `image` / `video` (base64, data URL, http(s) URL, or a
/// multipart `file`) with an optional `caption`; sent to every contact the session knows.
async fn send(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    body: MediaBody<SendStatusRequest>,
) -> ApiResult<Json<SendResponse>> {
    let req = match body {
        MediaBody::Json(req) => from_json(req)?,
        MediaBody::Form(form) => from_form(form),
    };
    if req.media.is_none() && req.text.is_none() {
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
    let max = s.config.media_max_bytes;
    let story = match req.media {
        Some((kind, source)) => {
            let mimetype = req.mimetype.as_deref();
            let file = match source {
                FileSource::Value(v) => {
                    let fetcher = Fetcher {
                        max_bytes: max,
                        allow_private: s.config.media_allow_private_urls,
                    };
                    input::load(kind, &v, mimetype, &fetcher).await?
                }
                FileSource::Bytes(bytes, ct) => {
                    input::from_bytes(kind, bytes, mimetype, ct.as_deref(), max)?
                }
            };
            Story::Media(OutgoingMedia {
                kind,
                bytes: file.bytes,
                mimetype: file.mimetype,
                caption: req.caption.or(req.text),
                file_name: None,
                ptt: false,
            })
        }
        None => Story::Text(req.text.unwrap_or_default()),
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
