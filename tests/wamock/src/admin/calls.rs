//! Calls and privacy settings over the admin API: a simulated user (or any account) rings
//! an account and hangs up; what the callee's devices answered; an account's privacy as its
//! devices set it, and changes made on the phone.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::error;
use crate::calls::{self, CallError};
use crate::state::State;

const NO_ACCOUNT: &str = "no account with this phone number";

#[derive(Debug, Deserialize)]
pub struct PlaceCall {
    pub to: String,
    #[serde(default)]
    pub video: bool,
}

fn digits(raw: &str) -> String {
    raw.split('@')
        .next()
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_digit)
        .collect()
}

fn call_failed(e: CallError) -> Response {
    let status = match e {
        CallError::NoAccount(_) | CallError::NoCall(..) => StatusCode::NOT_FOUND,
        CallError::NoDevice(_) => StatusCode::CONFLICT,
    };
    error(status, e)
}

/// `POST /admin/users/{phone}/call {"to", "video"?}` → `{"callId", "devices"}`.
pub async fn place(
    AxumState(state): AxumState<Arc<State>>,
    Path(phone): Path<String>,
    body: Result<Json<PlaceCall>, JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let to = digits(&req.to);
    if to.is_empty() {
        return error(StatusCode::BAD_REQUEST, "to must be a phone number or JID");
    }
    match calls::place(&state, &phone, &to, req.video) {
        Ok(c) => Json(json!({"callId": c.call_id, "devices": c.devices})).into_response(),
        Err(e) => call_failed(e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HangUp {
    pub to: String,
    pub call_id: String,
}

/// `POST /admin/users/{phone}/hangup {"to", "callId"}` → the call, after the caller's
/// `<terminate>` went to the devices the offer rang.
pub async fn hang_up(
    AxumState(state): AxumState<Arc<State>>,
    Path(phone): Path<String>,
    body: Result<Json<HangUp>, JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    match calls::hang_up(&state, &phone, &digits(&req.to), &req.call_id) {
        Ok(c) => Json(c).into_response(),
        Err(e) => call_failed(e),
    }
}

/// `GET /admin/accounts/{phone}/calls` → the calls the account received.
pub async fn received(
    AxumState(state): AxumState<Arc<State>>,
    Path(phone): Path<String>,
) -> Response {
    match calls::view(&state, &phone) {
        Some(v) => Json(v).into_response(),
        None => error(StatusCode::NOT_FOUND, NO_ACCOUNT),
    }
}

/// `GET /admin/accounts/{phone}/privacy` → `{"categories", "disappearingDuration"}`.
pub async fn privacy(
    AxumState(state): AxumState<Arc<State>>,
    Path(phone): Path<String>,
) -> Response {
    match crate::privacy::view(&state, &phone) {
        Some(v) => Json(v).into_response(),
        None => error(StatusCode::NOT_FOUND, NO_ACCOUNT),
    }
}

/// `POST /admin/accounts/{phone}/privacy {"last": "none", ...}`: the phone changes them.
pub async fn change_privacy(
    AxumState(state): AxumState<Arc<State>>,
    Path(phone): Path<String>,
    body: Result<Json<BTreeMap<String, String>>, JsonRejection>,
) -> Response {
    let Json(values) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    match crate::privacy::change(&state, &phone, &values) {
        Some(Ok(v)) => Json(v).into_response(),
        Some(Err(e)) => error(StatusCode::BAD_REQUEST, e),
        None => error(StatusCode::NOT_FOUND, NO_ACCOUNT),
    }
}
