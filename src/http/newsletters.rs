//! `Newsletters (Channels)`: create, list, info, follow/unfollow, messages, react, mute,
//! viewed and live updates through the session's client.

use axum::{
    Json, Router,
    extract::State,
    routing::{get, post},
};
use whatsapp_rust::{Jid, Server};

use crate::{
    app::AppState,
    engine::newsletters::go_duration,
    error::{ApiError, ApiResult},
    http::{
        dto::{
            CreateNewsletterRequest, EmptyResponse, MessageResponse, NewsletterIdQuery,
            NewsletterIdRequest, NewsletterListResponse, NewsletterLiveResponse,
            NewsletterMessagesResponse, NewsletterMuteRequest, NewsletterReactRequest,
            NewsletterResponse, NewsletterViewedRequest,
        },
        extract::{JsonBody, Query, SessionCtx},
    },
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/{session}/newsletter/create", post(create))
        .route("/{session}/newsletter/list", get(list))
        .route("/{session}/newsletter/info", get(info))
        .route("/{session}/newsletter/follow", post(follow))
        .route("/{session}/newsletter/unfollow", post(unfollow))
        .route("/{session}/newsletter/messages", get(messages))
        .route("/{session}/newsletter/react", post(react))
        .route("/{session}/newsletter/mute", post(mute))
        .route("/{session}/newsletter/viewed", post(viewed))
        .route("/{session}/newsletter/subscribe-live", post(subscribe_live))
}

/// A `<digits>@newsletter` JID; 400 naming `newsletterId` otherwise.
fn newsletter_jid(raw: &str) -> Result<Jid, ApiError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(ApiError::bad_request("newsletterId is required"));
    }
    raw.parse::<Jid>()
        .ok()
        .filter(|j| {
            j.server == Server::Newsletter
                && !j.user.is_empty()
                && j.user.chars().all(|c| c.is_ascii_digit())
        })
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "newsletterId must be a newsletter JID (<digits>@newsletter), not {raw:?}"
            ))
        })
}

fn query_jid(q: &NewsletterIdQuery) -> Result<Jid, ApiError> {
    match q.id() {
        Some(raw) if !raw.trim().is_empty() => newsletter_jid(raw),
        _ => Err(ApiError::bad_request(
            "newsletterId query parameter is required",
        )),
    }
}

/// A server id the client gave: a positive integer.
fn server_id(field: &str, id: i64) -> Result<u64, ApiError> {
    u64::try_from(id).ok().filter(|&id| id > 0).ok_or_else(|| {
        ApiError::bad_request(format!("{field} must be a positive message server id"))
    })
}

async fn create(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<CreateNewsletterRequest>,
) -> ApiResult<Json<NewsletterResponse>> {
    let name = req.name.trim();
    if name.is_empty() {
        return Err(ApiError::bad_request("name is required"));
    }
    let description = req.description.as_deref().filter(|d| !d.is_empty());
    let data = s
        .engine
        .newsletter_create(&rec.name, name, description)
        .await?;
    Ok(Json(NewsletterResponse { data }))
}

async fn list(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
) -> ApiResult<Json<NewsletterListResponse>> {
    Ok(Json(NewsletterListResponse(
        s.engine.newsletter_list(&rec.name).await?,
    )))
}

async fn info(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    Query(q): Query<NewsletterIdQuery>,
) -> ApiResult<Json<NewsletterResponse>> {
    let jid = query_jid(&q)?;
    let data = s.engine.newsletter_info(&rec.name, &jid).await?;
    Ok(Json(NewsletterResponse { data }))
}

async fn follow(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<NewsletterIdRequest>,
) -> ApiResult<Json<EmptyResponse>> {
    let jid = newsletter_jid(&req.newsletter_id)?;
    s.engine.newsletter_follow(&rec.name, &jid, true).await?;
    Ok(Json(EmptyResponse {}))
}

async fn unfollow(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<NewsletterIdRequest>,
) -> ApiResult<Json<EmptyResponse>> {
    let jid = newsletter_jid(&req.newsletter_id)?;
    s.engine.newsletter_follow(&rec.name, &jid, false).await?;
    Ok(Json(EmptyResponse {}))
}

async fn messages(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    Query(q): Query<NewsletterIdQuery>,
) -> ApiResult<Json<NewsletterMessagesResponse>> {
    let jid = query_jid(&q)?;
    let data = s.engine.newsletter_messages(&rec.name, &jid).await?;
    Ok(Json(NewsletterMessagesResponse { data }))
}

async fn react(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<NewsletterReactRequest>,
) -> ApiResult<Json<EmptyResponse>> {
    let jid = newsletter_jid(&req.newsletter_id)?;
    let id = server_id("serverId", req.server_id)?;
    s.engine
        .newsletter_react(&rec.name, &jid, id, &req.reaction)
        .await?;
    Ok(Json(EmptyResponse {}))
}

async fn mute(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<NewsletterMuteRequest>,
) -> ApiResult<Json<EmptyResponse>> {
    let jid = newsletter_jid(&req.newsletter_id)?;
    s.engine.newsletter_mute(&rec.name, &jid, req.mute).await?;
    Ok(Json(EmptyResponse {}))
}

async fn viewed(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<NewsletterViewedRequest>,
) -> ApiResult<Json<MessageResponse>> {
    let jid = newsletter_jid(&req.newsletter_id)?;
    if req.server_ids.is_empty() {
        return Err(ApiError::bad_request("serverIds is required"));
    }
    let ids = req
        .server_ids
        .iter()
        .enumerate()
        .map(|(i, &id)| server_id(&format!("serverIds[{i}]"), id))
        .collect::<Result<Vec<_>, _>>()?;
    s.engine.newsletter_viewed(&rec.name, &jid, &ids).await?;
    Ok(Json(MessageResponse {
        message: "messages marked as viewed".into(),
    }))
}

async fn subscribe_live(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<NewsletterIdRequest>,
) -> ApiResult<Json<NewsletterLiveResponse>> {
    let jid = newsletter_jid(&req.newsletter_id)?;
    let secs = s.engine.newsletter_subscribe_live(&rec.name, &jid).await?;
    Ok(Json(NewsletterLiveResponse {
        duration: go_duration(secs),
    }))
}
