//! The HTTP/1.1 wire of the hop: the request head this client writes, the answer head it
//! reads, and the three ways an answer's body can be delimited.

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};

use super::{Payload, PeerError};

/// Headers an answer head may have.
const MAX_HEADERS: usize = 128;

/// The request line and headers; the length of a held body, or chunked for a stream.
pub(super) fn encode_head<'h>(
    out: &mut BytesMut,
    method: &Method,
    target: &str,
    authority: &str,
    headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
    payload: &Payload,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.extend_from_slice(b" ");
    out.extend_from_slice(if target.is_empty() { "/" } else { target }.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(authority.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (k, v) in headers {
        if is_framing(k) {
            continue;
        }
        out.extend_from_slice(k);
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    match payload {
        Payload::Bytes(b) if b.is_empty() && matches!(*method, Method::GET | Method::HEAD) => {}
        Payload::Bytes(b) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(b.len().to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Payload::Stream(_) => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// Headers this client writes itself (or, for `Expect` and `Upgrade`, never).
fn is_framing(k: &[u8]) -> bool {
    const FRAMING: &[&[u8]] = &[
        b"host",
        b"content-length",
        b"transfer-encoding",
        b"connection",
        b"expect",
        b"te",
        b"upgrade",
        b"keep-alive",
        b"proxy-connection",
    ];
    FRAMING.iter().any(|f| f.eq_ignore_ascii_case(k))
}

/// An answer's status line and headers.
pub(super) struct Head {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub keep_alive: bool,
}

/// Parses and removes one head from the front of `buf`; `None` while it is incomplete. The
/// header values share the head's bytes (no copy each).
pub(super) fn parse_head(buf: &mut BytesMut) -> Result<Option<Head>, PeerError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut slots);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(PeerError::Malformed("unparsable head")),
    };
    let status = parsed
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or(PeerError::Malformed("status"))?;
    let http11 = parsed.version == Some(1);
    // Where each header's name and value sit in the head, before the head leaves `buf`.
    let start = buf.as_ptr() as usize;
    let mut spans = Vec::with_capacity(parsed.headers.len());
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| PeerError::Malformed("header name"))?;
        let at = h.value.as_ptr() as usize - start;
        spans.push((name, at, at + h.value.len()));
    }
    let head = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(spans.len());
    let mut keep_alive = http11;
    for (name, from, to) in spans {
        let value = HeaderValue::from_maybe_shared(head.slice(from..to))
            .map_err(|_| PeerError::Malformed("header value"))?;
        if name == header::CONNECTION {
            let v = value.as_bytes().to_ascii_lowercase();
            if v.windows(5).any(|w| w == b"close") {
                keep_alive = false;
            } else if v.windows(10).any(|w| w == b"keep-alive") {
                keep_alive = true;
            }
        }
        headers.append(name, value);
    }
    Ok(Some(Head {
        status,
        headers,
        keep_alive,
    }))
}

impl Head {
    /// How the body of this answer is delimited (RFC 9112, section 6.3).
    pub(super) fn framing(&self, head_request: bool) -> Result<Framing, PeerError> {
        if head_request
            || self.status == StatusCode::NO_CONTENT
            || self.status == StatusCode::NOT_MODIFIED
        {
            return Ok(Framing::Empty);
        }
        if let Some(te) = self.headers.get(header::TRANSFER_ENCODING) {
            let chunked = te
                .as_bytes()
                .rsplit(|b| *b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            return Ok(if chunked {
                Framing::Chunked
            } else {
                Framing::UntilClose
            });
        }
        match self.headers.get(header::CONTENT_LENGTH) {
            Some(v) => v
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .map(|n| {
                    if n == 0 {
                        Framing::Empty
                    } else {
                        Framing::Length(n)
                    }
                })
                .ok_or(PeerError::Malformed("content-length")),
            None => Ok(Framing::UntilClose),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

/// What [`Decoder::decode`] found in the buffer.
#[derive(Debug, PartialEq)]
pub(super) enum Decoded {
    Data(Bytes),
    /// More bytes are needed (`at_eof`: none will come; an error unless reading to the end).
    NeedMore,
    Done,
}

/// Takes an answer body off a buffer as it fills: a known length, chunks, or everything until
/// the connection closes.
#[derive(Debug)]
pub(super) enum Decoder {
    Length(u64),
    /// Waiting for a chunk-size line.
    ChunkSize,
    /// Inside a chunk, this much left.
    ChunkData(u64),
    /// The CRLF after a chunk.
    ChunkEnd,
    /// Trailer lines up to the empty one.
    Trailers,
    UntilClose,
    Done,
}

/// Longest chunk-size or trailer line accepted.
pub(super) const MAX_LINE: usize = 8 * 1024;

impl Decoder {
    pub(super) fn new(framing: Framing) -> Decoder {
        match framing {
            Framing::Empty => Decoder::Done,
            Framing::Length(n) => Decoder::Length(n),
            Framing::Chunked => Decoder::ChunkSize,
            Framing::UntilClose => Decoder::UntilClose,
        }
    }

    pub(super) fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, PeerError> {
        loop {
            match self {
                Decoder::Done => return Ok(Decoded::Done),
                Decoder::Length(0) => {
                    *self = Decoder::Done;
                }
                Decoder::Length(left) | Decoder::ChunkData(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let n = (*left).min(buf.len() as u64);
                    *left -= n;
                    if *left == 0 && matches!(self, Decoder::ChunkData(_)) {
                        *self = Decoder::ChunkEnd;
                    }
                    return Ok(Decoded::Data(buf.split_to(n as usize).freeze()));
                }
                Decoder::ChunkSize => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    let digits = line.split(|b| *b == b';').next().unwrap_or_default();
                    let digits = digits.trim_ascii();
                    let size = std::str::from_utf8(digits)
                        .ok()
                        .filter(|d| !d.is_empty() && d.len() <= 16)
                        .and_then(|d| u64::from_str_radix(d, 16).ok())
                        .ok_or(PeerError::Malformed("chunk size"))?;
                    *self = if size == 0 {
                        Decoder::Trailers
                    } else {
                        Decoder::ChunkData(size)
                    };
                }
                Decoder::ChunkEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(PeerError::Malformed("chunk end"));
                    }
                    buf.advance(2);
                    *self = Decoder::ChunkSize;
                }
                Decoder::Trailers => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    if line.is_empty() {
                        *self = Decoder::Done;
                    }
                }
                Decoder::UntilClose => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    return Ok(Decoded::Data(buf.split().freeze()));
                }
            }
        }
    }

    /// What is left to read, when known.
    pub(super) fn remaining(&self) -> Option<u64> {
        match self {
            Decoder::Length(n) => Some(*n),
            Decoder::Done => Some(0),
            _ => None,
        }
    }
}

/// One CRLF-terminated line off the front of `buf`, without its CRLF.
pub(super) fn take_line(buf: &mut BytesMut) -> Result<Option<Bytes>, PeerError> {
    match buf.windows(2).position(|w| w == b"\r\n") {
        Some(i) => {
            let line = buf.split_to(i).freeze();
            buf.advance(2);
            Ok(Some(line))
        }
        None if buf.len() > MAX_LINE => Err(PeerError::Malformed("line too long")),
        None => Ok(None),
    }
}
