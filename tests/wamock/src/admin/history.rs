//! `POST /admin/devices/{jid}/history`: the phone sends its companion a history sync.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::error;
use crate::faults::{self, KickError};
use crate::history::{self, HistoryRequest};
use crate::state::{Delivery, State};

/// `{"conversations": [...], "pushnames"?}` → `{"jid", "delivery": "live" | "queued"}`.
/// 400 bad body or jid, 404 unknown device.
pub async fn send(
    AxumState(state): AxumState<Arc<State>>,
    Path(jid): Path<String>,
    body: Result<Json<HistoryRequest>, JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let addr = match faults::device_of(&state, &jid) {
        Ok(a) => a,
        Err(e @ KickError::UnknownDevice) => return error(StatusCode::NOT_FOUND, e),
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match history::push(&state, &addr, &history::build(&req)).await {
        Ok(Delivery::NoDevice) => error(StatusCode::NOT_FOUND, "no such device"),
        Ok(d) => {
            let delivery = if matches!(d, Delivery::Live) {
                "live"
            } else {
                "queued"
            };
            Json(json!({ "jid": addr.jid(), "delivery": delivery })).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}
