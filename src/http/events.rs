//! `GET /events`: every event a webhook can subscribe to.

use std::collections::BTreeMap;

use axum::{Json, Router, routing::get};

use crate::{app::AppState, events, http::dto::EventsResponse};

pub fn router() -> Router<AppState> {
    Router::new().route("/events", get(list))
}

async fn list() -> Json<EventsResponse> {
    let categories: BTreeMap<String, Vec<String>> = events::CATEGORIES
        .iter()
        .map(|(c, names)| (c.to_string(), names.iter().map(|n| n.to_string()).collect()))
        .collect();
    Json(EventsResponse {
        categories,
        all: events::all().map(str::to_string).collect(),
        not_emitted: events::NOT_EMITTED
            .iter()
            .map(|(n, why)| (n.to_string(), why.to_string()))
            .collect(),
    })
}
