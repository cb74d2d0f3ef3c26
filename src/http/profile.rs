//! `Profile`: the session's own about text, push name and picture.

use axum::{
    Json, Router,
    extract::{FromRequest, Multipart, Request, State},
    http::header,
    routing::{get, post},
};
use serde_json::{Value, json};

use crate::{
    app::AppState,
    engine::{EngineError, State as Live},
    error::{ApiError, ApiResult},
    http::{
        dto::{
            EmptyResponse, PictureIdResponse, ProfileResponse, SetProfilePictureRequest,
            SetPushNameRequest, SetPushNameResponse, SetStatusRequest, SetStatusResponse,
        },
        extract::{JsonBody, SessionCtx},
    },
    media::{Fetcher, MediaKind, input},
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/{session}/profile", get(profile))
        .route("/{session}/profile/status", post(set_status))
        .route("/{session}/profile/name", post(set_name))
        .route("/{session}/profile/picture", post(set_picture))
        .route("/{session}/profile/picture/remove", post(remove_picture))
}

/// `{"profile": {jid, pushName, status?, pictureUrl?}}`: live from the client when connected, else
/// what the session row remembers (no picture then).
async fn profile(State(s): State<AppState>, SessionCtx(rec): SessionCtx) -> ApiResult<Json<Value>> {
    let profile = if s.engine.state(&rec.name) == Live::Connected {
        let own = s.engine.own_profile(&rec.name).await?;
        ProfileResponse {
            jid: own.jid,
            push_name: own.push_name,
            status: own.status,
            picture_url: own.picture_url,
        }
    } else {
        let Some(phone) = rec.phone.clone().filter(|p| !p.is_empty()) else {
            return Err(ApiError::Failed("session not authenticated".into()));
        };
        ProfileResponse {
            jid: format!("{phone}@s.whatsapp.net"),
            push_name: rec.push_name.clone().unwrap_or_default(),
            status: None,
            picture_url: None,
        }
    };
    Ok(Json(json!({ "profile": profile })))
}

async fn set_status(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<SetStatusRequest>,
) -> ApiResult<Json<SetStatusResponse>> {
    if req.status.trim().is_empty() {
        return Err(ApiError::bad_request("status is required"));
    }
    s.engine.set_status_text(&rec.name, &req.status).await?;
    Ok(Json(SetStatusResponse { status: req.status }))
}

async fn set_name(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<SetPushNameRequest>,
) -> ApiResult<Json<SetPushNameResponse>> {
    if req.name.trim().is_empty() {
        return Err(ApiError::bad_request("name is required"));
    }
    s.engine.set_push_name(&rec.name, &req.name).await?;
    Ok(Json(SetPushNameResponse { name: req.name }))
}

/// The picture: JSON `{"image"}` (base64, data URL or http(s) URL) or a multipart `file`.
enum PictureBody {
    Value(String),
    File {
        bytes: Vec<u8>,
        content_type: Option<String>,
    },
}

impl FromRequest<AppState> for PictureBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let multipart = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("multipart/form-data")
            });
        if !multipart {
            let JsonBody(body) =
                JsonBody::<SetProfilePictureRequest>::from_request(req, state).await?;
            return Ok(PictureBody::Value(body.image));
        }
        let bad = |e: String| ApiError::bad_request(format!("invalid multipart body: {e}"));
        let mut form = Multipart::from_request(req, state)
            .await
            .map_err(|e| bad(e.body_text()))?;
        while let Some(field) = form.next_field().await.map_err(|e| bad(e.body_text()))? {
            if field.name() == Some("file") {
                let content_type = field.content_type().map(str::to_string);
                let bytes = field.bytes().await.map_err(|e| bad(e.body_text()))?;
                return Ok(PictureBody::File {
                    bytes: bytes.to_vec(),
                    content_type,
                });
            }
        }
        Err(ApiError::bad_request(
            "failed to get file from form: no `file` field",
        ))
    }
}

async fn set_picture(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    body: PictureBody,
) -> ApiResult<Json<PictureIdResponse>> {
    if let PictureBody::Value(v) = &body
        && v.trim().is_empty()
    {
        return Err(ApiError::bad_request("image is required"));
    }
    if s.engine.state(&rec.name) != Live::Connected {
        return Err(EngineError::NotConnected(rec.name.clone()).into());
    }
    let max = s.config.media_max_bytes;
    let file = match body {
        PictureBody::Value(v) => {
            let fetcher = Fetcher {
                max_bytes: max,
                allow_private: s.config.media_allow_private_urls,
            };
            input::load(MediaKind::Image, &v, None, &fetcher).await?
        }
        PictureBody::File {
            bytes,
            content_type,
        } => input::from_bytes(MediaKind::Image, bytes, None, content_type.as_deref(), max)?,
    };
    let picture_id = s.engine.set_profile_picture(&rec.name, file.bytes).await?;
    Ok(Json(PictureIdResponse { picture_id }))
}

async fn remove_picture(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
) -> ApiResult<Json<EmptyResponse>> {
    s.engine.remove_profile_picture(&rec.name).await?;
    Ok(Json(EmptyResponse {}))
}
