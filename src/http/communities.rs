//! `Communities`: the groups linked to a community, and linking or unlinking one.

use axum::{
    Json, Router,
    extract::State,
    routing::{get, post},
};

use crate::{
    app::AppState,
    error::{ApiError, ApiResult},
    http::{
        dto::{
            CommunityGroupsResponse, CommunityIdQuery, EmptyResponse, LinkGroupRequest, group_info,
        },
        extract::{JsonBody, Query, SessionCtx},
        groups::group_jid,
    },
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/{session}/community/groups", get(groups))
        .route("/{session}/community/link", post(link))
        .route("/{session}/community/unlink", post(unlink))
}

/// `{"groups": [GroupLinkTarget]}`.
async fn groups(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    Query(q): Query<CommunityIdQuery>,
) -> ApiResult<Json<CommunityGroupsResponse>> {
    let raw = q.community_id.as_deref().map(str::trim).unwrap_or_default();
    if raw.is_empty() {
        return Err(ApiError::bad_request(
            "communityId query parameter is required",
        ));
    }
    let community = group_jid("communityId", raw)?;
    let subgroups = s.engine.community_groups(&rec.name, &community).await?;
    Ok(Json(CommunityGroupsResponse {
        groups: subgroups.iter().map(group_info::link_target).collect(),
    }))
}

async fn change(
    s: &AppState,
    session: &str,
    req: &LinkGroupRequest,
    link: bool,
) -> ApiResult<Json<EmptyResponse>> {
    let community = group_jid("communityId", &req.community_id)?;
    let child = group_jid("childGroupId", &req.child_group_id)?;
    if community == child {
        return Err(ApiError::bad_request(
            "childGroupId must differ from communityId",
        ));
    }
    s.engine
        .community_link(session, &community, &child, link)
        .await?;
    Ok(Json(EmptyResponse {}))
}

async fn link(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<LinkGroupRequest>,
) -> ApiResult<Json<EmptyResponse>> {
    change(&s, &rec.name, &req, true).await
}

async fn unlink(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<LinkGroupRequest>,
) -> ApiResult<Json<EmptyResponse>> {
    change(&s, &rec.name, &req, false).await
}
