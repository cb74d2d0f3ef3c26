//! `POST /admin/devices/{jid}/kick`.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::error;
use crate::faults::{self, Kick, KickError};
use crate::state::State;

#[derive(Debug, Deserialize)]
pub struct KickRequest {
    pub reason: String,
}

fn failed(e: KickError) -> Response {
    let status = match e {
        KickError::BadRequest(_) => StatusCode::BAD_REQUEST,
        KickError::UnknownDevice => StatusCode::NOT_FOUND,
        KickError::NotConnected => StatusCode::CONFLICT,
    };
    error(status, e)
}

/// `{"reason": "515" | "401" | "replaced" | "drop"}` → `{"jid", "reason", "closed": bool}`.
/// 515, `replaced` and `drop` need a live connection (409 otherwise); 401 also removes an
/// offline device.
pub async fn kick(
    AxumState(state): AxumState<Arc<State>>,
    Path(jid): Path<String>,
    body: Result<Json<KickRequest>, JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let result = req.reason.parse::<Kick>().and_then(|kick| {
        let addr = faults::device_of(&state, &jid)?;
        faults::kick(&state, &addr, kick).map(|closed| (addr, closed))
    });
    match result {
        Ok((addr, closed)) => {
            Json(json!({ "jid": addr.jid(), "reason": req.reason, "closed": closed }))
                .into_response()
        }
        Err(e) => failed(e),
    }
}
