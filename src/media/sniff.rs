//! The MIME type of a file from its first bytes, for media sent without a `mimetype`.

/// The MIME type the magic bytes announce, if they are one we know.
pub fn sniff(b: &[u8]) -> Option<&'static str> {
    let at = |offset: usize, magic: &[u8]| b.get(offset..offset + magic.len()) == Some(magic);
    if at(0, &[0xFF, 0xD8, 0xFF]) {
        return Some("image/jpeg");
    }
    if at(0, b"\x89PNG\r\n\x1a\n") {
        return Some("image/png");
    }
    if at(0, b"GIF87a") || at(0, b"GIF89a") {
        return Some("image/gif");
    }
    if at(0, b"RIFF") && at(8, b"WEBP") {
        return Some("image/webp");
    }
    if at(0, b"RIFF") && at(8, b"WAVE") {
        return Some("audio/wav");
    }
    if at(4, b"ftyp") {
        return Some(match b.get(8..12) {
            Some(b"3gp4" | b"3gp5" | b"3gp6" | b"3ge6" | b"3gs7") => "video/3gpp",
            Some(b"M4A " | b"M4B ") => "audio/mp4",
            Some(b"heic" | b"heix" | b"mif1") => "image/heic",
            Some(b"qt  ") => "video/quicktime",
            _ => "video/mp4",
        });
    }
    if at(0, &[0x1A, 0x45, 0xDF, 0xA3]) {
        return Some("video/webm");
    }
    if at(0, b"OggS") {
        return Some("audio/ogg");
    }
    if at(0, b"ID3") {
        return Some("audio/mpeg");
    }
    if at(0, b"#!AMR") {
        return Some("audio/amr");
    }
    if at(0, b"fLaC") {
        return Some("audio/flac");
    }
    if let [0xFF, second, ..] = b {
        // ADTS (AAC) has layer bits 00; MPEG audio frames (MP3) have layer bits set.
        if second & 0xF6 == 0xF0 {
            return Some("audio/aac");
        }
        if second & 0xE0 == 0xE0 {
            return Some("audio/mpeg");
        }
    }
    if at(0, b"%PDF-") {
        return Some("application/pdf");
    }
    if at(0, b"PK\x03\x04") {
        return Some("application/zip");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::sniff;

    #[test]
    fn known_magics() {
        let cases: &[(&[u8], &str)] = &[
            (&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10], "image/jpeg"),
            (b"\x89PNG\r\n\x1a\n\0\0", "image/png"),
            (b"GIF89a....", "image/gif"),
            (b"RIFF\0\0\0\0WEBPVP8 ", "image/webp"),
            (b"RIFF\0\0\0\0WAVEfmt ", "audio/wav"),
            (b"\0\0\0\x20ftypisom\0\0", "video/mp4"),
            (b"\0\0\0\x20ftyp3gp4\0\0", "video/3gpp"),
            (b"\0\0\0\x20ftypM4A \0\0", "audio/mp4"),
            (b"OggS\0\x02", "audio/ogg"),
            (b"ID3\x04\0", "audio/mpeg"),
            (&[0xFF, 0xFB, 0x90, 0x00], "audio/mpeg"),
            (&[0xFF, 0xF1, 0x50, 0x80], "audio/aac"),
            (b"%PDF-1.7\n", "application/pdf"),
            (b"PK\x03\x04\x14\0", "application/zip"),
            (&[0x1A, 0x45, 0xDF, 0xA3, 1], "video/webm"),
        ];
        for (bytes, want) in cases {
            assert_eq!(sniff(bytes), Some(*want), "{bytes:?}");
        }
    }

    #[test]
    fn unknown_and_short_inputs() {
        assert_eq!(sniff(b""), None);
        assert_eq!(sniff(b"hello world"), None);
        assert_eq!(sniff(&[0xFF]), None);
        assert_eq!(sniff(b"RIFF"), None);
    }
}
