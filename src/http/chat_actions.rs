//! `Chat` actions: typing indicators, read receipts, unread and archive marks (app state, so
//! every device of the account follows) and disappearing timers.

use std::collections::BTreeMap;

use axum::{Json, Router, extract::State, routing::post};
use whatsapp_rust::{Jid, wacore_binary::JidExt};

use crate::{
    app::AppState,
    engine::{
        chat::{OwnCopy, Typing},
        jid::parse_recipient,
    },
    error::{ApiError, ApiResult},
    http::{
        dto::{
            ArchiveChatRequest, ChatPresenceRequest, ChatPresenceResponse,
            DisappearingTimerRequest, EmptyResponse, MarkReadRequest, MarkUnreadRequest,
            MessageResponse, SimpleStatusResponse,
        },
        extract::{JsonBody, SessionCtx},
    },
    store::{SessionRecord, chat::MessageRow},
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/{session}/chat/presence", post(presence))
        .route("/{session}/chat/markread", post(markread))
        .route("/{session}/chat/unread", post(unread))
        .route("/{session}/chat/archive", post(archive))
        .route("/{session}/chat/disappearing", post(disappearing))
}

/// The chat a `phone` field names (a phone number with country code or a JID).
pub(crate) fn chat_jid(field: &str, raw: &str) -> Result<Jid, ApiError> {
    parse_recipient(raw).map_err(|why| ApiError::bad_request(format!("{field} {why}")))
}

/// `composing` (with `media: "audio"`: recording), `recording` or `paused`.
fn typing(state: &str, media: Option<&str>) -> Result<Typing, ApiError> {
    let audio = match media.map(str::trim).unwrap_or_default() {
        "" | "text" => false,
        "audio" => true,
        other => {
            return Err(ApiError::bad_request(format!(
                "media must be \"audio\" or empty, not {other:?}"
            )));
        }
    };
    match state.trim() {
        "" => Err(ApiError::bad_request("state is required")),
        "composing" if audio => Ok(Typing::Recording),
        "composing" => Ok(Typing::Composing),
        "recording" => Ok(Typing::Recording),
        "paused" => Ok(Typing::Paused),
        other => Err(ApiError::bad_request(format!(
            "state must be composing, recording or paused, not {other:?}"
        ))),
    }
}

async fn presence(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<ChatPresenceRequest>,
) -> ApiResult<Json<ChatPresenceResponse>> {
    let chat = chat_jid("phone", &req.phone)?;
    let typing = typing(&req.state, req.media.as_deref())?;
    s.engine.chat_presence(&rec.name, &chat, typing).await?;
    Ok(Json(ChatPresenceResponse { state: req.state }))
}

/// Read receipts for `messageIds` of the chat. In a group each receipt names the message's
/// author, so every id must be a stored message of that group.
async fn markread(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<MarkReadRequest>,
) -> ApiResult<Json<EmptyResponse>> {
    let chat = chat_jid("phone", &req.phone)?;
    if req.message_ids.is_empty() {
        return Err(ApiError::bad_request("messageIds is required"));
    }
    let mut ids = Vec::with_capacity(req.message_ids.len());
    for (i, id) in req.message_ids.iter().enumerate() {
        let id = id.trim();
        if id.is_empty() {
            return Err(ApiError::bad_request(format!(
                "messageIds[{i}] must not be empty"
            )));
        }
        ids.push(id);
    }
    let chat_key = chat.to_non_ad().to_string();
    if !chat.is_group() {
        s.engine.mark_read(&rec.name, &chat, None, &ids).await?;
        s.store.mark_messages_read(rec.id, &chat_key, &ids).await?;
        return Ok(Json(EmptyResponse {}));
    }
    let mut by_author: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for &id in &ids {
        let stored = s.store.get_message(rec.id, &chat_key, id).await?;
        let Some(m) = stored else {
            return Err(ApiError::bad_request(format!(
                "messageIds: message {id} is not known in this group"
            )));
        };
        if m.from_me {
            continue;
        }
        let author = m.sender_jid.unwrap_or_default();
        by_author.entry(author).or_default().push(id);
    }
    for (author, of_author) in by_author {
        let author = chat_jid("messageIds (author)", &author)?;
        s.engine
            .mark_read(&rec.name, &chat, Some(&author), &of_author)
            .await?;
    }
    s.store.mark_messages_read(rec.id, &chat_key, &ids).await?;
    Ok(Json(EmptyResponse {}))
}

async fn unread(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<MarkUnreadRequest>,
) -> ApiResult<Json<SimpleStatusResponse>> {
    let chat = chat_jid("phone", &req.phone)?;
    s.engine.mark_chat_read(&rec.name, &chat, false).await?;
    s.store
        .mark_chat_unread(rec.id, &chat.to_non_ad().to_string())
        .await?;
    Ok(Json(SimpleStatusResponse {
        status: "marked_unread".into(),
    }))
}

async fn archive(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<ArchiveChatRequest>,
) -> ApiResult<Json<SimpleStatusResponse>> {
    let chat = chat_jid("phone", &req.phone)?;
    s.engine.archive_chat(&rec.name, &chat, req.archive).await?;
    Ok(Json(SimpleStatusResponse {
        status: if req.archive {
            "archived"
        } else {
            "unarchived"
        }
        .into(),
    }))
}

const TIMER_HELP: &str =
    "timer: invalid timer format. Use: 24h, 7d, 90d, off, or a duration like 1h30m";

/// `24h`, `7d`, `90d`, `off`/`0`, or a duration of `d`, `h`, `m` and `s` parts (`1h30m`),
/// in whole seconds.
pub(crate) fn timer_seconds(raw: &str) -> Result<u32, ApiError> {
    let raw = raw.trim();
    match raw {
        "" => return Err(ApiError::bad_request("timer is required")),
        "off" | "0" => return Ok(0),
        _ => {}
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in raw.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit: u64 = match c {
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return Err(ApiError::bad_request(TIMER_HELP)),
        };
        let n: u64 = number
            .parse()
            .map_err(|_| ApiError::bad_request(TIMER_HELP))?;
        number.clear();
        total = total.saturating_add(n.saturating_mul(unit));
    }
    if !number.is_empty() {
        return Err(ApiError::bad_request(TIMER_HELP));
    }
    u32::try_from(total).map_err(|_| ApiError::bad_request(TIMER_HELP))
}

async fn disappearing(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<DisappearingTimerRequest>,
) -> ApiResult<Json<MessageResponse>> {
    let chat = chat_jid("phone", &req.phone)?;
    let seconds = timer_seconds(&req.timer)?;
    s.engine.set_disappearing(&rec.name, &chat, seconds).await?;
    s.store
        .set_chat_ephemeral(rec.id, &chat.to_non_ad().to_string(), i64::from(seconds))
        .await?;
    Ok(Json(MessageResponse {
        message: format!("timer set to {}", req.timer.trim()),
    }))
}

/// `POST /:session/message/delete` with `forMe: true`: deletes the message on this account's
/// devices only (app-state `deleteMessageForMe`) and from our store. The index names who
/// sent it, so the message must be one we stored.
pub(crate) async fn delete_for_me(
    s: &AppState,
    rec: &SessionRecord,
    chat: Jid,
    id: &str,
    stored: Option<MessageRow>,
) -> Result<(), ApiError> {
    let Some(m) = stored else {
        return Err(ApiError::NotFound(format!(
            "messageId: message {id} is not known in this chat (deleting for me needs its sender)"
        )));
    };
    let participant = match (&m.sender_jid, chat.is_group() && !m.from_me) {
        (Some(sender), true) => Some(chat_jid("messageId (sender)", sender)?),
        _ => None,
    };
    let chat_key = chat.to_non_ad().to_string();
    let own = OwnCopy {
        chat,
        id: id.to_string(),
        from_me: m.from_me,
        participant,
        timestamp: Some(m.timestamp),
    };
    s.engine.delete_for_me(&rec.name, &own).await?;
    s.store.forget_message(rec.id, &chat_key, id).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers() {
        assert_eq!(timer_seconds("24h").unwrap(), 86_400);
        assert_eq!(timer_seconds("7d").unwrap(), 604_800);
        assert_eq!(timer_seconds("90d").unwrap(), 7_776_000);
        assert_eq!(timer_seconds("off").unwrap(), 0);
        assert_eq!(timer_seconds("0").unwrap(), 0);
        assert_eq!(timer_seconds("1h30m").unwrap(), 5_400);
        for bad in ["", "soon", "24", "h", "1x", "99999999d"] {
            assert!(timer_seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn typing_states() {
        assert_eq!(typing("composing", None).unwrap(), Typing::Composing);
        assert_eq!(
            typing("composing", Some("audio")).unwrap(),
            Typing::Recording
        );
        assert_eq!(typing("recording", None).unwrap(), Typing::Recording);
        assert_eq!(typing("paused", Some("")).unwrap(), Typing::Paused);
        assert!(typing("typing", None).is_err());
        assert!(typing("", None).is_err());
        assert!(typing("composing", Some("video")).is_err());
    }
}
