//! `GET/POST /sessions`, `GET /:session/status`, `DELETE /:session`.

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    routing::{delete, get},
};
use subtle::ConstantTimeEq;

use crate::{
    app::AppState,
    auth::{Principal, generate_key, hash_key},
    error::{ApiError, ApiResult},
    http::{
        dto::{CreateSessionRequest, MessageResponse, SessionResponse},
        extract::{Caller, JsonBody, SessionCtx},
    },
    store::{NewSession, SessionRecord},
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/sessions", get(list).post(create))
        .route("/{session}/status", get(status))
        .route("/{session}", delete(remove))
}

/// Names that share their first path segment with a top-level route; refused at creation.
pub const RESERVED_NAMES: &[&str] = &[
    "sessions", "health", "events", "swagger", "metrics", "chatwoot", "admin", "cluster",
    "internal", "raft", "api", "docs",
];

/// 1-64 of `A-Za-z0-9_-`, and not a reserved name.
pub fn validate_session_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() {
        return Err(ApiError::bad_request("session is required"));
    }
    if name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(ApiError::bad_request(
            "invalid session name: use 1-64 characters of A-Z, a-z, 0-9, '_' and '-'",
        ));
    }
    if RESERVED_NAMES.iter().any(|r| r.eq_ignore_ascii_case(name)) {
        return Err(ApiError::bad_request(format!(
            "invalid session name: '{name}' is reserved (it collides with a top-level route)"
        )));
    }
    Ok(())
}

/// A client-chosen key must be hard to guess: at least this long.
pub const MIN_API_KEY_LEN: usize = 16;

fn validate_api_key(key: &str, global: &str) -> Result<(), ApiError> {
    if !(MIN_API_KEY_LEN..=128).contains(&key.len()) || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::bad_request(
            "invalid apiKey: use 16 to 128 printable ASCII characters without spaces",
        ));
    }
    if bool::from(key.as_bytes().ct_eq(global.as_bytes())) {
        return Err(ApiError::Conflict("apiKey already in use".into()));
    }
    Ok(())
}

/// The API's view of a session: stored fields, and the live state from the engine.
pub fn session_response(s: &AppState, r: SessionRecord) -> SessionResponse {
    let status = s.engine.state(&r.name).as_str().to_string();
    let status_reason = s.engine.connect_trouble(&r.name);
    SessionResponse {
        id: r.id.to_string(),
        session: r.name,
        device_jid: r.device_jid,
        phone: r.phone,
        status,
        status_reason,
        api_key: Some(r.api_key),
        push_name: r.push_name,
        profile_picture: None,
        stats: None,
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

async fn list(
    State(s): State<AppState>,
    Caller(who): Caller,
) -> ApiResult<Json<Vec<SessionResponse>>> {
    let all = s.store.list_sessions().await?;
    Ok(Json(
        all.into_iter()
            .filter(|r| who.may_access(&r.name))
            .map(|r| session_response(&s, r))
            .collect(),
    ))
}

async fn create(
    State(s): State<AppState>,
    Caller(who): Caller,
    JsonBody(req): JsonBody<CreateSessionRequest>,
) -> ApiResult<(StatusCode, Json<SessionResponse>)> {
    if who != Principal::Global {
        return Err(ApiError::Forbidden("global API key required"));
    }
    let name = req.session.trim().to_string();
    validate_session_name(&name)?;
    let api_key = match req.api_key.filter(|k| !k.is_empty()) {
        Some(k) => {
            validate_api_key(&k, s.auth.global_key())?;
            k
        }
        None => generate_key(),
    };
    if s.store.get_session(&name).await?.is_some() {
        return Err(ApiError::Conflict(format!("session {name} already exists")));
    }
    let api_key_hash = hash_key(&api_key);
    let rec = s
        .store
        .create_session(NewSession {
            api_key_hash: api_key_hash.clone(),
            api_key,
            name,
        })
        .await?;
    s.auth.key_created(&api_key_hash);
    tracing::info!(session = %rec.name, "session created");
    Ok((StatusCode::CREATED, Json(session_response(&s, rec))))
}

async fn status(State(s): State<AppState>, SessionCtx(rec): SessionCtx) -> Json<SessionResponse> {
    Json(session_response(&s, rec))
}

async fn remove(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
) -> ApiResult<Json<MessageResponse>> {
    // A connected device is logged out of WhatsApp first; its keys go with the session rows.
    s.engine.logout(&rec).await;
    // Its media files go before its rows: when the media store cannot delete them, the
    // session stays, and deleting it again tries again (no file is left without its session).
    let files = s.engine.delete_media_of(rec.id).await.map_err(|e| {
        ApiError::Unavailable(format!(
            "cannot delete the session's media files, nothing was deleted: {e}"
        ))
    })?;
    if files > 0 {
        tracing::info!(session = %rec.name, files, "session media files deleted");
    }
    if !s.store.delete_session(&rec.name).await? {
        return Err(ApiError::session_not_found(&rec.name));
    }
    tracing::info!(session = %rec.name, "session deleted");
    Ok(Json(MessageResponse {
        message: "session deleted".into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "my-session", "A_b-9", &"x".repeat(64)] {
            assert!(validate_session_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "a/b",
            "ção",
            &"x".repeat(65),
            "sessions",
            "Health",
            "swagger",
            "admin",
        ] {
            assert!(validate_session_name(bad).is_err(), "{bad}");
        }
    }
}
