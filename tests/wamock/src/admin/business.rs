//! Business profiles over the admin API.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::error;
use crate::business::Business;
use crate::state::State;

/// `PUT /admin/accounts/{phone}/business` with a [`Business`] makes the account a business
/// account with that profile; `DELETE` makes it a personal account again. 404 unknown account.
pub async fn set(
    AxumState(state): AxumState<Arc<State>>,
    Path(phone): Path<String>,
    Json(profile): Json<Business>,
) -> Response {
    match state.with_account(&phone, false, |a| {
        a.profile.business = Some(profile.clone())
    }) {
        Some(()) => Json(profile).into_response(),
        None => error(StatusCode::NOT_FOUND, "no account with this phone number"),
    }
}

pub async fn remove(
    AxumState(state): AxumState<Arc<State>>,
    Path(phone): Path<String>,
) -> Response {
    match state.with_account(&phone, false, |a| a.profile.business = None) {
        Some(()) => StatusCode::NO_CONTENT.into_response(),
        None => error(StatusCode::NOT_FOUND, "no account with this phone number"),
    }
}
