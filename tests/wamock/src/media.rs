//! Media: the `media_conn` answer that points clients at wamock's host, the upload
//! endpoint (`POST /mms/{type}/{token}`) that stores the ciphertext as uploaded, and the
//! download endpoint (`GET /v/...`) that serves it back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::prelude::BASE64_URL_SAFE_NO_PAD;
use rand::RngExt;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use wacore::iq::mediaconn::{HostType, MediaConnHostExtended, MediaConnResponseExtended};
use wacore::protocol::ProtocolNode;
use wacore_binary::Node;

use crate::admin::error;
use crate::http_client::MEDIA_HOST;
use crate::state::State;

/// How long a `media_conn` answer is valid, in seconds.
const MEDIA_CONN_TTL: u64 = 3600;
/// Uploads wamock accepts (whatsapp-rust sends each file in one request).
pub const MAX_UPLOAD_BYTES: usize = 64 * 1024 * 1024;
/// Total ciphertext kept; the oldest blobs go first beyond it.
const MAX_STORED_BYTES: usize = 512 * 1024 * 1024;
/// The path prefix of every direct path wamock hands out.
const DIRECT_PATH_PREFIX: &str = "/v/t62.7118-24/";

/// Uploaded ciphertext by id (the token: the file's encrypted SHA-256, base64url).
pub struct MediaStore {
    auth: String,
    inner: Mutex<Blobs>,
}

#[derive(Default)]
struct Blobs {
    by_id: HashMap<String, Bytes>,
    order: Vec<String>,
    total: usize,
}

impl Default for MediaStore {
    fn default() -> Self {
        let mut raw = [0u8; 24];
        rand::rng().fill(&mut raw);
        Self {
            auth: BASE64_URL_SAFE_NO_PAD.encode(raw),
            inner: Mutex::new(Blobs::default()),
        }
    }
}

impl MediaStore {
    fn put(&self, id: &str, data: Bytes) {
        let mut b = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = b.by_id.insert(id.to_string(), data.clone()) {
            b.total -= old.len();
            b.order.retain(|x| x != id);
        }
        b.total += data.len();
        b.order.push(id.to_string());
        while b.total > MAX_STORED_BYTES && b.order.len() > 1 {
            let oldest = b.order.remove(0);
            if let Some(gone) = b.by_id.remove(&oldest) {
                b.total -= gone.len();
            }
        }
    }

    pub fn get(&self, id: &str) -> Option<Bytes> {
        let b = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        b.by_id.get(id).cloned()
    }

    /// The `<media_conn auth ttl><host hostname/></media_conn>` answer.
    pub fn media_conn(&self) -> Node {
        MediaConnResponseExtended::mock(
            self.auth.clone(),
            MEDIA_CONN_TTL,
            vec![MediaConnHostExtended::simple(
                MEDIA_HOST.to_string(),
                HostType::Primary,
            )],
        )
        .into_node()
    }
}

#[derive(Debug, Deserialize)]
pub struct UploadQuery {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    resume: Option<String>,
    #[serde(default)]
    file_offset: Option<u64>,
}

/// `POST /mms/{type}/{token}?auth&token` with the ciphertext →
/// `{"url", "direct_path"}`. `?resume=1` (asked before large uploads) answers that
/// nothing is stored yet.
pub async fn upload(
    AxumState(state): AxumState<Arc<State>>,
    Path((kind, token)): Path<(String, String)>,
    Query(query): Query<UploadQuery>,
    body: Bytes,
) -> Response {
    if query.auth.as_deref() != Some(state.media.auth.as_str()) {
        return error(StatusCode::UNAUTHORIZED, "bad media auth");
    }
    if query.resume.is_some() {
        return Json(json!({})).into_response();
    }
    if query.file_offset.is_some_and(|o| o > 0) {
        return error(StatusCode::BAD_REQUEST, "wamock does not resume uploads");
    }
    let digest = BASE64_URL_SAFE_NO_PAD.encode(Sha256::digest(&body));
    if digest != token {
        return error(
            StatusCode::BAD_REQUEST,
            "token is not the SHA-256 of the uploaded bytes",
        );
    }
    tracing::debug!(%kind, bytes = body.len(), "media uploaded");
    state.media.put(&token, body);
    let direct_path = format!("{DIRECT_PATH_PREFIX}{token}");
    Json(json!({
        "url": format!("https://{MEDIA_HOST}{direct_path}"),
        "direct_path": direct_path,
    }))
    .into_response()
}

/// `GET /v/{...}/{id}`: the stored ciphertext.
pub async fn download(
    AxumState(state): AxumState<Arc<State>>,
    Path(path): Path<String>,
) -> Response {
    let id = path.rsplit('/').next().unwrap_or_default();
    match state.media.get(id) {
        Some(data) => ([(header::CONTENT_TYPE, "application/octet-stream")], data).into_response(),
        None => error(StatusCode::NOT_FOUND, "no such media"),
    }
}
