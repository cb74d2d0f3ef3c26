//! `GET/POST /:session/settings`.
//!
//! A POST on a connected session pushes each changed privacy field and the default
//! disappearing timer to WhatsApp first (500 `failed to apply privacy setting <name>: ...`,
//! nothing stored then), stores the change, and reads the seven privacy values back
//! (`privacySyncedAt`). On a session that is not connected the change is stored and marked
//! pending; the engine pushes it at the next connect (`engine::settings`).

use axum::{Json, Router, extract::State, routing::get};

use crate::{
    app::AppState,
    engine::settings,
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
        ..Default::default()
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
    let mut p = validate(req)?;
    let not_found = || ApiError::NotFound("settings not found".into());
    let current = s.store.get_settings(sess.id).await?.ok_or_else(not_found)?;
    let changed = settings::remote_fields(&p);
    let pending =
        settings::join_pending(&settings::parse_pending(&current.privacy_pending), &changed);
    let Some(client) = s.engine.connected_client(&sess.name) else {
        if !changed.is_empty() {
            p.privacy_pending = Some(pending);
        }
        let stored = s.store.update_settings(sess.id, &p).await?;
        return stored.map(|r| Json(response(r))).ok_or_else(not_found);
    };
    let next = settings::with_patch(&current, &p);
    settings::push(&client, &next, &settings::parse_pending(&pending))
        .await
        .map_err(|e| ApiError::Failed(e.to_string()))?;
    if !pending.is_empty() {
        p.privacy_pending = Some(String::new());
    }
    let mut stored = s.store.update_settings(sess.id, &p).await?;
    match settings::read_back(&client).await {
        Ok(back) => stored = s.store.update_settings(sess.id, &back).await?,
        Err(e) => tracing::warn!(session = %sess.name, error = %e, "privacy not read back"),
    }
    if p.always_online == Some(true) {
        settings::keep_online(&client, &sess.name).await;
    }
    stored.map(|r| Json(response(r))).ok_or_else(not_found)
}
