//! `GET/POST /:session/settings`. Privacy fields are stored now and pushed to WhatsApp once the
//! engine exists.

use axum::{Json, Router, extract::State, routing::get};

use crate::{
    app::AppState,
    error::{ApiError, ApiResult},
    http::{
        dto::{SettingsResponse, UpdateSettingsRequest},
        extract::{JsonBody, SessionCtx},
    },
    store::{SettingsPatch, SettingsRecord},
};

pub fn router() -> Router<AppState> {
    Router::new().route("/{session}/settings", get(show).post(update))
}

/// Allowed values of each enumerated field, as the contract lists them.
pub const ENUMS: &[(&str, &[&str])] = &[
    (
        "lastSeen",
        &["all", "contacts", "contact_blacklist", "none"],
    ),
    ("online", &["all", "match_last_seen"]),
    (
        "profilePhoto",
        &["all", "contacts", "contact_blacklist", "none"],
    ),
    ("status", &["all", "contacts", "contact_blacklist", "none"]),
    ("readReceipts", &["all", "none"]),
    (
        "groupAdd",
        &["all", "contacts", "contact_blacklist", "none"],
    ),
    ("callAdd", &["all", "known"]),
    ("defaultDisappearingTimer", &["off", "24h", "7d", "90d"]),
];

fn checked(field: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(v) = value else { return Ok(None) };
    let allowed = ENUMS
        .iter()
        .find(|(f, _)| *f == field)
        .map(|(_, a)| *a)
        .unwrap_or_default();
    if allowed.contains(&v.as_str()) {
        Ok(Some(v))
    } else {
        Err(ApiError::bad_request(format!(
            "invalid value {v:?} for field '{field}': must be one of {}",
            allowed.join(", ")
        )))
    }
}

/// Validates an update into the patch to store; 400 names the first bad field.
pub fn validate(r: UpdateSettingsRequest) -> Result<SettingsPatch, ApiError> {
    Ok(SettingsPatch {
        always_online: r.always_online,
        auto_reject_calls: r.auto_reject_calls,
        sync_history: r.sync_history,
        last_seen: checked("lastSeen", r.last_seen)?,
        online: checked("online", r.online)?,
        profile_photo: checked("profilePhoto", r.profile_photo)?,
        status: checked("status", r.status)?,
        read_receipts: checked("readReceipts", r.read_receipts)?,
        group_add: checked("groupAdd", r.group_add)?,
        call_add: checked("callAdd", r.call_add)?,
        default_disappearing_timer: checked(
            "defaultDisappearingTimer",
            r.default_disappearing_timer,
        )?,
    })
}

fn response(r: SettingsRecord) -> SettingsResponse {
    SettingsResponse {
        id: r.id.to_string(),
        session_id: r.session_id.to_string(),
        always_online: r.always_online,
        auto_reject_calls: r.auto_reject_calls,
        sync_history: r.sync_history,
        last_seen: r.last_seen,
        online: r.online,
        profile_photo: r.profile_photo,
        status: r.status,
        read_receipts: r.read_receipts,
        group_add: r.group_add,
        call_add: r.call_add,
        default_disappearing_timer: r.default_disappearing_timer,
        privacy_synced_at: r.privacy_synced_at,
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

async fn show(
    State(s): State<AppState>,
    SessionCtx(sess): SessionCtx,
) -> ApiResult<Json<SettingsResponse>> {
    s.store
        .get_settings(sess.id)
        .await?
        .map(|r| Json(response(r)))
        .ok_or_else(|| ApiError::NotFound("settings not found".into()))
}

async fn update(
    State(s): State<AppState>,
    SessionCtx(sess): SessionCtx,
    JsonBody(req): JsonBody<UpdateSettingsRequest>,
) -> ApiResult<Json<SettingsResponse>> {
    let p = validate(req)?;
    s.store
        .update_settings(sess.id, &p)
        .await?
        .map(|r| Json(response(r)))
        .ok_or_else(|| ApiError::NotFound("settings not found".into()))
}
