//! Media on the WhatsApp side: uploading what the API sends, and keeping a copy of every media
//! message (a media row, and the file in the blob store). Received files are downloaded in the
//! background as soon as the message is stored; `POST /:session/media/process` retries what
//! is still pending.

use std::{sync::Arc, time::Duration};

use chrono::{SubsecRound, Utc};
use tokio::sync::Semaphore;
use uuid::Uuid;
use whatsapp_rust::{
    Client, Jid,
    upload::{UploadOptions, UploadResponse},
    wacore::{
        download::{Downloadable, MediaType},
        proto_helpers::MessageExt,
    },
    waproto::whatsapp as wa,
};

use super::{Engine, EngineError, events::Envelope};
use crate::{
    media::{
        BlobStore, MediaKind,
        blobs::{BlobError, object_key},
        web::human_size,
    },
    store::{SessionRecord, Store, media::MediaRow},
};

/// How long one background download may take.
const DOWNLOAD_BUDGET: Duration = Duration::from_secs(120);
/// Background downloads running at once on this node.
const PARALLEL_DOWNLOADS: usize = 4;

/// The media store of the engine: rows in the database, files in the blob store.
pub struct MediaCtx {
    store: Arc<dyn Store>,
    blobs: Arc<dyn BlobStore>,
    max_bytes: u64,
    downloads: Semaphore,
}

/// A decoded file to send.
pub struct OutgoingMedia {
    pub kind: MediaKind,
    pub bytes: Vec<u8>,
    pub mimetype: String,
    pub caption: Option<String>,
    pub file_name: Option<String>,
    /// Audio only: a voice note.
    pub ptt: bool,
}

impl MediaCtx {
    pub fn new(store: Arc<dyn Store>, blobs: Arc<dyn BlobStore>, max_bytes: u64) -> Self {
        MediaCtx {
            store,
            blobs,
            max_bytes,
            downloads: Semaphore::new(PARALLEL_DOWNLOADS),
        }
    }

    /// Records the media row of a stored message and, for media we do not hold yet, downloads
    /// the file in the background. Messages without media are ignored. The row is written
    /// before this returns (it is part of what an inbound message's commit makes durable);
    /// the download is not: a failed or interrupted one is recorded on the row and retried by
    /// `POST /:session/media/process`.
    pub(super) async fn capture(
        self: &Arc<Self>,
        session_id: Uuid,
        client: &Arc<Client>,
        message: &wa::Message,
        e: &Envelope<'_>,
    ) -> crate::store::StoreResult<()> {
        let origin = Origin {
            msg_id: e.id,
            chat: e.chat,
            from_me: e.from_me,
            push_name: e.push_name,
        };
        let Some(row) = media_row(session_id, message, &origin) else {
            return Ok(());
        };
        // `false`: known already (a redelivery, or a file we sent and stored ourselves).
        if self.store.insert_media(&row).await? && !row.downloaded && row.wa_direct_path.is_some() {
            let this = self.clone();
            let client = client.clone();
            tokio::spawn(async move {
                this.download(&client, &row).await;
            });
        }
        Ok(())
    }

    /// Downloads and stores one file; records the attempt either way. `true` when stored.
    pub(super) async fn download(&self, client: &Client, row: &MediaRow) -> bool {
        let outcome = match self.downloads.acquire().await {
            Ok(_permit) => self.fetch_and_keep(client, row).await,
            Err(_) => Err("the media store is closing".to_string()),
        };
        let recorded = match &outcome {
            Ok(()) => Ok(()),
            Err(why) => {
                tracing::warn!(id = %row.msg_id, error = %why, "media download failed");
                self.store.media_failed(row.id, why).await
            }
        };
        if let Err(err) = recorded {
            tracing::error!(id = %row.msg_id, error = %err, "recording media download");
        }
        outcome.is_ok()
    }

    async fn fetch_and_keep(&self, client: &Client, row: &MediaRow) -> Result<(), String> {
        let kind = MediaKind::parse(&row.media_type)
            .ok_or_else(|| format!("unknown media type {}", row.media_type))?;
        if row.file_size.is_some_and(|n| n as u64 > self.max_bytes) {
            return Err(format!(
                "file size exceeds the {} limit",
                human_size(self.max_bytes)
            ));
        }
        let wanted = StoredMedia { row, kind };
        let bytes = tokio::time::timeout(DOWNLOAD_BUDGET, client.download(&wanted))
            .await
            .map_err(|_| format!("no file within {} s", DOWNLOAD_BUDGET.as_secs()))?
            .map_err(|e| format!("{e:#}"))?;
        let key = object_key(
            row.session_id,
            row.from_me,
            Utc::now(),
            &row.msg_id,
            kind,
            row.mime_type.as_deref(),
        );
        self.blobs
            .put(&key, &bytes)
            .await
            .map_err(|e| e.to_string())?;
        self.store
            .media_stored(row.id, &key, bytes.len() as i64)
            .await
            .map_err(|e| e.to_string())
    }

    /// Keeps a file we just sent: stored under its key, its row marked downloaded.
    async fn keep_sent(&self, session_id: Uuid, row: &mut MediaRow, bytes: &[u8]) {
        let Some(kind) = MediaKind::parse(&row.media_type) else {
            return;
        };
        let key = object_key(
            session_id,
            true,
            Utc::now(),
            &row.msg_id,
            kind,
            row.mime_type.as_deref(),
        );
        match self.blobs.put(&key, bytes).await {
            Ok(()) => {
                row.storage_key = Some(key);
                row.stored_at = Some(Utc::now().trunc_subsecs(6));
                row.downloaded = true;
            }
            // The row stays pending: `media/process` can fetch it back from WhatsApp.
            Err(e) => tracing::error!(id = %row.msg_id, error = %e, "storing sent media"),
        }
        if let Err(e) = self.store.insert_media(row).await {
            tracing::error!(id = %row.msg_id, error = %e, "storing sent media row");
        }
    }
}

impl super::EngineConfig {
    /// The media size limit in effect.
    pub fn max_media_bytes(&self) -> u64 {
        match self.media_max_bytes {
            0 => crate::media::DEFAULT_MAX_BYTES,
            n => n,
        }
    }
}

impl Engine {
    /// Whether media rows and files are kept (a media directory is configured).
    pub fn media_enabled(&self) -> bool {
        self.media.is_some()
    }

    /// Uploads the file (encrypted by whatsapp-rust), sends the message carrying it, and keeps
    /// a copy: the row, the file, the stored message and its `message.sent` event.
    pub async fn send_media(
        &self,
        rec: &SessionRecord,
        to: Jid,
        media: OutgoingMedia,
        context: Option<wa::ContextInfo>,
    ) -> Result<String, EngineError> {
        let live = self.connected(&rec.name)?;
        let client = live.client();
        let up = client
            .upload(
                media.bytes.clone(),
                media.kind.wa_type(),
                UploadOptions::new(),
            )
            .await
            .map_err(|e| EngineError::Send(format!("upload failed: {e:#}")))?;
        let mut message = media_message(&media, up);
        if let Some(c) = context {
            message.set_context_info(c);
        }
        live.send_recorded(&to, &message, None, || async {
            let id = client
                .send_message(to.clone(), message.clone())
                .await
                .map(|r| r.message_id)
                .map_err(|e| EngineError::Send(e.to_string()))?;
            // The file we sent, kept before the message is recorded (whose media row then
            // finds it).
            if let Some(ctx) = &self.media {
                let push = client.push_name();
                let origin = Origin {
                    msg_id: &id,
                    chat: &to,
                    from_me: true,
                    push_name: &push,
                };
                if let Some(mut row) = media_row(rec.id, &message, &origin) {
                    ctx.keep_sent(rec.id, &mut row, &media.bytes).await;
                }
            }
            Ok(id)
        })
        .await
    }

    /// Encrypts and uploads a file for a message built elsewhere (e.g. a header image of an
    /// interactive message). Nothing is stored: use [`Engine::send_media`] for media messages.
    pub async fn upload_media(
        &self,
        name: &str,
        kind: MediaKind,
        bytes: Vec<u8>,
    ) -> Result<UploadResponse, EngineError> {
        self.connected(name)?
            .client()
            .upload(bytes, kind.wa_type(), UploadOptions::new())
            .await
            .map_err(|e| EngineError::Send(format!("upload failed: {e:#}")))
    }

    /// Downloads one pending file now; `Ok(false)` when the attempt failed (and was recorded).
    pub async fn fetch_media(&self, name: &str, row: &MediaRow) -> Result<bool, EngineError> {
        let live = self.connected(name)?;
        match &self.media {
            Some(ctx) => Ok(ctx.download(live.client(), row).await),
            None => Ok(false),
        }
    }

    /// The stored file under `key`, if any.
    pub async fn media_file(&self, key: &str) -> Result<Option<Vec<u8>>, BlobError> {
        match &self.media {
            Some(ctx) => ctx.blobs.get(key).await,
            None => Ok(None),
        }
    }

    /// A URL serving the stored file under `key` without our API key (an object store's
    /// public or presigned URL); `None` when files are served only through the API.
    pub fn media_public_url(&self, key: &str) -> Option<String> {
        self.media.as_ref()?.blobs.public_url(key)
    }

    /// Deletes every stored file of a session (its key prefix); how many.
    pub async fn delete_media_of(&self, session_id: Uuid) -> Result<u64, BlobError> {
        match &self.media {
            Some(ctx) => ctx.blobs.delete_prefix(&format!("{session_id}/")).await,
            None => Ok(0),
        }
    }
}

/// WhatsApp's download info of a stored row, for `Client::download`.
struct StoredMedia<'a> {
    row: &'a MediaRow,
    kind: MediaKind,
}

impl Downloadable for StoredMedia<'_> {
    fn direct_path(&self) -> Option<&str> {
        self.row.wa_direct_path.as_deref()
    }
    fn media_key(&self) -> Option<&[u8]> {
        self.row.wa_media_key.as_deref()
    }
    fn file_enc_sha256(&self) -> Option<&[u8]> {
        self.row.wa_file_enc_sha256.as_deref()
    }
    fn file_sha256(&self) -> Option<&[u8]> {
        self.row.wa_file_sha256.as_deref()
    }
    fn file_length(&self) -> Option<u64> {
        self.row.file_size.and_then(|n| u64::try_from(n).ok())
    }
    fn app_info(&self) -> MediaType {
        self.kind.wa_type()
    }
}

/// The media message for an uploaded file.
pub(crate) fn media_message(media: &OutgoingMedia, up: UploadResponse) -> wa::Message {
    let UploadResponse {
        url,
        direct_path,
        media_key,
        file_enc_sha256,
        file_sha256,
        file_length,
        media_key_timestamp,
        streaming_sidecar,
        ..
    } = up;
    let url = Some(url);
    let direct_path = Some(direct_path);
    let media_key = Some(media_key.to_vec());
    let file_sha256 = Some(file_sha256.to_vec());
    let file_enc_sha256 = Some(file_enc_sha256.to_vec());
    let file_length = Some(file_length);
    let media_key_timestamp = Some(media_key_timestamp);
    let mimetype = Some(media.mimetype.clone());
    let caption = media.caption.clone().filter(|c| !c.is_empty());
    let mut m = wa::Message::default();
    match media.kind {
        MediaKind::Image => {
            m.image_message = wa::message::ImageMessage {
                url,
                direct_path,
                media_key,
                file_sha256,
                file_enc_sha256,
                file_length,
                media_key_timestamp,
                mimetype,
                caption,
                ..Default::default()
            }
            .into()
        }
        MediaKind::Video => {
            m.video_message = wa::message::VideoMessage {
                url,
                direct_path,
                media_key,
                file_sha256,
                file_enc_sha256,
                file_length,
                media_key_timestamp,
                mimetype,
                caption,
                streaming_sidecar,
                ..Default::default()
            }
            .into()
        }
        MediaKind::Audio => {
            m.audio_message = wa::message::AudioMessage {
                url,
                direct_path,
                media_key,
                file_sha256,
                file_enc_sha256,
                file_length,
                media_key_timestamp,
                mimetype,
                ptt: Some(media.ptt),
                streaming_sidecar,
                ..Default::default()
            }
            .into()
        }
        MediaKind::Document => {
            m.document_message = wa::message::DocumentMessage {
                url,
                direct_path,
                media_key,
                file_sha256,
                file_enc_sha256,
                file_length,
                media_key_timestamp,
                mimetype,
                title: media.file_name.clone(),
                file_name: media.file_name.clone(),
                caption,
                ..Default::default()
            }
            .into()
        }
        MediaKind::Sticker => {
            m.sticker_message = wa::message::StickerMessage {
                url,
                direct_path,
                media_key,
                file_sha256,
                file_enc_sha256,
                file_length,
                media_key_timestamp,
                mimetype,
                ..Default::default()
            }
            .into()
        }
    }
    m
}

/// Whose message, where.
struct Origin<'a> {
    msg_id: &'a str,
    chat: &'a Jid,
    from_me: bool,
    push_name: &'a str,
}

/// The media row of a message, when it carries media (view-once and ephemeral wrappers
/// included).
fn media_row(session_id: Uuid, message: &wa::Message, e: &Origin<'_>) -> Option<MediaRow> {
    let m = message.get_base_message();
    let at = Utc::now().trunc_subsecs(6);
    let mut row = MediaRow {
        id: Uuid::now_v7(),
        session_id,
        msg_id: e.msg_id.to_string(),
        chat_jid: Some(e.chat.to_non_ad().to_string()),
        from_me: e.from_me,
        media_type: String::new(),
        mime_type: None,
        file_size: None,
        file_name: None,
        caption: None,
        push_name: (!e.push_name.is_empty()).then(|| e.push_name.to_string()),
        wa_direct_path: None,
        wa_media_key: None,
        wa_file_sha256: None,
        wa_file_enc_sha256: None,
        wa_media_key_timestamp: None,
        width: None,
        height: None,
        duration: None,
        storage_key: None,
        stored_at: None,
        thumbnail_key: None,
        downloaded: false,
        download_error: None,
        download_attempts: 0,
        created_at: at,
        updated_at: at,
    };
    macro_rules! common {
        ($x:expr, $kind:expr) => {{
            row.media_type = $kind.as_str().to_string();
            row.mime_type = $x.mimetype.clone().filter(|s| !s.is_empty());
            row.file_size = $x.file_length.and_then(|n| i64::try_from(n).ok());
            row.wa_direct_path = $x.direct_path.clone().filter(|s| !s.is_empty());
            row.wa_media_key = $x.media_key.clone();
            row.wa_file_sha256 = $x.file_sha256.clone();
            row.wa_file_enc_sha256 = $x.file_enc_sha256.clone();
            row.wa_media_key_timestamp = $x.media_key_timestamp;
        }};
    }
    if let Some(x) = m.image_message.as_option() {
        common!(x, MediaKind::Image);
        row.caption = x.caption.clone();
        row.width = x.width.map(i64::from);
        row.height = x.height.map(i64::from);
    } else if let Some(x) = m.video_message.as_option() {
        common!(x, MediaKind::Video);
        row.caption = x.caption.clone();
        row.width = x.width.map(i64::from);
        row.height = x.height.map(i64::from);
        row.duration = x.seconds.map(i64::from);
    } else if let Some(x) = m.audio_message.as_option() {
        common!(x, MediaKind::Audio);
        row.duration = x.seconds.map(i64::from);
    } else if let Some(x) = m.document_message.as_option() {
        common!(x, MediaKind::Document);
        row.caption = x.caption.clone();
        row.file_name = x.file_name.clone();
    } else if let Some(x) = m.sticker_message.as_option() {
        common!(x, MediaKind::Sticker);
        row.width = x.width.map(i64::from);
        row.height = x.height.map(i64::from);
    } else {
        return None;
    }
    row.caption = row.caption.filter(|c| !c.is_empty());
    Some(row)
}
