//! Extractors that turn requests into typed input, or into an `{"error": ...}` naming the problem.

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, RawPathParams, Request},
    http::{StatusCode, request::Parts},
};
use serde::de::DeserializeOwned;

use crate::{app::AppState, auth::Principal, error::ApiError, store::SessionRecord};

/// A JSON body. Unlike `axum::Json` it does not insist on a `Content-Type` (OnWapp clients
/// often omit it), and every failure names the offending field.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let limit = req.extensions().get::<BodyLimit>().map(|l| l.0);
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge {
                    limit: limit.unwrap_or_default(),
                }
            } else {
                ApiError::bad_request(format!("failed to read request body: {e}"))
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// The configured body limit, put in the request's extensions by the body-limit middleware so
/// errors can state it.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// Parses a request body into `T` with messages a client can act on. Never panics.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Every request body of the contract is a JSON object.
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => {
            return Err(ApiError::bad_request(
                "request body is empty: expected a JSON object",
            ));
        }
        Some(b'{') => {}
        // Validated without being kept: a large array costs no memory here.
        Some(_) if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() => {
            return Err(ApiError::bad_request(
                "invalid request body: expected a JSON object",
            ));
        }
        Some(_) => {}
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(de) {
        Ok(v) => Ok(v),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let msg = strip_position(&inner.to_string());
            Err(ApiError::bad_request(match inner.classify() {
                serde_json::error::Category::Data if path != "." => {
                    format!("invalid value for field '{path}': {msg}")
                }
                serde_json::error::Category::Data => match missing_field(&msg) {
                    Some(f) => format!("{f} is required"),
                    None => format!("invalid request body: {msg}"),
                },
                serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                    format!("invalid JSON: {msg}")
                }
                serde_json::error::Category::Io => format!("failed to read request body: {msg}"),
            }))
        }
    }
}

fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

fn missing_field(msg: &str) -> Option<&str> {
    msg.strip_prefix("missing field `")?.strip_suffix('`')
}

/// The authenticated caller, put in the request by the auth middleware.
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Caller)
            .ok_or(ApiError::Unauthorized("missing Authorization header"))
    }
}

/// The session named in the path (`:session` or `:sessionId`), after checking that the caller
/// may reach it (403) and that it exists (404).
pub struct SessionCtx(pub SessionRecord);

impl FromRequestParts<AppState> for SessionCtx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Caller(principal) = Caller::from_request_parts(parts, state).await?;
        let name = session_param(parts, state).await?;
        if !principal.may_access(&name) {
            return Err(ApiError::Forbidden("access denied to this session"));
        }
        load_session(state, &name).await.map(SessionCtx)
    }
}

/// The session path parameter, whatever the route calls it.
pub async fn session_param(parts: &mut Parts, state: &AppState) -> Result<String, ApiError> {
    let params = RawPathParams::from_request_parts(parts, state)
        .await
        .map_err(|_| ApiError::NotFound("route not found".into()))?;
    params
        .iter()
        .find(|(k, _)| *k == "session" || *k == "sessionId")
        .map(|(_, v)| v.to_string())
        .ok_or_else(|| ApiError::NotFound("route not found".into()))
}

pub async fn load_session(state: &AppState, name: &str) -> Result<SessionRecord, ApiError> {
    state
        .store
        .get_session(name)
        .await?
        .ok_or_else(|| ApiError::session_not_found(name))
}

/// axum's `Query` whose refusal is the contract's 400 `{"error": ...}` naming the parameter
/// (axum answers in plain text).
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(e) => {
                let text = e.body_text();
                let why = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text);
                Err(ApiError::bad_request(format!(
                    "invalid query parameter {why}"
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    struct T {
        session: String,
        always_online: Option<bool>,
    }

    fn err(body: &str) -> String {
        match parse_json::<T>(body.as_bytes()) {
            Err(ApiError::BadRequest(m)) => m,
            other => panic!("expected 400, got {other:?}"),
        }
    }

    #[test]
    fn messages_name_the_field() {
        assert_eq!(err(""), "request body is empty: expected a JSON object");
        assert_eq!(err("{}"), "session is required");
        assert!(err(r#"{"session":1}"#).contains("'session'"));
        assert!(err(r#"{"session":"a","alwaysOnline":"yes"}"#).contains("'alwaysOnline'"));
        assert!(err("{nope").starts_with("invalid JSON"));
        assert!(err("[1]").starts_with("invalid request body"));
    }

    /// Deep nesting costs neither stack nor a tree: an unknown field is skipped without
    /// recursion (a byte per level), a known one refuses the first bracket it does not expect.
    #[test]
    fn deep_nesting_is_skipped_or_refused_never_recursed_into() {
        let n = 100_000;
        let deep = format!(
            r#"{{"session":"a","x":{}{}}}"#,
            "[".repeat(n),
            "]".repeat(n)
        );
        assert!(parse_json::<T>(deep.as_bytes()).is_ok());
        let unclosed = format!(r#"{{"session":"a","x":{}"#, "[".repeat(n));
        assert!(err(&unclosed).starts_with("invalid JSON"));
        let known = format!(r#"{{"session":{}{}}}"#, "[".repeat(n), "]".repeat(n));
        assert!(err(&known).contains("'session'"), "{}", err(&known));
    }
}
