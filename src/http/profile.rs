//! `Profile`: the session's own about text, push name and picture.

use axum::{
    Json, Router,
    extract::State,
    routing::{get, post},
};

use crate::{
    app::AppState,
    engine::{EngineError, State as Live},
    error::{ApiError, ApiResult},
    http::{
        dto::{
            EmptyResponse, OwnProfile, PictureIdResponse, ProfileResponse,
            SetProfilePictureRequest, SetPushNameRequest, SetPushNameResponse, SetStatusRequest,
            SetStatusResponse,
        },
        extract::{JsonBody, SessionCtx},
        form::{MediaBody, Picture},
    },
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
async fn profile(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
) -> ApiResult<Json<ProfileResponse>> {
    let profile = if s.engine.state(&rec.name) == Live::Connected {
        let own = s.engine.own_profile(&rec.name).await?;
        OwnProfile {
            jid: own.jid,
            push_name: own.push_name,
            status: own.status,
            picture_url: own.picture_url,
        }
    } else {
        let Some(phone) = rec.phone.clone().filter(|p| !p.is_empty()) else {
            // Nothing to show until the session is paired: a state, not a server fault.
            return Err(ApiError::Conflict("session not authenticated".into()));
        };
        OwnProfile {
            jid: format!("{phone}@s.whatsapp.net"),
            push_name: rec.push_name.clone().unwrap_or_default(),
            status: None,
            picture_url: None,
        }
    };
    Ok(Json(ProfileResponse { profile }))
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

async fn set_picture(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    body: MediaBody<SetProfilePictureRequest>,
) -> ApiResult<Json<PictureIdResponse>> {
    let picture = match body {
        MediaBody::Json(r) => Picture::Value(r.image),
        MediaBody::Form(mut form) => Picture::from_form(&mut form)?,
    };
    picture.check()?;
    if s.engine.state(&rec.name) != Live::Connected {
        return Err(EngineError::NotConnected(rec.name.clone()).into());
    }
    let bytes = picture.load(&s).await?;
    let picture_id = s.engine.set_profile_picture(&rec.name, bytes).await?;
    Ok(Json(PictureIdResponse { picture_id }))
}

async fn remove_picture(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
) -> ApiResult<Json<EmptyResponse>> {
    s.engine.remove_profile_picture(&rec.name).await?;
    Ok(Json(EmptyResponse {}))
}
