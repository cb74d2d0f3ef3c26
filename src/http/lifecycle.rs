//! Session lifecycle: connect, QR, pairing by phone code, disconnect, logout, restart.

use axum::{
    Json, Router,
    extract::State,
    http::header,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};

use crate::{
    app::AppState,
    engine::{State as Live, qr},
    error::{ApiError, ApiResult},
    http::{
        dto::{PairPhoneRequest, QrQuery, QrResponse},
        extract::{JsonBody, Query, SessionCtx},
    },
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/{session}/connect", post(connect))
        .route("/{session}/qr", get(qr_code))
        .route("/{session}/pairphone", post(pair_phone))
        .route("/{session}/disconnect", post(disconnect))
        .route("/{session}/logout", post(logout))
        .route("/{session}/restart", post(restart))
}

async fn connect(State(s): State<AppState>, SessionCtx(rec): SessionCtx) -> ApiResult<Json<Value>> {
    let out = s.engine.connect(&rec).await?;
    Ok(Json(match (out.state, out.needs_pairing) {
        (Live::Connected, _) => json!({"message": "session connected", "status": "connected"}),
        (state, true) => json!({
            "message": "scan QR code to authenticate",
            "status": state.as_str(),
            "qr": format!("/{}/qr", rec.name),
        }),
        (state, false) => json!({"message": "connecting", "status": state.as_str()}),
    }))
}

async fn qr_code(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    Query(q): Query<QrQuery>,
) -> ApiResult<Response> {
    let state = s.engine.state(&rec.name).as_str();
    let Some(code) = s.engine.qr(&rec.name) else {
        return Ok(Json(QrResponse {
            qr: None,
            code: None,
            status: state.into(),
        })
        .into_response());
    };
    if q.format.as_deref() == Some("image") {
        let png = qr::png(&code).map_err(|e| ApiError::Internal(e.into()))?;
        return Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response());
    }
    let url = qr::data_url(&code).map_err(|e| ApiError::Internal(e.into()))?;
    Ok(Json(QrResponse {
        qr: Some(url),
        code: Some(code),
        status: state.into(),
    })
    .into_response())
}

/// Digits with country code; a leading `+`, spaces, dashes and parentheses are tolerated.
pub fn normalize_phone(raw: &str) -> Result<String, ApiError> {
    crate::engine::jid::phone_digits(raw).ok_or_else(|| {
        ApiError::bad_request(format!(
            "invalid value {raw:?} for field 'phone': expected 7-15 digits with country code"
        ))
    })
}

async fn pair_phone(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<PairPhoneRequest>,
) -> ApiResult<Json<Value>> {
    let phone = normalize_phone(&req.phone)?;
    if s.engine.state(&rec.name) == Live::Disconnected {
        s.engine.connect(&rec).await?;
    }
    let code = s.engine.pair_phone(&rec.name, &phone).await?;
    // Shown as WhatsApp's phone shows it: `ABCD-EFGH`.
    let code = match code.len() {
        8 if code.is_ascii() && !code.contains('-') => format!("{}-{}", &code[..4], &code[4..]),
        _ => code,
    };
    Ok(Json(json!({ "code": code })))
}

async fn disconnect(State(s): State<AppState>, SessionCtx(rec): SessionCtx) -> Json<Value> {
    s.engine.disconnect(&rec.name).await;
    Json(json!({"message": "session disconnected"}))
}

async fn logout(State(s): State<AppState>, SessionCtx(rec): SessionCtx) -> Json<Value> {
    s.engine.logout(&rec).await;
    Json(json!({"message": "logged out successfully"}))
}

async fn restart(State(s): State<AppState>, SessionCtx(rec): SessionCtx) -> ApiResult<Json<Value>> {
    s.engine.disconnect(&rec.name).await;
    let out = s.engine.connect(&rec).await?;
    Ok(Json(
        json!({"message": "session restarted", "status": out.state.as_str()}),
    ))
}
