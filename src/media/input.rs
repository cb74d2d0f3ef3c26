//! The media value of a send request: standard base64, a `data:<mime>;base64,` URL (OnWapp
//! refuses those; clients send them anyway), or an http(s) URL fetched server-side. The MIME
//! type is the request's `mimetype`, else the data URL's or the response's `Content-Type`,
//! else what the bytes look like, else the kind's default.

use base64::{
    Engine as _, alphabet,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
};

use super::{
    fetch::{FetchError, Fetcher},
    kind::MediaKind,
    sniff::sniff,
    web::human_size,
};
use crate::error::ApiError;

/// Standard alphabet; padding optional (some encoders drop it).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{0} is required")]
    Missing(&'static str),
    #[error("invalid base64 {0}: {1}")]
    Base64(&'static str, String),
    #[error("invalid {0}: data URLs must be base64 (data:<mime>;base64,...)")]
    DataUrl(&'static str),
    #[error("{0} is empty")]
    Empty(&'static str),
    #[error("{field}: file size exceeds the {} limit", human_size(*.limit))]
    TooLarge { field: &'static str, limit: u64 },
    #[error("failed to download {0} from URL: {1}")]
    Fetch(&'static str, FetchError),
}

impl From<InputError> for ApiError {
    fn from(e: InputError) -> Self {
        ApiError::bad_request(e.to_string())
    }
}

/// A decoded file and its MIME type.
#[derive(Debug)]
pub struct MediaFile {
    pub bytes: Vec<u8>,
    pub mimetype: String,
}

/// Decodes or downloads `value` (the request field named `kind.as_str()`).
pub async fn load(
    kind: MediaKind,
    value: &str,
    mimetype: Option<&str>,
    fetcher: &Fetcher,
) -> Result<MediaFile, InputError> {
    let pending = prepare(kind, value, mimetype, fetcher).await?;
    finish(kind, pending, mimetype, fetcher).await
}

/// A media value checked as far as it can be without downloading anything: decoded when it
/// is base64 or a data URL, a URL that passed the scheme and address checks otherwise.
#[derive(Debug)]
pub enum Pending {
    Ready(MediaFile),
    Fetch(String),
}

/// Everything about `value` that can be wrong without a download, checked now: a request
/// with a bad value is told so before anything else (the session's state included).
pub async fn prepare(
    kind: MediaKind,
    value: &str,
    mimetype: Option<&str>,
    fetcher: &Fetcher,
) -> Result<Pending, InputError> {
    let field = kind.as_str();
    let value = value.trim();
    if value.is_empty() {
        return Err(InputError::Missing(field));
    }
    let (bytes, announced) = if let Some(rest) = strip_prefix_ci(value, "data:") {
        let (meta, data) = rest.split_once(',').ok_or(InputError::DataUrl(field))?;
        let Some(mime) = strip_suffix_ci(meta, ";base64") else {
            return Err(InputError::DataUrl(field));
        };
        let bytes = decode(field, data, fetcher.max_bytes)?;
        (bytes, Some(mime.to_string()).filter(|m| !m.is_empty()))
    } else if has_scheme(value) {
        fetcher
            .check(value)
            .await
            .map_err(|e| InputError::Fetch(field, e))?;
        return Ok(Pending::Fetch(value.to_string()));
    } else {
        (decode(field, value, fetcher.max_bytes)?, None)
    };
    ready(kind, bytes, mimetype, announced.as_deref()).map(Pending::Ready)
}

/// Downloads what [`prepare`] left to fetch.
pub async fn finish(
    kind: MediaKind,
    pending: Pending,
    mimetype: Option<&str>,
    fetcher: &Fetcher,
) -> Result<MediaFile, InputError> {
    match pending {
        Pending::Ready(file) => Ok(file),
        Pending::Fetch(url) => {
            let got = fetcher
                .fetch(&url)
                .await
                .map_err(|e| InputError::Fetch(kind.as_str(), e))?;
            ready(kind, got.bytes, mimetype, got.content_type.as_deref())
        }
    }
}

fn ready(
    kind: MediaKind,
    bytes: Vec<u8>,
    mimetype: Option<&str>,
    announced: Option<&str>,
) -> Result<MediaFile, InputError> {
    if bytes.is_empty() {
        return Err(InputError::Empty(kind.as_str()));
    }
    let mimetype = choose_mime(kind, mimetype, announced, &bytes);
    Ok(MediaFile { bytes, mimetype })
}

/// A file uploaded as bytes (a multipart `file` field), with the part's `Content-Type`.
pub fn from_bytes(
    kind: MediaKind,
    bytes: Vec<u8>,
    mimetype: Option<&str>,
    announced: Option<&str>,
    max: u64,
) -> Result<MediaFile, InputError> {
    let field = kind.as_str();
    if bytes.is_empty() {
        return Err(InputError::Empty(field));
    }
    if bytes.len() as u64 > max {
        return Err(InputError::TooLarge { field, limit: max });
    }
    let mimetype = choose_mime(kind, mimetype, announced, &bytes);
    Ok(MediaFile { bytes, mimetype })
}

fn decode(field: &'static str, data: &str, max: u64) -> Result<Vec<u8>, InputError> {
    let compact: String = data.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    // 4 characters carry 3 bytes: refuse before allocating the decoded file.
    if (compact.len() as u64 / 4).saturating_mul(3) > max.saturating_add(3) {
        return Err(InputError::TooLarge { field, limit: max });
    }
    let bytes = BASE64
        .decode(compact.as_bytes())
        .map_err(|e| InputError::Base64(field, e.to_string()))?;
    if bytes.len() as u64 > max {
        return Err(InputError::TooLarge { field, limit: max });
    }
    Ok(bytes)
}

/// `scheme://...` (base64 never contains `:`).
fn has_scheme(v: &str) -> bool {
    match v.split_once("://") {
        Some((scheme, _)) => {
            !scheme.is_empty()
                && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn strip_suffix_ci<'a>(s: &'a str, suffix: &str) -> Option<&'a str> {
    let cut = s.len().checked_sub(suffix.len())?;
    let tail = s.get(cut..)?;
    tail.eq_ignore_ascii_case(suffix).then(|| &s[..cut])
}

/// Generic types servers answer when they do not know better.
fn is_generic(mime: &str) -> bool {
    let base = mime.split(';').next().unwrap_or_default().trim();
    base.is_empty()
        || base.eq_ignore_ascii_case("application/octet-stream")
        || base.eq_ignore_ascii_case("binary/octet-stream")
}

fn choose_mime(
    kind: MediaKind,
    requested: Option<&str>,
    announced: Option<&str>,
    bytes: &[u8],
) -> String {
    if let Some(m) = requested.map(str::trim).filter(|m| !m.is_empty()) {
        return m.to_string();
    }
    let found = announced
        .map(str::trim)
        .filter(|m| !is_generic(m))
        .or_else(|| sniff(bytes))
        .unwrap_or(kind.default_mime());
    // WhatsApp plays Ogg audio only as Opus; say so, as its own clients do.
    if kind == MediaKind::Audio && found.eq_ignore_ascii_case("audio/ogg") {
        return kind.default_mime().to_string();
    }
    found.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: Fetcher = Fetcher {
        max_bytes: 16,
        allow_private: false,
    };

    #[tokio::test]
    async fn base64_and_data_urls() {
        let png = b"\x89PNG\r\n\x1a\nabc";
        let b64 = base64::prelude::BASE64_STANDARD.encode(png);
        let f = load(MediaKind::Image, &b64, None, &F).await.unwrap();
        assert_eq!(f.bytes, png);
        assert_eq!(f.mimetype, "image/png");
        let data = format!("data:image/x-custom;base64,{b64}");
        let f = load(MediaKind::Image, &data, None, &F).await.unwrap();
        assert_eq!(f.mimetype, "image/x-custom");
        let f = load(MediaKind::Image, &data, Some("image/gif"), &F)
            .await
            .unwrap();
        assert_eq!(f.mimetype, "image/gif");
        let unpadded = b64.trim_end_matches('=');
        let f = load(MediaKind::Document, unpadded, None, &F).await.unwrap();
        assert_eq!(f.bytes, png);
    }

    #[tokio::test]
    async fn refusals_name_the_field() {
        let e = load(MediaKind::Video, "  ", None, &F).await.unwrap_err();
        assert_eq!(e.to_string(), "video is required");
        let e = load(MediaKind::Audio, "not base64!", None, &F)
            .await
            .unwrap_err();
        assert!(e.to_string().starts_with("invalid base64 audio"), "{e}");
        let e = load(MediaKind::Image, "ftp://example.com/a.png", None, &F)
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "failed to download image from URL: url: only http and https schemes are allowed"
        );
        let big = base64::prelude::BASE64_STANDARD.encode([0u8; 40]);
        let e = load(MediaKind::Sticker, &big, None, &F).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "sticker: file size exceeds the 16 bytes limit"
        );
        let e = load(MediaKind::Image, "data:image/png,abc", None, &F)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("data URLs must be base64"), "{e}");
    }

    #[test]
    fn mime_choice() {
        let ogg = b"OggS\0\x02rest";
        assert_eq!(
            choose_mime(MediaKind::Audio, None, None, ogg),
            "audio/ogg; codecs=opus"
        );
        assert_eq!(
            choose_mime(
                MediaKind::Document,
                None,
                Some("application/octet-stream"),
                b"%PDF-1"
            ),
            "application/pdf"
        );
        assert_eq!(
            choose_mime(MediaKind::Document, None, Some("text/csv"), b"a,b"),
            "text/csv"
        );
        assert_eq!(
            choose_mime(MediaKind::Sticker, None, None, b"??"),
            "image/webp"
        );
        assert_eq!(
            choose_mime(MediaKind::Audio, None, Some("audio/ogg"), b"??"),
            "audio/ogg; codecs=opus"
        );
        assert_eq!(
            choose_mime(MediaKind::Audio, Some("audio/ogg"), None, b"??"),
            "audio/ogg"
        );
    }
}
