//! `Media`: the media rows of a session (every image, video, audio, document and sticker sent or
//! received) and the files we keep of them.
//!
//! `GET /:session/media/download?messageId=` answers the JSON record, as OnWapp does; with
//! `&format=file` it answers the file itself (its MIME type, `Content-Disposition` with a file
//! name). A stored record's `storageUrl` opens without our API key when files are in an object
//! store (its public URL, or a URL presigned as the record is read); otherwise it is that
//! `format=file` URL, authenticated like every session route.

use std::collections::HashMap;

use axum::{
    Json, Router,
    body::Body,
    extract::State,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::{Engine as _, prelude::BASE64_STANDARD};

use crate::{
    app::AppState,
    engine::{EngineError, State as Live},
    error::{ApiError, ApiResult},
    http::{
        dto::{MediaListResponse, MediaPendingResponse, MediaProcessResponse, MediaRecord},
        extract::{Query, SessionCtx},
    },
    media::kind::extension,
    store::{SessionRecord, media::MediaRow},
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/{session}/media/list", get(list))
        .route("/{session}/media/pending", get(pending))
        .route("/{session}/media/process", post(process))
        .route("/{session}/media/download", get(download))
}

type Params = Query<HashMap<String, String>>;

/// An integer query parameter; absent or empty is `None`.
fn num(q: &HashMap<String, String>, name: &str) -> Result<Option<i64>, ApiError> {
    q.get(name)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<i64>().map_err(|_| {
                ApiError::bad_request(format!(
                    "invalid value {v:?} for query parameter '{name}': expected an integer"
                ))
            })
        })
        .transpose()
}

/// `limit`: the default when absent or ≤ 0 (OnWapp's rule), at most `max`.
fn limit(q: &HashMap<String, String>, name: &str, default: i64, max: i64) -> ApiResult<i64> {
    Ok(num(q, name)?.filter(|l| *l > 0).unwrap_or(default).min(max))
}

fn enabled(s: &AppState) -> ApiResult<()> {
    if s.engine.media_enabled() {
        Ok(())
    } else {
        Err(ApiError::bad_request("media service not configured"))
    }
}

/// The media record of the contract; empty values are omitted.
fn record(s: &AppState, session: &str, m: MediaRow) -> MediaRecord {
    let b64 = |v: Option<Vec<u8>>| {
        v.filter(|b| !b.is_empty())
            .map(|b| BASE64_STANDARD.encode(b))
    };
    let text = |v: Option<String>| v.filter(|s| !s.is_empty());
    let positive = |v: Option<i64>| v.filter(|n| *n > 0);
    let storage_url = match (&m.storage_key, m.downloaded) {
        (Some(key), true) => Some(s.engine.media_public_url(key).unwrap_or_else(|| {
            // Relative to this server, or under its public base (`SERVER_URL`).
            let path = file_url(session, &m.msg_id);
            match &s.config.server_url {
                Some(base) => format!("{base}{path}"),
                None => path,
            }
        })),
        _ => None,
    };
    MediaRecord {
        id: m.id.to_string(),
        session_id: m.session_id.to_string(),
        msg_id: m.msg_id,
        media_type: m.media_type,
        mime_type: text(m.mime_type),
        file_size: positive(m.file_size),
        file_name: text(m.file_name),
        wa_direct_path: text(m.wa_direct_path),
        wa_media_key: b64(m.wa_media_key),
        wa_file_sha256: b64(m.wa_file_sha256),
        wa_file_enc_sha256: b64(m.wa_file_enc_sha256),
        wa_media_key_timestamp: positive(m.wa_media_key_timestamp),
        width: positive(m.width),
        height: positive(m.height),
        duration: positive(m.duration),
        storage_key: text(m.storage_key),
        storage_url,
        stored_at: m.stored_at,
        thumbnail_key: text(m.thumbnail_key),
        thumbnail_url: None,
        downloaded: m.downloaded,
        download_error: text(m.download_error),
        download_attempts: m.download_attempts,
        created_at: m.created_at,
        updated_at: m.updated_at,
        chat_jid: text(m.chat_jid),
        from_me: Some(m.from_me),
        caption: text(m.caption),
        push_name: text(m.push_name),
    }
}

/// Where the stored file of a message is served.
fn file_url(session: &str, msg_id: &str) -> String {
    let id: String = url::form_urlencoded::byte_serialize(msg_id.as_bytes()).collect();
    format!("/{session}/media/download?messageId={id}&format=file")
}

async fn list(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    Query(q): Params,
) -> ApiResult<Json<MediaListResponse>> {
    enabled(&s)?;
    let limit = limit(&q, "limit", 100, 10_000)?;
    let offset = num(&q, "offset")?.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::bad_request(
            "invalid value for query parameter 'offset': must not be negative",
        ));
    }
    let rows = s.store.list_media(rec.id, limit, offset).await?;
    let media: Vec<MediaRecord> = rows.into_iter().map(|m| record(&s, &rec.name, m)).collect();
    Ok(Json(MediaListResponse {
        count: media.len() as i64,
        limit,
        media,
        offset,
    }))
}

async fn pending(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    Query(q): Params,
) -> ApiResult<Json<MediaPendingResponse>> {
    enabled(&s)?;
    let limit = limit(&q, "limit", 100, 10_000)?;
    let rows = s.store.pending_media(rec.id, limit).await?;
    let media: Vec<MediaRecord> = rows.into_iter().map(|m| record(&s, &rec.name, m)).collect();
    Ok(Json(MediaPendingResponse {
        count: media.len() as i64,
        media,
    }))
}

/// Downloads up to `batchSize` pending files now, one after the other, and reports how many
/// were stored.
async fn process(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    Query(q): Params,
) -> ApiResult<Json<MediaProcessResponse>> {
    enabled(&s)?;
    let batch = limit(&q, "batchSize", 10, 100)?;
    connected(&s, &rec)?;
    let rows = s.store.pending_media(rec.id, batch).await?;
    let (mut success, mut failed) = (0, 0);
    for row in &rows {
        if s.engine.fetch_media(&rec.name, row).await? {
            success += 1;
        } else {
            failed += 1;
        }
    }
    Ok(Json(MediaProcessResponse {
        failed,
        message: "Media processing completed".into(),
        success,
    }))
}

fn connected(s: &AppState, rec: &SessionRecord) -> ApiResult<()> {
    if s.engine.state(&rec.name) == Live::Connected {
        Ok(())
    } else {
        Err(EngineError::NotConnected(rec.name.clone()).into())
    }
}

async fn download(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    Query(q): Params,
) -> ApiResult<Response> {
    enabled(&s)?;
    let id = q
        .get("messageId")
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::bad_request("messageId query parameter is required"))?;
    let as_file = match q.get("format").map(|f| f.trim().to_ascii_lowercase()) {
        None => false,
        Some(f) if f.is_empty() || f == "json" => false,
        Some(f) if f == "file" => true,
        Some(f) => {
            return Err(ApiError::bad_request(format!(
                "invalid value {f:?} for query parameter 'format': expected json or file"
            )));
        }
    };
    let row = s
        .store
        .get_media(rec.id, id)
        .await?
        .ok_or_else(|| ApiError::NotFound("media not found".into()))?;
    if !as_file {
        return Ok(Json(record(&s, &rec.name, row)).into_response());
    }
    let key = match (&row.storage_key, row.downloaded) {
        (Some(k), true) => k.clone(),
        _ => {
            return Err(ApiError::Conflict(format!(
                "media {id} is not downloaded yet (POST /{}/media/process fetches pending files)",
                rec.name
            )));
        }
    };
    let bytes = s
        .engine
        .media_file(&key)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .ok_or_else(|| ApiError::NotFound("media file not found in the media store".into()))?;
    Ok(file_response(&row, bytes))
}

fn file_response(row: &MediaRow, bytes: Vec<u8>) -> Response {
    let mime = row
        .mime_type
        .clone()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "application/octet-stream".into());
    let name = row
        .file_name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("{}_{}{}", row.msg_id, row.media_type, extension(&mime)));
    // A quoted ASCII fallback plus the RFC 5987 form for any other name.
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded = url::form_urlencoded::byte_serialize(name.as_bytes())
        .collect::<String>()
        .replace('+', "%20");
    let disposition = format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}");
    let mut res = Response::new(Body::from(bytes));
    let headers = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&mime) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    res
}
