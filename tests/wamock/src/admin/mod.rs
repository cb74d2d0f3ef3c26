//! The admin JSON API that tests (and people) use to play the phone and the users.

pub mod actions;
pub mod blocklist;
pub mod business;
pub mod calls;
pub mod faults;
pub mod groups;
pub mod history;
pub mod newsletters;
pub mod presence;
pub mod users;

use std::sync::Arc;

use axum::Json;
use axum::extract::State as AxumState;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::pairing::{self, PairingError};
use crate::state::{DeviceStatus, State};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanQrRequest {
    pub qr: String,
    pub phone: String,
    #[serde(default)]
    pub push_name: Option<String>,
}

pub fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": message.to_string() }))).into_response()
}

fn pairing_status(e: &PairingError) -> StatusCode {
    match e {
        PairingError::BadRequest(_) => StatusCode::BAD_REQUEST,
        PairingError::UnknownRef | PairingError::UnknownCode => StatusCode::NOT_FOUND,
        PairingError::Gone => StatusCode::GONE,
        PairingError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        PairingError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
        PairingError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `POST /admin/scan-qr {"qr", "phone", "pushName"?}` → `{"jid"}`.
pub async fn scan_qr(
    AxumState(state): AxumState<Arc<State>>,
    body: Result<Json<ScanQrRequest>, JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    match pairing::scan_qr(&state, &req.qr, &req.phone, req.push_name).await {
        Ok(jid) => Json(json!({ "jid": jid })).into_response(),
        Err(e) => {
            tracing::info!(error = %e, "scan-qr failed");
            error(pairing_status(&e), e)
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairCodeRequest {
    pub phone: String,
    pub code: String,
    #[serde(default)]
    pub push_name: Option<String>,
}

/// `POST /admin/pair-code {"phone", "code", "pushName"?}` → `{"jid"}`.
pub async fn pair_code(
    AxumState(state): AxumState<Arc<State>>,
    body: Result<Json<PairCodeRequest>, JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    match crate::pair_code::enter_code(&state, &req.phone, &req.code, req.push_name).await {
        Ok(jid) => Json(json!({ "jid": jid })).into_response(),
        Err(e) => {
            tracing::info!(error = %e, "pair-code failed");
            error(pairing_status(&e), e)
        }
    }
}

/// `GET /admin/devices` → `[{"jid", "connected", "sockets"}]`.
pub async fn devices(AxumState(state): AxumState<Arc<State>>) -> Json<Vec<DeviceStatus>> {
    Json(state.devices())
}
