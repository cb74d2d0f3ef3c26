//! Image, audio, video, document and sticker messages. The file comes as base64 (a
//! `data:<mime>;base64,` prefix is accepted) or as an http(s) URL we download (`media::input`);
//! whatsapp-rust encrypts and uploads it, and the message carrying it is sent and stored.
//! 0.2.8's multipart form (`file` plus text fields) is accepted too.

use axum::{Json, extract::State};

use super::{quote, recipient, required, sent};
use crate::{
    app::AppState,
    engine::{EngineError, State as Live, media::OutgoingMedia},
    error::{ApiError, ApiResult},
    http::{
        dto::{
            Quoted, SendAudioRequest, SendDocumentRequest, SendImageRequest, SendResponse,
            SendStickerRequest, SendVideoRequest,
        },
        extract::SessionCtx,
        form::{Form, FormFile, MediaBody, no_file},
    },
    media::{Fetcher, MediaKind, input},
    store::SessionRecord,
};

/// Where the file is: the JSON field's value (base64, data URL, http(s) URL) or the bytes of
/// a multipart `file` field with its `Content-Type`.
enum Source<'a> {
    Value(&'a str),
    File(FormFile),
}

/// One media send, whatever its kind.
struct MediaSend<'a> {
    phone: &'a str,
    kind: MediaKind,
    source: Source<'a>,
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
    if let Source::Value(v) = &m.source {
        required(m.kind.as_str(), v)?;
    }
    let context = m.quoted.map(|q| quote(q, &to)).transpose()?;
    // What is wrong with the file is said before anything else (a session that is not
    // connected included); only a URL's download waits until the session can send it.
    let max = s.config.media_max_bytes;
    let fetcher = Fetcher {
        max_bytes: max,
        allow_private: s.config.media_allow_private_urls,
    };
    let pending = match m.source {
        Source::Value(v) => input::prepare(m.kind, v, m.mimetype, &fetcher).await?,
        Source::File(f) => input::Pending::Ready(input::from_bytes(
            m.kind,
            f.bytes,
            m.mimetype,
            f.content_type.as_deref(),
            max,
        )?),
    };
    if s.engine.state(&rec.name) != Live::Connected {
        return Err(EngineError::NotConnected(rec.name.clone()).into());
    }
    let file = input::finish(m.kind, pending, m.mimetype, &fetcher).await?;
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

/// A multipart send: the same rules as JSON, the file from the `file` field.
async fn send_form(
    s: &AppState,
    rec: &SessionRecord,
    kind: MediaKind,
    mut form: Form,
) -> ApiResult<Json<SendResponse>> {
    let phone = form
        .text(&["phone"])
        .ok_or_else(|| ApiError::bad_request("phone is required"))?
        .to_string();
    let file_name = form.text(&["filename", "fileName"]).map(str::to_string);
    if kind == MediaKind::Document && file_name.is_none() {
        return Err(ApiError::bad_request("filename is required"));
    }
    let caption = match kind {
        MediaKind::Image | MediaKind::Video => form.text(&["caption"]).map(str::to_string),
        _ => None,
    };
    let mimetype = form.text(&["mimeType", "mimetype"]).map(str::to_string);
    let ptt = kind == MediaKind::Audio
        && form
            .text(&["ptt"])
            .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    let file = form.take_file().ok_or_else(no_file)?;
    let m = MediaSend {
        phone: &phone,
        kind,
        source: Source::File(file),
        mimetype: mimetype.as_deref(),
        quoted: None,
        caption,
        file_name,
        ptt,
    };
    send(s, rec, m).await
}

pub(super) async fn image(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    body: MediaBody<SendImageRequest>,
) -> ApiResult<Json<SendResponse>> {
    let req = match body {
        MediaBody::Json(req) => req,
        MediaBody::Form(f) => return send_form(&s, &rec, MediaKind::Image, f).await,
    };
    let m = MediaSend {
        phone: &req.phone,
        kind: MediaKind::Image,
        source: Source::Value(&req.image),
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
    body: MediaBody<SendAudioRequest>,
) -> ApiResult<Json<SendResponse>> {
    let req = match body {
        MediaBody::Json(req) => req,
        MediaBody::Form(f) => return send_form(&s, &rec, MediaKind::Audio, f).await,
    };
    let m = MediaSend {
        phone: &req.phone,
        kind: MediaKind::Audio,
        source: Source::Value(&req.audio),
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
    body: MediaBody<SendVideoRequest>,
) -> ApiResult<Json<SendResponse>> {
    let req = match body {
        MediaBody::Json(req) => req,
        MediaBody::Form(f) => return send_form(&s, &rec, MediaKind::Video, f).await,
    };
    let m = MediaSend {
        phone: &req.phone,
        kind: MediaKind::Video,
        source: Source::Value(&req.video),
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
    body: MediaBody<SendDocumentRequest>,
) -> ApiResult<Json<SendResponse>> {
    let req = match body {
        MediaBody::Json(req) => req,
        MediaBody::Form(f) => return send_form(&s, &rec, MediaKind::Document, f).await,
    };
    let file_name = required("filename", &req.filename)?.trim().to_string();
    let m = MediaSend {
        phone: &req.phone,
        kind: MediaKind::Document,
        source: Source::Value(&req.document),
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
    body: MediaBody<SendStickerRequest>,
) -> ApiResult<Json<SendResponse>> {
    let req = match body {
        MediaBody::Json(req) => req,
        MediaBody::Form(f) => return send_form(&s, &rec, MediaKind::Sticker, f).await,
    };
    let m = MediaSend {
        phone: &req.phone,
        kind: MediaKind::Sticker,
        source: Source::Value(&req.sticker),
        mimetype: req.mimetype.as_deref(),
        quoted: req.quoted.as_ref(),
        caption: None,
        file_name: None,
        ptt: false,
    };
    send(&s, &rec, m).await
}
