//! Image, audio, video, document and sticker messages. The file comes as base64 (a
//! `data:<mime>;base64,` prefix is accepted) or as an http(s) URL we download (`media::input`);
//! whatsapp-rust encrypts and uploads it, and the message carrying it is sent and stored.

use axum::{Json, extract::State};

use super::{quote, recipient, required, sent};
use crate::{
    app::AppState,
    engine::{EngineError, State as Live, media::OutgoingMedia},
    error::ApiResult,
    http::{
        dto::{
            Quoted, SendAudioRequest, SendDocumentRequest, SendImageRequest, SendResponse,
            SendStickerRequest, SendVideoRequest,
        },
        extract::{JsonBody, SessionCtx},
    },
    media::{Fetcher, MediaKind, input},
    store::SessionRecord,
};

/// One media send, whatever its kind.
struct MediaSend<'a> {
    phone: &'a str,
    kind: MediaKind,
    value: &'a str,
    mimetype: Option<&'a str>,
    quoted: Option<&'a Quoted>,
    caption: Option<String>,
    file_name: Option<String>,
    ptt: bool,
}

async fn send(
    s: &AppState,
    rec: &SessionRecord,
    m: MediaSend<'_>,
) -> ApiResult<Json<SendResponse>> {
    // Everything cheap is checked before a URL is downloaded.
    let to = recipient("phone", m.phone)?;
    required(m.kind.as_str(), m.value)?;
    let context = m.quoted.map(|q| quote(q, &to)).transpose()?;
    if s.engine.state(&rec.name) != Live::Connected {
        return Err(EngineError::NotConnected(rec.name.clone()).into());
    }
    let fetcher = Fetcher {
        max_bytes: s.config.media_max_bytes,
        allow_private: s.config.media_allow_private_urls,
    };
    let file = input::load(m.kind, m.value, m.mimetype, &fetcher).await?;
    let media = OutgoingMedia {
        kind: m.kind,
        bytes: file.bytes,
        mimetype: file.mimetype,
        caption: m.caption.filter(|c| !c.trim().is_empty()),
        file_name: m.file_name,
        ptt: m.ptt,
    };
    Ok(sent(s.engine.send_media(rec, to, media, context).await?))
}

pub(super) async fn image(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<SendImageRequest>,
) -> ApiResult<Json<SendResponse>> {
    let m = MediaSend {
        phone: &req.phone,
        kind: MediaKind::Image,
        value: &req.image,
        mimetype: req.mimetype.as_deref(),
        quoted: req.quoted.as_ref(),
        caption: req.caption.clone(),
        file_name: None,
        ptt: false,
    };
    send(&s, &rec, m).await
}

pub(super) async fn audio(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<SendAudioRequest>,
) -> ApiResult<Json<SendResponse>> {
    let m = MediaSend {
        phone: &req.phone,
        kind: MediaKind::Audio,
        value: &req.audio,
        mimetype: req.mimetype.as_deref(),
        quoted: req.quoted.as_ref(),
        caption: None,
        file_name: None,
        ptt: req.ptt.unwrap_or(false),
    };
    send(&s, &rec, m).await
}

pub(super) async fn video(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<SendVideoRequest>,
) -> ApiResult<Json<SendResponse>> {
    let m = MediaSend {
        phone: &req.phone,
        kind: MediaKind::Video,
        value: &req.video,
        mimetype: req.mimetype.as_deref(),
        quoted: req.quoted.as_ref(),
        caption: req.caption.clone(),
        file_name: None,
        ptt: false,
    };
    send(&s, &rec, m).await
}

pub(super) async fn document(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<SendDocumentRequest>,
) -> ApiResult<Json<SendResponse>> {
    let file_name = required("filename", &req.filename)?.trim().to_string();
    let m = MediaSend {
        phone: &req.phone,
        kind: MediaKind::Document,
        value: &req.document,
        mimetype: req.mimetype.as_deref(),
        quoted: req.quoted.as_ref(),
        caption: None,
        file_name: Some(file_name),
        ptt: false,
    };
    send(&s, &rec, m).await
}

pub(super) async fn sticker(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<SendStickerRequest>,
) -> ApiResult<Json<SendResponse>> {
    let m = MediaSend {
        phone: &req.phone,
        kind: MediaKind::Sticker,
        value: &req.sticker,
        mimetype: req.mimetype.as_deref(),
        quoted: req.quoted.as_ref(),
        caption: None,
        file_name: None,
        ptt: false,
    };
    send(&s, &rec, m).await
}
