//! Media for simulated users: uploading and wrapping what the admin API asks a user to
//! send, and downloading what a user receives (the inbox shows the SHA-256 of the
//! decrypted bytes).

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use wacore::download::{Downloadable, MediaType};
use wacore::proto_helpers::MessageExt;
use waproto::buffa::MessageField;
use waproto::whatsapp as wa;
use whatsapp_rust::client::Client;
use whatsapp_rust::upload::{UploadOptions, UploadResponse};

use super::UserError;

/// `"media"` of `POST /admin/users/{phone}/send`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaRequest {
    /// `image`, `video`, `audio`, `document` or `sticker`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The file, standard base64.
    pub data: String,
    pub mimetype: String,
    #[serde(default)]
    pub caption: Option<String>,
    #[serde(default)]
    pub file_name: Option<String>,
}

fn media_type(kind: &str) -> Result<MediaType, UserError> {
    Ok(match kind {
        "image" => MediaType::Image,
        "video" => MediaType::Video,
        "audio" => MediaType::Audio,
        "document" => MediaType::Document,
        "sticker" => MediaType::Sticker,
        other => {
            return Err(UserError::BadRequest(format!(
                "media type must be image, video, audio, document or sticker, not {other:?}"
            )));
        }
    })
}

/// Uploads the file with the user's client and builds the message carrying it.
pub async fn message(client: &Client, req: &MediaRequest) -> Result<wa::Message, UserError> {
    let kind = media_type(&req.kind)?;
    let data = BASE64_STANDARD
        .decode(req.data.trim())
        .map_err(|e| UserError::BadRequest(format!("media data is not base64: {e}")))?;
    if data.is_empty() {
        return Err(UserError::BadRequest("media data is empty".into()));
    }
    let up = client
        .upload(data, kind, UploadOptions::new())
        .await
        .map_err(|e| UserError::Client(format!("upload: {e:#}")))?;
    Ok(wrap(kind, req, up))
}

fn wrap(kind: MediaType, req: &MediaRequest, up: UploadResponse) -> wa::Message {
    let mimetype = Some(req.mimetype.clone());
    let caption = req.caption.clone();
    let UploadResponse {
        url,
        direct_path,
        media_key,
        file_enc_sha256,
        file_sha256,
        file_length,
        media_key_timestamp,
        ..
    } = up;
    let (url, direct_path) = (Some(url), Some(direct_path));
    let (media_key, file_sha256, file_enc_sha256) = (
        Some(media_key.to_vec()),
        Some(file_sha256.to_vec()),
        Some(file_enc_sha256.to_vec()),
    );
    let (file_length, media_key_timestamp) = (Some(file_length), Some(media_key_timestamp));
    let mut m = wa::Message::default();
    match kind {
        MediaType::Video => {
            m.video_message = MessageField::some(wa::message::VideoMessage {
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
            })
        }
        MediaType::Audio => {
            m.audio_message = MessageField::some(wa::message::AudioMessage {
                url,
                direct_path,
                media_key,
                file_sha256,
                file_enc_sha256,
                file_length,
                media_key_timestamp,
                mimetype,
                ..Default::default()
            })
        }
        MediaType::Document => {
            m.document_message = MessageField::some(wa::message::DocumentMessage {
                url,
                direct_path,
                media_key,
                file_sha256,
                file_enc_sha256,
                file_length,
                media_key_timestamp,
                mimetype,
                caption,
                file_name: req.file_name.clone(),
                ..Default::default()
            })
        }
        MediaType::Sticker => {
            m.sticker_message = MessageField::some(wa::message::StickerMessage {
                url,
                direct_path,
                media_key,
                file_sha256,
                file_enc_sha256,
                file_length,
                media_key_timestamp,
                mimetype,
                ..Default::default()
            })
        }
        _ => {
            m.image_message = MessageField::some(wa::message::ImageMessage {
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
            })
        }
    }
    m
}

/// The media a message carries, if any.
pub fn downloadable(message: &wa::Message) -> Option<&dyn Downloadable> {
    let m = message.get_base_message();
    if let Some(x) = m.image_message.as_option() {
        return Some(x);
    }
    if let Some(x) = m.video_message.as_option() {
        return Some(x);
    }
    if let Some(x) = m.audio_message.as_option() {
        return Some(x);
    }
    if let Some(x) = m.document_message.as_option() {
        return Some(x);
    }
    m.sticker_message
        .as_option()
        .map(|x| x as &dyn Downloadable)
}

/// Downloads and decrypts a message's media: (hex SHA-256, length).
pub async fn fetch_hash(
    client: &Client,
    message: &wa::Message,
) -> Option<Result<(String, u64), String>> {
    let media = downloadable(message)?;
    Some(match client.download(media).await {
        Ok(bytes) => Ok((hex(&Sha256::digest(&bytes)), bytes.len() as u64)),
        Err(e) => Err(format!("{e:#}")),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
