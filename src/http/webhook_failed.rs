//! Dead letters (extensions to the contract): `GET /:session/webhook/failed` lists the events
//! that will not be retried, `POST /:session/webhook/replay` queues them again (all or by id).

use std::collections::HashMap;

use axum::{
    Json, Router,
    extract::State,
    routing::{get, post},
};
use uuid::Uuid;

use crate::{
    app::AppState,
    error::{ApiError, ApiResult},
    http::{
        dto::webhooks::{FailedEvent, FailedEventsResponse, ReplayRequest, ReplayResponse},
        extract::{JsonBody, Query, SessionCtx},
    },
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/{session}/webhook/failed", get(failed))
        .route("/{session}/webhook/replay", post(replay))
}

fn number(
    q: &HashMap<String, String>,
    field: &str,
    default: i64,
    max: i64,
) -> Result<i64, ApiError> {
    match q.get(field) {
        None => Ok(default),
        Some(v) => match v.trim().parse::<i64>() {
            Ok(n) if (0..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request(format!(
                "invalid value for field '{field}': must be a whole number from 0 to {max}"
            ))),
        },
    }
}

async fn failed(
    State(s): State<AppState>,
    SessionCtx(sess): SessionCtx,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<FailedEventsResponse>> {
    let limit = match number(&q, "limit", 50, 500)? {
        0 => 50,
        n => n,
    };
    let offset = number(&q, "offset", 0, i64::MAX)?;
    let (total, rows) = s.store.dead_letters(sess.id, limit, offset).await?;
    let events = rows
        .into_iter()
        .map(|r| FailedEvent {
            id: r.id.to_string(),
            event: r.event,
            payload: r.payload.0,
            attempts: r.attempts,
            // The class only (`410` reads `400`): what a private service answered is not the
            // tenant's to read; the exact status stays in the database for the operator.
            last_status: r.last_status.map(|s| s / 100 * 100),
            last_error: r.last_error,
            created_at: r.created_at.to_rfc3339(),
            failed_at: r.dead_at.map(|t| t.to_rfc3339()),
        })
        .collect();
    Ok(Json(FailedEventsResponse {
        total,
        limit,
        offset,
        events,
    }))
}

/// `{"ids": [...]}` replays those; `{}` or `{"all": true}` replays every dead letter.
fn ids(body: ReplayRequest) -> Result<Option<Vec<Uuid>>, ApiError> {
    match (body.all, &body.ids) {
        (None | Some(true), _) | (Some(false), Some(_)) => {}
        (Some(false), None) => {
            return Err(ApiError::bad_request(
                "invalid value for field 'all': must be true, or give 'ids'",
            ));
        }
    }
    let Some(list) = body.ids else {
        return Ok(None);
    };
    if list.is_empty() {
        return Err(ApiError::bad_request(
            "invalid value for field 'ids': must not be empty",
        ));
    }
    list.iter()
        .map(|v| {
            Uuid::parse_str(v.trim()).map_err(|_| {
                ApiError::bad_request(format!(
                    "invalid value {v:?} in field 'ids': not an event id"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

async fn replay(
    State(s): State<AppState>,
    SessionCtx(sess): SessionCtx,
    JsonBody(body): JsonBody<ReplayRequest>,
) -> ApiResult<Json<ReplayResponse>> {
    let ids = ids(body)?;
    let replayed = s.store.replay_dead_letters(sess.id, ids.as_deref()).await?;
    Ok(Json(ReplayResponse { replayed }))
}
