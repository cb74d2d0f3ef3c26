//! `Presence`: the session's own online/offline state and subscriptions to contacts'.

use axum::{Json, Router, extract::State, routing::post};

use crate::{
    app::AppState,
    error::ApiResult,
    http::{
        chat_actions::chat_jid,
        dto::{EmptyResponse, SetPresenceRequest, SimpleStatusResponse, SubscribePresenceRequest},
        extract::{JsonBody, SessionCtx},
    },
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/{session}/presence", post(set))
        .route("/{session}/presence/subscribe", post(subscribe))
}

async fn set(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<SetPresenceRequest>,
) -> ApiResult<Json<SimpleStatusResponse>> {
    s.engine.set_presence(&rec.name, req.available).await?;
    Ok(Json(SimpleStatusResponse {
        status: if req.available {
            "available"
        } else {
            "unavailable"
        }
        .into(),
    }))
}

/// Presence updates of `phone` then arrive as `presence.update` events.
async fn subscribe(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<SubscribePresenceRequest>,
) -> ApiResult<Json<EmptyResponse>> {
    let who = chat_jid("phone", &req.phone)?;
    s.engine.subscribe_presence(&rec.name, &who).await?;
    Ok(Json(EmptyResponse {}))
}
