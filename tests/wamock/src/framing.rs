//! The frame layer of the chat socket: a 3-byte big-endian length before every
//! frame, and before the very first frame the connection intro (an optional edge
//! routing pre-intro `ED\0\1` + 3-byte length + data, then `WA_CONN_HEADER`).

use bytes::BytesMut;
use wacore::framing::{FrameDecoder, encode_frame};
use wacore_binary::consts::WA_CONN_HEADER;

use crate::error::{Error, Result};

const EDGE_ROUTING_MAGIC: &[u8; 4] = b"ED\x00\x01";

/// Splits what the client sends into frames, consuming the connection intro first.
pub struct FrameReader {
    decoder: FrameDecoder,
    intro: Option<Vec<u8>>,
}

impl Default for FrameReader {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameReader {
    pub fn new() -> Self {
        Self {
            decoder: FrameDecoder::new(),
            intro: Some(Vec::new()),
        }
    }

    /// Feeds the bytes of one websocket message and returns every frame completed by them.
    pub fn feed(&mut self, data: &[u8]) -> Result<Vec<BytesMut>> {
        let rest = match self.intro.as_mut() {
            None => data.to_vec(),
            Some(pending) => {
                pending.extend_from_slice(data);
                match intro_len(pending)? {
                    None => return Ok(Vec::new()),
                    Some(len) => {
                        let rest = pending.split_off(len);
                        self.intro = None;
                        rest
                    }
                }
            }
        };
        self.decoder.feed(&rest);
        let mut frames = Vec::new();
        while let Some(frame) = self.decoder.decode_frame() {
            frames.push(frame);
        }
        Ok(frames)
    }
}

/// Length of the connection intro at the start of `buf`, `None` while incomplete.
fn intro_len(buf: &[u8]) -> Result<Option<usize>> {
    let mut at = 0;
    if buf.len() < EDGE_ROUTING_MAGIC.len() {
        return Ok(None);
    }
    if buf.starts_with(EDGE_ROUTING_MAGIC) {
        if buf.len() < 7 {
            return Ok(None);
        }
        let len = (usize::from(buf[4]) << 16) | (usize::from(buf[5]) << 8) | usize::from(buf[6]);
        at = 7 + len;
    }
    if buf.len() < at + WA_CONN_HEADER.len() {
        return Ok(None);
    }
    let header = &buf[at..at + WA_CONN_HEADER.len()];
    if header != WA_CONN_HEADER {
        return Err(Error::Framing(format!(
            "connection header {header:02x?} is not {WA_CONN_HEADER:02x?}"
        )));
    }
    Ok(Some(at + WA_CONN_HEADER.len()))
}

/// Prefixes one payload with its length.
pub fn frame(payload: &[u8]) -> Result<Vec<u8>> {
    encode_frame(payload, None).map_err(|e| Error::Framing(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intro_then_frames_in_pieces() {
        let mut wire = WA_CONN_HEADER.to_vec();
        wire.extend(frame(b"hello").expect("frame"));
        wire.extend(frame(b"world!").expect("frame"));
        let mut reader = FrameReader::new();
        let mut got = Vec::new();
        for chunk in wire.chunks(3) {
            got.extend(reader.feed(chunk).expect("feed"));
        }
        assert_eq!(got.len(), 2);
        assert_eq!(&got[0][..], b"hello");
        assert_eq!(&got[1][..], b"world!");
    }

    #[test]
    fn edge_routing_preintro_is_skipped() {
        let (header, used) = wacore_noise::build_handshake_header(Some(&[1, 2, 3]));
        assert!(used);
        let mut wire = header;
        wire.extend(frame(b"x").expect("frame"));
        let frames = FrameReader::new().feed(&wire).expect("feed");
        assert_eq!(frames.len(), 1);
        assert_eq!(&frames[0][..], b"x");
    }

    #[test]
    fn wrong_header_is_refused() {
        assert!(FrameReader::new().feed(b"GET / HTTP/1.1").is_err());
    }
}
