//! `Chat`: chats and messages from our store (filled by the engine), paginated with the
//! contract's defaults and maxima.

use std::collections::HashMap;

use axum::{Json, Router, extract::State, routing::get};
use serde_json::{Map, Value, json};

use crate::{
    app::AppState,
    error::{ApiError, ApiResult},
    http::extract::{Query, SessionCtx},
    store::chat::{ChatRow, MessageRow},
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/{session}/chat/list", get(list))
        .route("/{session}/chat/messages", get(messages))
        .route("/{session}/chat/info", get(info))
}

type Params = Query<HashMap<String, String>>;

/// `limit`: default when absent or ≤ 0, capped at `max`. `offset`: 0 when absent, never negative.
fn page(q: &HashMap<String, String>, default: i64, max: i64) -> Result<(i64, i64), ApiError> {
    let num = |name: &str| -> Result<Option<i64>, ApiError> {
        q.get(name)
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.parse::<i64>().map_err(|_| {
                    ApiError::bad_request(format!(
                        "invalid value {v:?} for query parameter '{name}': expected an integer"
                    ))
                })
            })
            .transpose()
    };
    let limit = num("limit")?.filter(|l| *l > 0).unwrap_or(default).min(max);
    let offset = num("offset")?.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::bad_request(
            "invalid value for query parameter 'offset': must not be negative",
        ));
    }
    Ok((limit, offset))
}

fn chat_id(q: &HashMap<String, String>) -> Result<String, ApiError> {
    q.get("chatId")
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::bad_request("chatId query parameter is required"))
}

/// A chat record: `jid` always, every other field only when set (OnWapp's shape).
fn chat_json(c: ChatRow) -> Value {
    let mut m = Map::new();
    m.insert("jid".into(), json!(c.jid));
    if let Some(n) = c.name.filter(|n| !n.is_empty()) {
        m.insert("name".into(), json!(n));
    }
    if c.unread_count > 0 {
        m.insert("unreadCount".into(), json!(c.unread_count));
    }
    if c.marked_as_unread {
        m.insert("markedAsUnread".into(), json!(true));
    }
    if c.ephemeral_expiration > 0 {
        m.insert("ephemeralExpiration".into(), json!(c.ephemeral_expiration));
    }
    if let Some(t) = c.conversation_timestamp {
        m.insert("conversationTimestamp".into(), json!(t));
    }
    Value::Object(m)
}

fn message_json(r: MessageRow) -> Value {
    let mut m = Map::new();
    m.insert("msgId".into(), json!(r.msg_id));
    m.insert("chatJid".into(), json!(r.chat_jid));
    let optional = [
        ("senderJid", r.sender_jid),
        ("pushName", r.push_name),
        ("mediaType", r.media_type),
        ("content", r.content),
        ("quotedId", r.quoted_id),
    ];
    for (k, v) in optional {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            m.insert(k.into(), json!(v));
        }
    }
    m.insert("timestamp".into(), json!(r.timestamp));
    m.insert("type".into(), json!(r.kind));
    m.insert("fromMe".into(), json!(r.from_me));
    m.insert("isGroup".into(), json!(r.is_group));
    m.insert("status".into(), json!(r.status));
    Value::Object(m)
}

async fn list(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    Query(q): Params,
) -> ApiResult<Json<Vec<Value>>> {
    let (limit, offset) = page(&q, 100, 500)?;
    let unread = q.get("unread").is_some_and(|v| v == "true");
    let chats = s.store.list_chats(rec.id, limit, offset, unread).await?;
    Ok(Json(chats.into_iter().map(chat_json).collect()))
}

async fn messages(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    Query(q): Params,
) -> ApiResult<Json<Vec<Value>>> {
    let chat = chat_id(&q)?;
    let (limit, offset) = page(&q, 50, 200)?;
    let rows = s.store.list_messages(rec.id, &chat, limit, offset).await?;
    Ok(Json(rows.into_iter().map(message_json).collect()))
}

async fn info(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    Query(q): Params,
) -> ApiResult<Json<Value>> {
    let chat = chat_id(&q)?;
    s.store
        .get_chat(rec.id, &chat)
        .await?
        .map(|c| Json(chat_json(c)))
        .ok_or_else(|| ApiError::NotFound("chat not found".into()))
}
