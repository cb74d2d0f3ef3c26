//! 401 unless the `Authorization` header holds the global key or a session key.

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::Response,
};

use crate::{app::AppState, error::ApiError};

pub async fn require_auth(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let principal = state
        .auth
        .authenticate(req.headers().get(axum::http::header::AUTHORIZATION))
        .await?;
    req.extensions_mut().insert(principal);
    Ok(next.run(req).await)
}
