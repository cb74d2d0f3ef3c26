//! `Groups`: create, list and read groups, change their name, topic, picture, members and
//! settings, invite links and join requests, through the session's client.

use axum::{
    Json, Router,
    extract::State,
    routing::{get, post},
};
use whatsapp_rust::{Jid, wacore::proto_helpers::MessageBuilderExt, waproto::whatsapp as wa};

use crate::{
    app::AppState,
    engine::{
        EngineError, State as Live,
        groups::{GroupSetting, Joined, MemberAction},
    },
    error::{ApiError, ApiResult},
    http::{
        contacts::user_jids,
        dto::{
            CreateGroupRequest, EmptyResponse, GroupAnnounceRequest, GroupApprovalRequest,
            GroupIdQuery, GroupIdRequest, GroupIdResponse, GroupInfoResponse,
            GroupInviteLinkResponse, GroupJoinRequestsResponse, GroupListResponse,
            GroupLockedRequest, GroupMemberAddModeRequest, GroupParticipantsRequest,
            GroupParticipantsResponse, GroupRequestActionRequest, GroupSummary, InviteInfoQuery,
            JoinGroupRequest, MessageResponse, PictureIdResponse, PictureUrlResponse,
            SendGroupTextRequest, SendResponse, SetGroupPhotoRequest, UpdateGroupNameRequest,
            UpdateGroupTopicRequest, group_info,
        },
        extract::{JsonBody, Query, SessionCtx},
        form::{MediaBody, Picture},
        messages::{quote, sent},
    },
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/{session}/group/create", post(create))
        .route("/{session}/group/list", get(list))
        .route("/{session}/group/info", get(info))
        .route("/{session}/group/avatar", get(avatar))
        .route("/{session}/group/leave", post(leave))
        .route("/{session}/group/name", post(name))
        .route("/{session}/group/topic", post(topic))
        .route("/{session}/group/photo", post(photo))
        .route("/{session}/group/photo/remove", post(photo_remove))
        .route("/{session}/group/participants/add", post(add))
        .route("/{session}/group/participants/remove", post(remove))
        .route("/{session}/group/participants/promote", post(promote))
        .route("/{session}/group/participants/demote", post(demote))
        .route("/{session}/group/announce", post(announce))
        .route("/{session}/group/locked", post(locked))
        .route("/{session}/group/approval", post(approval))
        .route("/{session}/group/memberadd", post(member_add))
        .route("/{session}/group/invitelink", get(invite_link))
        .route("/{session}/group/inviteinfo", get(invite_info))
        .route("/{session}/group/join", post(join))
        .route("/{session}/group/requests", get(requests))
        .route("/{session}/group/requests/action", post(requests_action))
        .route("/{session}/group/send/text", post(send_text))
}

/// A group id as the API takes it (`120363...` or `120363...@g.us`, also the old
/// `creator-timestamp` form) → its JID; 400 naming `field` otherwise.
pub fn group_jid(field: &str, raw: &str) -> Result<Jid, ApiError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(ApiError::bad_request(format!("{field} is required")));
    }
    let id = raw.strip_suffix("@g.us").unwrap_or(raw);
    let ok = !id.is_empty()
        && id.split('-').count() <= 2
        && id
            .split('-')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !ok {
        return Err(ApiError::bad_request(format!(
            "{field} must be a group ID (digits, optionally followed by @g.us), not {raw:?}"
        )));
    }
    Ok(Jid::group(id.to_string()))
}

/// `?groupId=` of a GET; 400 `groupId query parameter is required` when absent.
fn query_group(q: &GroupIdQuery) -> Result<(String, Jid), ApiError> {
    let raw = q.group_id.as_deref().map(str::trim).unwrap_or_default();
    if raw.is_empty() {
        return Err(ApiError::bad_request("groupId query parameter is required"));
    }
    Ok((raw.to_string(), group_jid("groupId", raw)?))
}

/// The invite code of a link (`https://chat.whatsapp.com/CODE`) or a bare code.
fn invite_code(field: &str, raw: &str) -> Result<String, ApiError> {
    let raw = raw.trim();
    let code = raw
        .rsplit_once("chat.whatsapp.com/")
        .map(|(_, c)| c)
        .unwrap_or(raw)
        .trim_end_matches('/');
    let ok = !code.is_empty() && code.bytes().all(|b| b.is_ascii_alphanumeric());
    if !ok {
        return Err(ApiError::bad_request(if raw.is_empty() {
            format!("{field} is required")
        } else {
            format!(
                "{field} must be an invite link (https://chat.whatsapp.com/CODE) or code, not {raw:?}"
            )
        }));
    }
    Ok(code.to_string())
}

fn info_response(
    group_id: String,
    g: &whatsapp_rust::features::GroupMetadata,
) -> Json<GroupInfoResponse> {
    Json(GroupInfoResponse {
        group_id,
        data: group_info::info(g),
    })
}

async fn create(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<CreateGroupRequest>,
) -> ApiResult<Json<GroupInfoResponse>> {
    if req.name.trim().is_empty() {
        return Err(ApiError::bad_request("name is required"));
    }
    let members = user_jids("participants", &req.participants)?;
    let g = s
        .engine
        .group_create(&rec.name, &req.name, &members)
        .await?;
    Ok(info_response(g.id.to_string(), &g))
}

async fn list(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
) -> ApiResult<Json<GroupListResponse>> {
    let groups = s.engine.group_list(&rec.name).await?;
    Ok(Json(GroupListResponse {
        data: groups
            .iter()
            .map(|g| GroupSummary {
                jid: g.id.to_string(),
                name: g.subject.clone(),
                topic: g.description.clone().filter(|t| !t.is_empty()),
                participant_count: g.size.map(i64::from).unwrap_or(g.participants.len() as i64),
                is_announce: g.is_announcement,
                is_locked: g.is_locked,
                created_at: g.creation_time.and_then(|t| i64::try_from(t).ok()),
            })
            .collect(),
    }))
}

async fn info(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    Query(q): Query<GroupIdQuery>,
) -> ApiResult<Json<GroupInfoResponse>> {
    let (raw, jid) = query_group(&q)?;
    let g = s.engine.group_info(&rec.name, &jid).await?;
    Ok(info_response(raw, &g))
}

/// `{"url", "id"}`; `{"url": ""}` when the group has no picture.
async fn avatar(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    Query(q): Query<GroupIdQuery>,
) -> ApiResult<Json<PictureUrlResponse>> {
    let (_, jid) = query_group(&q)?;
    Ok(Json(match s.engine.group_avatar(&rec.name, &jid).await? {
        Some((url, id)) => PictureUrlResponse { url, id: Some(id) },
        None => PictureUrlResponse {
            url: String::new(),
            id: None,
        },
    }))
}

async fn leave(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<GroupIdRequest>,
) -> ApiResult<Json<GroupIdResponse>> {
    let jid = group_jid("groupId", &req.group_id)?;
    s.engine.group_leave(&rec.name, &jid).await?;
    Ok(Json(GroupIdResponse {
        group_id: req.group_id,
    }))
}

async fn name(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<UpdateGroupNameRequest>,
) -> ApiResult<Json<GroupIdResponse>> {
    let jid = group_jid("groupId", &req.group_id)?;
    if req.name.trim().is_empty() {
        return Err(ApiError::bad_request("name is required"));
    }
    s.engine.group_set_name(&rec.name, &jid, &req.name).await?;
    Ok(Json(GroupIdResponse {
        group_id: req.group_id,
    }))
}

/// An empty topic deletes the description.
async fn topic(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<UpdateGroupTopicRequest>,
) -> ApiResult<Json<GroupIdResponse>> {
    let jid = group_jid("groupId", &req.group_id)?;
    s.engine
        .group_set_topic(&rec.name, &jid, &req.topic)
        .await?;
    Ok(Json(GroupIdResponse {
        group_id: req.group_id,
    }))
}

/// The picture: JSON `{"groupId", "image"}` (base64, data URL or http(s) URL) or a
/// multipart form with `groupId` and a `file`.
async fn photo(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    body: MediaBody<SetGroupPhotoRequest>,
) -> ApiResult<Json<PictureIdResponse>> {
    let (group_id, picture) = match body {
        MediaBody::Json(r) => (r.group_id, Picture::Value(r.image)),
        MediaBody::Form(mut form) => (
            form.text(&["groupId"]).unwrap_or_default().to_string(),
            Picture::from_form(&mut form)?,
        ),
    };
    let jid = group_jid("groupId", &group_id)?;
    picture.check()?;
    if s.engine.state(&rec.name) != Live::Connected {
        return Err(EngineError::NotConnected(rec.name.clone()).into());
    }
    let bytes = picture.load(&s).await?;
    let picture_id = s.engine.group_set_photo(&rec.name, &jid, bytes).await?;
    Ok(Json(PictureIdResponse { picture_id }))
}

async fn photo_remove(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<GroupIdRequest>,
) -> ApiResult<Json<MessageResponse>> {
    let jid = group_jid("groupId", &req.group_id)?;
    s.engine.group_remove_photo(&rec.name, &jid).await?;
    Ok(Json(MessageResponse {
        message: "group picture deleted".into(),
    }))
}

async fn members(
    s: &AppState,
    session: &str,
    req: GroupParticipantsRequest,
    action: MemberAction,
) -> ApiResult<Json<GroupParticipantsResponse>> {
    let jid = group_jid("groupId", &req.group_id)?;
    let who = user_jids("participants", &req.participants)?;
    let rows = s.engine.group_members(session, &jid, action, &who).await?;
    Ok(Json(GroupParticipantsResponse {
        group_id: req.group_id,
        data: rows.iter().map(group_info::participant_change).collect(),
    }))
}

async fn add(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<GroupParticipantsRequest>,
) -> ApiResult<Json<GroupParticipantsResponse>> {
    members(&s, &rec.name, req, MemberAction::Add).await
}

async fn remove(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<GroupParticipantsRequest>,
) -> ApiResult<Json<GroupParticipantsResponse>> {
    members(&s, &rec.name, req, MemberAction::Remove).await
}

async fn promote(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<GroupParticipantsRequest>,
) -> ApiResult<Json<GroupParticipantsResponse>> {
    members(&s, &rec.name, req, MemberAction::Promote).await
}

async fn demote(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<GroupParticipantsRequest>,
) -> ApiResult<Json<GroupParticipantsResponse>> {
    members(&s, &rec.name, req, MemberAction::Demote).await
}

async fn setting(
    s: &AppState,
    session: &str,
    group_id: &str,
    setting: GroupSetting,
) -> ApiResult<Json<EmptyResponse>> {
    let jid = group_jid("groupId", group_id)?;
    s.engine.group_setting(session, &jid, setting).await?;
    Ok(Json(EmptyResponse {}))
}

async fn announce(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<GroupAnnounceRequest>,
) -> ApiResult<Json<EmptyResponse>> {
    setting(
        &s,
        &rec.name,
        &req.group_id,
        GroupSetting::Announce(req.announce),
    )
    .await
}

async fn locked(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<GroupLockedRequest>,
) -> ApiResult<Json<EmptyResponse>> {
    setting(
        &s,
        &rec.name,
        &req.group_id,
        GroupSetting::Locked(req.locked),
    )
    .await
}

async fn approval(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<GroupApprovalRequest>,
) -> ApiResult<Json<EmptyResponse>> {
    setting(
        &s,
        &rec.name,
        &req.group_id,
        GroupSetting::Approval(req.approval_mode),
    )
    .await
}

async fn member_add(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<GroupMemberAddModeRequest>,
) -> ApiResult<Json<EmptyResponse>> {
    let admins = match req.mode.trim() {
        "admin_add" => true,
        "all_member_add" => false,
        _ => {
            return Err(ApiError::bad_request(
                "mode must be 'admin_add' or 'all_member_add'",
            ));
        }
    };
    setting(&s, &rec.name, &req.group_id, GroupSetting::AdminAdd(admins)).await
}

/// `reset=true` revokes the current link first.
async fn invite_link(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    Query(q): Query<GroupIdQuery>,
) -> ApiResult<Json<GroupInviteLinkResponse>> {
    let (raw, jid) = query_group(&q)?;
    let link = s
        .engine
        .group_invite_link(&rec.name, &jid, q.reset.unwrap_or(false))
        .await?;
    Ok(Json(GroupInviteLinkResponse {
        group_id: raw,
        link,
    }))
}

async fn invite_info(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    Query(q): Query<InviteInfoQuery>,
) -> ApiResult<Json<GroupInfoResponse>> {
    let raw = q.link().unwrap_or_default();
    if raw.is_empty() {
        return Err(ApiError::bad_request(
            "inviteLink query parameter is required",
        ));
    }
    let code = invite_code("inviteLink", raw)?;
    let g = s.engine.group_invite_info(&rec.name, &code).await?;
    Ok(info_response(g.id.to_string(), &g))
}

/// Joins, or asks to when the group wants approval (then the answer adds
/// `"pending": true`).
async fn join(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<JoinGroupRequest>,
) -> ApiResult<Json<serde_json::Value>> {
    let code = invite_code("inviteLink", &req.invite_link)?;
    Ok(Json(match s.engine.group_join(&rec.name, &code).await? {
        Joined::Member(j) => serde_json::json!({ "groupId": j.to_string() }),
        Joined::Pending(j) => serde_json::json!({ "groupId": j.to_string(), "pending": true }),
    }))
}

async fn requests(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    Query(q): Query<GroupIdQuery>,
) -> ApiResult<Json<GroupJoinRequestsResponse>> {
    let (_, jid) = query_group(&q)?;
    let rows = s.engine.group_requests(&rec.name, &jid).await?;
    Ok(Json(GroupJoinRequestsResponse {
        group_id: jid.user.to_string(),
        participants: rows.iter().map(group_info::join_request).collect(),
    }))
}

async fn requests_action(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<GroupRequestActionRequest>,
) -> ApiResult<Json<GroupParticipantsResponse>> {
    let jid = group_jid("groupId", &req.group_id)?;
    let who = user_jids("participants", &req.participants)?;
    let action = match req.action.trim() {
        "approve" => MemberAction::Approve,
        "reject" => MemberAction::Reject,
        _ => {
            return Err(ApiError::bad_request(
                "action must be 'approve' or 'reject'",
            ));
        }
    };
    let rows = s
        .engine
        .group_members(&rec.name, &jid, action, &who)
        .await?;
    Ok(Json(GroupParticipantsResponse {
        group_id: jid.user.to_string(),
        data: rows.iter().map(group_info::participant_change).collect(),
    }))
}

/// Legacy text send to a group (`message/send/text` with a `...@g.us` phone does the same).
async fn send_text(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<SendGroupTextRequest>,
) -> ApiResult<Json<SendResponse>> {
    let to = group_jid("groupId", &req.group_id)?;
    if req.text.trim().is_empty() {
        return Err(ApiError::bad_request("text is required"));
    }
    let message = match &req.quoted {
        Some(q) => wa::Message::text_with_context(&req.text, quote(q, &to)?),
        None => wa::Message::text(&req.text),
    };
    Ok(sent(s.engine.send(&rec.name, to, message).await?))
}
