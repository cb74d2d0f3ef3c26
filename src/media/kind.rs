//! The five kinds of media a message carries, and what each implies (WhatsApp's media type,
//! default MIME type, file extension).

use whatsapp_rust::wacore::download::MediaType;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Image,
    Video,
    Audio,
    Document,
    Sticker,
}

impl MediaKind {
    /// `mediaType` in records and events; also the request field that carries the file.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Image => "image",
            MediaKind::Video => "video",
            MediaKind::Audio => "audio",
            MediaKind::Document => "document",
            MediaKind::Sticker => "sticker",
        }
    }

    pub fn parse(s: &str) -> Option<MediaKind> {
        Some(match s {
            "image" => MediaKind::Image,
            "video" => MediaKind::Video,
            "audio" => MediaKind::Audio,
            "document" => MediaKind::Document,
            "sticker" => MediaKind::Sticker,
            _ => return None,
        })
    }

    /// WhatsApp's media type: selects the upload path and the encryption key's info string.
    pub fn wa_type(self) -> MediaType {
        match self {
            MediaKind::Image => MediaType::Image,
            MediaKind::Video => MediaType::Video,
            MediaKind::Audio => MediaType::Audio,
            MediaKind::Document => MediaType::Document,
            MediaKind::Sticker => MediaType::Sticker,
        }
    }

    /// The MIME type when neither the request, the URL's response nor the bytes name one
    /// (OnWapp's defaults).
    pub fn default_mime(self) -> &'static str {
        match self {
            MediaKind::Image => "image/jpeg",
            MediaKind::Video => "video/mp4",
            MediaKind::Audio => "audio/ogg; codecs=opus",
            MediaKind::Document => "application/octet-stream",
            MediaKind::Sticker => "image/webp",
        }
    }
}

/// The file extension for a MIME type (with the dot), empty when unknown.
pub fn extension(mime: &str) -> &'static str {
    let base = mime
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match base.as_str() {
        "image/jpeg" | "image/jpg" => ".jpg",
        "image/png" => ".png",
        "image/gif" => ".gif",
        "image/webp" => ".webp",
        "image/heic" => ".heic",
        "video/mp4" => ".mp4",
        "video/3gpp" => ".3gp",
        "video/webm" => ".webm",
        "video/quicktime" => ".mov",
        "audio/ogg" | "audio/opus" => ".ogg",
        "audio/mpeg" | "audio/mp3" => ".mp3",
        "audio/aac" => ".aac",
        "audio/mp4" | "audio/m4a" => ".m4a",
        "audio/amr" => ".amr",
        "audio/wav" | "audio/x-wav" => ".wav",
        "audio/flac" => ".flac",
        "application/pdf" => ".pdf",
        "application/zip" => ".zip",
        "text/plain" => ".txt",
        _ => "",
    }
}

/// The MIME type a stored file's name stands for (its extension, as [`extension`] makes it);
/// `application/octet-stream` when unknown.
pub fn mime_of_name(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or_default();
    match ext.to_ascii_lowercase().as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "mp4" => "video/mp4",
        "3gp" => "video/3gpp",
        "webm" => "video/webm",
        "mov" => "video/quicktime",
        "ogg" => "audio/ogg",
        "mp3" => "audio/mpeg",
        "aac" => "audio/aac",
        "m4a" => "audio/mp4",
        "amr" => "audio/amr",
        "wav" => "audio/wav",
        "flac" => "audio/flac",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "txt" => "text/plain",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_give_their_mime_type_back() {
        for mime in [
            "image/jpeg",
            "video/mp4",
            "audio/ogg",
            "application/pdf",
            "text/plain",
        ] {
            assert_eq!(mime_of_name(&format!("a/b_x{}", extension(mime))), mime);
        }
        assert_eq!(mime_of_name("a/b_document"), "application/octet-stream");
    }

    #[test]
    fn extensions() {
        assert_eq!(extension("image/jpeg"), ".jpg");
        assert_eq!(extension("audio/ogg; codecs=opus"), ".ogg");
        assert_eq!(extension("Application/PDF"), ".pdf");
        assert_eq!(extension("application/x-unknown"), "");
    }

    #[test]
    fn names_round_trip() {
        for k in [
            MediaKind::Image,
            MediaKind::Video,
            MediaKind::Audio,
            MediaKind::Document,
            MediaKind::Sticker,
        ] {
            assert_eq!(MediaKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(MediaKind::parse("gif"), None);
    }
}
