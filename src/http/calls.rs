//! `Calls`: rejecting an incoming call through the session's client.

use axum::{Json, Router, extract::State, routing::post};

use crate::{
    app::AppState,
    error::{ApiError, ApiResult},
    http::{
        dto::{EmptyResponse, RejectCallRequest},
        extract::{JsonBody, SessionCtx},
    },
};

pub fn router() -> Router<AppState> {
    Router::new().route("/{session}/call/reject", post(reject))
}

/// `{"callFrom", "callId"}` → `{}` once the reject is on the wire. 404 for a call id the
/// session was not offered by that caller (lately, since this process started).
async fn reject(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<RejectCallRequest>,
) -> ApiResult<Json<EmptyResponse>> {
    let call_id = req.call_id.trim();
    if call_id.is_empty() {
        return Err(ApiError::bad_request("callId is required"));
    }
    let from = crate::engine::jid::parse_recipient(&req.call_from)
        .map_err(|e| ApiError::bad_request(format!("callFrom {e}")))?;
    if !(from.is_pn() || from.is_lid()) {
        return Err(ApiError::bad_request(format!(
            "callFrom must be a phone number, not {:?}",
            req.call_from
        )));
    }
    s.engine.reject_call(&rec.name, &from, call_id).await?;
    Ok(Json(EmptyResponse {}))
}
