//! Every route of the contract that is not built yet: registered, authenticated, the session
//! looked up, then 501 `{"error": "not implemented"}`; an open route answers 501 without a
//! lookup (a stranger learns nothing of session names). Driven by [`catalog::ENDPOINTS`].

use axum::{
    Router,
    routing::{MethodFilter, on},
};

use crate::{
    app::AppState,
    error::ApiError,
    http::{
        catalog::{ENDPOINTS, Status},
        extract::SessionCtx,
    },
};

/// Converts the contract's `:param` spelling into axum's `{param}`.
pub fn axum_path(contract: &str) -> String {
    contract
        .split('/')
        .map(|seg| match seg.strip_prefix(':') {
            Some(p) => format!("{{{p}}}"),
            None => seg.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The method filter of a catalog entry (the catalog's tests keep methods to these four).
fn filter(method: &str) -> Option<MethodFilter> {
    match method {
        "GET" => Some(MethodFilter::GET),
        "POST" => Some(MethodFilter::POST),
        "PUT" => Some(MethodFilter::PUT),
        "DELETE" => Some(MethodFilter::DELETE),
        _ => None,
    }
}

fn pending(auth: bool) -> impl Iterator<Item = (String, MethodFilter)> {
    ENDPOINTS
        .iter()
        .filter(move |e| e.status == Status::NotImplemented && e.auth == auth)
        .filter_map(|e| Some((axum_path(e.path), filter(e.method)?)))
}

/// Routes that need a key; `SessionCtx` enforces 403/404 before the 501.
pub fn authenticated_router() -> Router<AppState> {
    pending(true).fold(Router::new(), |r, (path, f)| {
        r.route(&path, on(f, not_implemented))
    })
}

/// Open routes (the Chatwoot inbound webhook): the session must exist, then 501.
pub fn open_router() -> Router<AppState> {
    pending(false).fold(Router::new(), |r, (path, f)| {
        r.route(&path, on(f, open_not_implemented))
    })
}

async fn not_implemented(SessionCtx(_): SessionCtx) -> ApiError {
    ApiError::NotImplemented
}

/// The open routes (the Chatwoot inbound webhook) answer a stranger the same whether the
/// session exists or not: no lookup, so no oracle of session names (issue 17).
async fn open_not_implemented() -> ApiError {
    ApiError::NotImplemented
}

#[cfg(test)]
mod tests {
    #[test]
    fn paths_convert() {
        assert_eq!(super::axum_path("/:session/qr"), "/{session}/qr");
        assert_eq!(
            super::axum_path("/sessions/:sessionId/chatwoot/set"),
            "/sessions/{sessionId}/chatwoot/set"
        );
    }
}
