//! Accounts and their blocklists over the admin API.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::error;
use crate::state::State;

/// `GET /admin/accounts/{phone}` → `{"phone", "lid", "pushName"}`. 404 unknown account.
pub async fn account(
    AxumState(state): AxumState<Arc<State>>,
    Path(phone): Path<String>,
) -> Response {
    match crate::blocklist::account_view(&state, &phone) {
        Some(v) => Json(v).into_response(),
        None => error(StatusCode::NOT_FOUND, "no account with this phone number"),
    }
}

/// `GET /admin/accounts/{phone}/blocklist` → `[{"jid", "pn"?, "t"}]`. 404 unknown account.
pub async fn blocklist(
    AxumState(state): AxumState<Arc<State>>,
    Path(phone): Path<String>,
) -> Response {
    match crate::blocklist::view(&state, &phone) {
        Some(v) => Json(v).into_response(),
        None => error(StatusCode::NOT_FOUND, "no account with this phone number"),
    }
}
