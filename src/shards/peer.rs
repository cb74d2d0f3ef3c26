//! The forwarding hop's HTTP/1.1 client: kept-alive connections to each member, driven by the
//! task that forwards the request.
//!
//! A general client (hyper's pool) runs every connection in a task of its own: the request goes
//! to that task through a channel, and the answer and each piece of its body come back through
//! others, so one forwarded request wakes three or four tasks, often on another thread. Here the
//! forwarding task writes the request and reads the answer itself, and the answer's body is read
//! by whoever polls it (the entry node's server connection), so the hop costs two socket writes,
//! two reads and no wake-ups of other tasks. A connection goes back to the pool once its answer
//! has been read to the end.
//!
//! The other side is always our own server (hyper): answers are framed by `Content-Length` or
//! chunked, or have no body; anything else is read to the end of the connection and the
//! connection is not reused.

use std::{
    collections::HashMap,
    io,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, ready},
    time::{Duration, Instant},
};

use axum::body::Body;
use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version, header};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::{io::AsyncWriteExt, net::TcpStream};

/// Why a member could not be asked or did not answer.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("bad member address '{0}' (expected http://host:port)")]
    Address(String),
    #[error("connect")]
    Connect(#[source] io::Error),
    #[error("connect: timed out after {0:?}")]
    ConnectTimeout(Duration),
    #[error("sending the request")]
    Write(#[source] io::Error),
    #[error("reading the request body: {0}")]
    RequestBody(String),
    #[error("reading the answer")]
    Read(#[source] io::Error),
    #[error("the member closed the connection before answering")]
    Closed,
    #[error("malformed answer: {0}")]
    Malformed(&'static str),
}

/// What a request carries.
pub enum Payload {
    /// Held in memory: sent with `Content-Length` (and may be sent again).
    Bytes(Bytes),
    /// Streamed as it arrives, chunked; sent once, on a new connection.
    Stream(Body),
}

/// Longest answer head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Headers an answer head may have.
const MAX_HEADERS: usize = 128;
/// Bodies up to this size go out in the same write as the head.
const INLINE_BODY: usize = 64 * 1024;
/// Idle connections kept per member.
const MAX_IDLE: usize = 256;
/// An idle connection older than this is closed rather than reused.
const IDLE_FOR: Duration = Duration::from_secs(20);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How much a body read asks the socket for.
const READ_CHUNK: usize = 16 * 1024;

/// Kept-alive connections to the members, by `host:port`.
#[derive(Clone, Default)]
pub struct Peers {
    idle: Arc<Mutex<HashMap<Arc<str>, Member>>>,
}

/// One member's idle connections, and its address as connections hold it.
struct Member {
    authority: Arc<str>,
    idle: Vec<Idle>,
}

struct Idle {
    stream: TcpStream,
    since: Instant,
}

/// A connection on loan, returned to its pool when its answer has been read.
struct Conn {
    stream: TcpStream,
    authority: Arc<str>,
    pool: Peers,
}

impl Conn {
    fn release(self) {
        let Ok(mut idle) = self.pool.idle.lock() else {
            return;
        };
        let Some(member) = idle.get_mut(&self.authority) else {
            return;
        };
        if member.idle.len() < MAX_IDLE {
            member.idle.push(Idle {
                stream: self.stream,
                since: Instant::now(),
            });
        }
    }
}

impl Peers {
    /// Sends `method target` with `headers` to the member at `base` (`http://host:port`) and
    /// returns its answer, whose body streams from the connection.
    /// `headers` are written as given, but for those that frame the message (`Host`,
    /// `Content-Length`, `Transfer-Encoding`, `Connection`, ...), which this client writes.
    pub async fn send<'h>(
        &self,
        base: &str,
        method: &Method,
        target: &str,
        headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
        payload: Payload,
    ) -> Result<http::Response<Body>, PeerError> {
        let authority = base
            .strip_prefix("http://")
            .map(|a| a.trim_end_matches('/'))
            .filter(|a| !a.is_empty() && !a.contains('/'))
            .ok_or_else(|| PeerError::Address(base.to_string()))?;
        let mut out = BytesMut::with_capacity(512);
        encode_head(&mut out, method, target, authority, headers, &payload);
        let no_body = *method == Method::HEAD;
        let mut conn = match payload {
            Payload::Bytes(body) => {
                // A stream cannot be sent twice, so only a held body goes on a reused
                // connection; a connection the member closed while it sat idle is seen here.
                let mut conn = match self.take(authority) {
                    Some(c) => c,
                    None => self.connect(authority).await?,
                };
                if body.len() <= INLINE_BODY {
                    out.extend_from_slice(&body);
                    conn.stream
                        .write_all(&out)
                        .await
                        .map_err(PeerError::Write)?;
                } else {
                    conn.stream
                        .write_all(&out)
                        .await
                        .map_err(PeerError::Write)?;
                    conn.stream
                        .write_all(&body)
                        .await
                        .map_err(PeerError::Write)?;
                }
                conn
            }
            Payload::Stream(body) => {
                let mut conn = self.connect(authority).await?;
                conn.stream
                    .write_all(&out)
                    .await
                    .map_err(PeerError::Write)?;
                write_chunked(&mut conn.stream, body).await?;
                conn
            }
        };
        let mut buf = BytesMut::with_capacity(8 * 1024);
        let head = read_head(&mut conn.stream, &mut buf).await?;
        let framing = head.framing(no_body)?;
        let mut response = http::Response::new(Body::empty());
        *response.status_mut() = head.status;
        *response.version_mut() = Version::HTTP_11;
        *response.headers_mut() = head.headers;
        let reusable = head.keep_alive && !matches!(framing, Framing::UntilClose);
        let body = match framing {
            Framing::Empty => {
                if reusable && buf.is_empty() {
                    conn.release();
                }
                Body::empty()
            }
            // The common case: a small answer that came whole with its head.
            Framing::Length(n) if buf.len() as u64 == n => {
                let bytes = buf.split().freeze();
                if reusable {
                    conn.release();
                }
                Body::from(bytes)
            }
            framing => Body::new(PeerBody {
                conn: Some(conn),
                buf,
                decoder: Decoder::new(framing),
                reusable,
            }),
        };
        *response.body_mut() = body;
        Ok(response)
    }

    /// An idle connection to `authority` that is still open.
    fn take(&self, authority: &str) -> Option<Conn> {
        let mut idle = self.idle.lock().ok()?;
        let member = idle.get_mut(authority)?;
        while let Some(c) = member.idle.pop() {
            if c.since.elapsed() > IDLE_FOR {
                // The rest are older still.
                member.idle.clear();
                break;
            }
            // Nothing may arrive on an idle connection: a readable one was closed (or is
            // broken) by the member.
            let mut probe = [0u8; 1];
            if let Err(e) = c.stream.try_read(&mut probe)
                && e.kind() == io::ErrorKind::WouldBlock
            {
                return Some(Conn {
                    stream: c.stream,
                    authority: member.authority.clone(),
                    pool: self.clone(),
                });
            }
        }
        None
    }

    async fn connect(&self, authority: &str) -> Result<Conn, PeerError> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(authority))
            .await
            .map_err(|_| PeerError::ConnectTimeout(CONNECT_TIMEOUT))?
            .map_err(PeerError::Connect)?;
        stream.set_nodelay(true).map_err(PeerError::Connect)?;
        let key = {
            let mut idle = self
                .idle
                .lock()
                .map_err(|_| PeerError::Connect(io::Error::other("pool lock poisoned")))?;
            match idle.get(authority) {
                Some(m) => m.authority.clone(),
                None => {
                    let k: Arc<str> = Arc::from(authority);
                    idle.insert(
                        k.clone(),
                        Member {
                            authority: k.clone(),
                            idle: Vec::new(),
                        },
                    );
                    k
                }
            }
        };
        Ok(Conn {
            stream,
            authority: key,
            pool: self.clone(),
        })
    }
}

/// The request line and headers; the length of a held body, or chunked for a stream.
fn encode_head<'h>(
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

async fn write_chunked(stream: &mut TcpStream, mut body: Body) -> Result<(), PeerError> {
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| PeerError::RequestBody(e.to_string()))?;
        if let Ok(data) = frame.into_data()
            && !data.is_empty()
        {
            let size = format!("{:x}\r\n", data.len());
            stream
                .write_all(size.as_bytes())
                .await
                .map_err(PeerError::Write)?;
            stream.write_all(&data).await.map_err(PeerError::Write)?;
            stream.write_all(b"\r\n").await.map_err(PeerError::Write)?;
        }
    }
    stream
        .write_all(b"0\r\n\r\n")
        .await
        .map_err(PeerError::Write)
}

/// An answer's status line and headers.
struct Head {
    status: StatusCode,
    headers: HeaderMap,
    keep_alive: bool,
}

/// Reads until a complete final (not 1xx) head is in `buf`, and takes it off.
async fn read_head(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<Head, PeerError> {
    loop {
        if !buf.is_empty() {
            match parse_head(buf)? {
                Some(head) if head.status.is_informational() => continue,
                Some(head) => return Ok(head),
                None if buf.len() >= MAX_HEAD => return Err(PeerError::Malformed("head too long")),
                None => {}
            }
        }
        buf.reserve(READ_CHUNK);
        let n = tokio::io::AsyncReadExt::read_buf(stream, buf)
            .await
            .map_err(PeerError::Read)?;
        if n == 0 {
            return Err(PeerError::Closed);
        }
    }
}

/// Parses and removes one head from the front of `buf`; `None` while it is incomplete. The
/// header values share the head's bytes (no copy each).
fn parse_head(buf: &mut BytesMut) -> Result<Option<Head>, PeerError> {
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
    fn framing(&self, head_request: bool) -> Result<Framing, PeerError> {
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
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

/// What [`Decoder::decode`] found in the buffer.
#[derive(Debug, PartialEq)]
enum Decoded {
    Data(Bytes),
    /// More bytes are needed (`at_eof`: none will come; an error unless reading to the end).
    NeedMore,
    Done,
}

/// Takes an answer body off a buffer as it fills: a known length, chunks, or everything until
/// the connection closes.
#[derive(Debug)]
enum Decoder {
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
const MAX_LINE: usize = 8 * 1024;

impl Decoder {
    fn new(framing: Framing) -> Decoder {
        match framing {
            Framing::Empty => Decoder::Done,
            Framing::Length(n) => Decoder::Length(n),
            Framing::Chunked => Decoder::ChunkSize,
            Framing::UntilClose => Decoder::UntilClose,
        }
    }

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, PeerError> {
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
    fn remaining(&self) -> Option<u64> {
        match self {
            Decoder::Length(n) => Some(*n),
            Decoder::Done => Some(0),
            _ => None,
        }
    }
}

/// One CRLF-terminated line off the front of `buf`, without its CRLF.
fn take_line(buf: &mut BytesMut) -> Result<Option<Bytes>, PeerError> {
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

/// An answer body read from the member's connection by whoever polls it.
struct PeerBody {
    conn: Option<Conn>,
    buf: BytesMut,
    decoder: Decoder,
    reusable: bool,
}

impl PeerBody {
    fn finish(&mut self) {
        if let Some(conn) = self.conn.take()
            && self.reusable
            && self.buf.is_empty()
        {
            conn.release();
        }
    }
}

impl http_body::Body for PeerBody {
    type Data = Bytes;
    type Error = PeerError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, PeerError>>> {
        let this = self.get_mut();
        loop {
            match this.decoder.decode(&mut this.buf) {
                Err(e) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Ok(Decoded::Data(data)) => {
                    if matches!(this.decoder, Decoder::Length(0)) {
                        this.decoder = Decoder::Done;
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Decoded::Done) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(Decoded::NeedMore) => {}
            }
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            this.buf.reserve(READ_CHUNK);
            let n = match ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut conn.stream),
                cx,
                &mut this.buf
            )) {
                Ok(n) => n,
                Err(e) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(PeerError::Read(e))));
                }
            };
            if n == 0 {
                this.conn = None;
                if matches!(this.decoder, Decoder::UntilClose) {
                    this.decoder = Decoder::Done;
                    return Poll::Ready(None);
                }
                return Poll::Ready(Some(Err(PeerError::Closed)));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.decoder, Decoder::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder.remaining() {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(framing: Framing, wire: &[u8], split: usize) -> Result<Vec<u8>, PeerError> {
        let mut decoder = Decoder::new(framing);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut fed = 0;
        loop {
            match decoder.decode(&mut buf)? {
                Decoded::Data(d) => out.extend_from_slice(&d),
                Decoded::Done => return Ok(out),
                Decoded::NeedMore if fed >= wire.len() => return Err(PeerError::Closed),
                Decoded::NeedMore => {
                    let end = (fed + split).min(wire.len());
                    buf.extend_from_slice(&wire[fed..end]);
                    fed = end;
                }
            }
        }
    }

    #[test]
    fn chunked_bodies_decode_however_the_reads_split_them() {
        let wire =
            b"5\r\nhello\r\n1;ext=1\r\n \r\n10\r\n0123456789abcdef\r\n0\r\nx-trailer: 1\r\n\r\n";
        for split in 1..wire.len() + 1 {
            assert_eq!(
                decode_all(Framing::Chunked, wire, split).expect("decodes"),
                b"hello 0123456789abcdef",
                "split {split}"
            );
        }
    }

    #[test]
    fn a_length_body_stops_at_its_length() {
        let mut decoder = Decoder::new(Framing::Length(3));
        let mut buf = BytesMut::from(&b"abcdef"[..]);
        assert_eq!(
            decoder.decode(&mut buf).expect("data"),
            Decoded::Data(Bytes::from_static(b"abc"))
        );
        assert_eq!(decoder.decode(&mut buf).expect("done"), Decoded::Done);
        assert_eq!(&buf[..], b"def");
    }

    #[test]
    fn broken_chunk_framing_is_an_error() {
        for wire in [
            &b"zz\r\nhello\r\n0\r\n\r\n"[..],
            b"5\r\nhelloXX0\r\n\r\n",
            b"\r\n",
            b"11111111111111111\r\n",
        ] {
            assert!(
                matches!(
                    decode_all(Framing::Chunked, wire, 4),
                    Err(PeerError::Malformed(_))
                ),
                "{wire:?}"
            );
        }
        let long = vec![b'1'; MAX_LINE + 10];
        assert!(decode_all(Framing::Chunked, &long, 64).is_err());
    }

    #[test]
    fn heads_parse_with_their_framing() {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-a: 1\r\nx-a: 2\r\n\r\nok"[..],
        );
        let first = parse_head(&mut buf).expect("parses").expect("complete");
        assert!(first.status.is_informational());
        let head = parse_head(&mut buf).expect("parses").expect("complete");
        assert_eq!(head.status, StatusCode::OK);
        assert!(head.keep_alive);
        assert_eq!(head.headers.get_all("x-a").iter().count(), 2);
        assert_eq!(head.framing(false).expect("framing"), Framing::Length(2));
        assert_eq!(head.framing(true).expect("framing"), Framing::Empty);
        assert_eq!(&buf[..], b"ok");

        let mut buf = BytesMut::from(
            &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"[..],
        );
        let head = parse_head(&mut buf).expect("parses").expect("complete");
        assert!(!head.keep_alive);
        assert_eq!(head.framing(false).expect("framing"), Framing::Chunked);

        let mut partial = BytesMut::from(&b"HTTP/1.1 200 OK\r\ncontent-"[..]);
        assert!(parse_head(&mut partial).expect("partial").is_none());
        let mut bad = BytesMut::from(&b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n"[..]);
        let head = parse_head(&mut bad).expect("parses").expect("complete");
        assert!(head.framing(false).is_err());
    }

    #[test]
    fn the_head_carries_the_headers_and_the_body_framing() {
        let headers: [(&[u8], &[u8]); 3] = [
            (b"x-onwapp-forwarded-by", b"2"),
            (b"Content-Length", b"99"),
            (b"connection", b"close"),
        ];
        let mut out = BytesMut::new();
        encode_head(
            &mut out,
            &Method::POST,
            "/s/send?x=1",
            "127.0.0.1:9",
            headers,
            &Payload::Bytes(Bytes::from_static(b"{}")),
        );
        assert_eq!(
            &out[..],
            &b"POST /s/send?x=1 HTTP/1.1\r\nhost: 127.0.0.1:9\r\nx-onwapp-forwarded-by: 2\r\ncontent-length: 2\r\n\r\n"[..]
        );
    }

    const NO_HEADERS: [(&[u8], &[u8]); 0] = [];

    /// A real server (axum on hyper) that answers in every framing and reports which client
    /// connection each request came on.
    async fn server() -> String {
        use axum::{
            Router,
            extract::ConnectInfo,
            routing::{get, post},
        };
        use std::net::SocketAddr;
        let app = Router::new()
            .route(
                "/port",
                get(|ConnectInfo(a): ConnectInfo<SocketAddr>| async move { a.port().to_string() }),
            )
            .route(
                "/chunked",
                get(|| async {
                    let parts =
                        (0..50).map(|i| Ok::<_, io::Error>(Bytes::from(format!("part{i};"))));
                    Body::from_stream(futures_util::stream::iter(parts))
                }),
            )
            .route("/big", get(|| async { vec![7u8; 1 << 20] }))
            .route("/empty", get(|| async { StatusCode::NO_CONTENT }))
            .route(
                "/echo",
                post(|body: Bytes| async move {
                    format!(
                        "{}:{}",
                        body.len(),
                        body.iter().map(|b| *b as u64).sum::<u64>()
                    )
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await;
        });
        format!("http://{addr}")
    }

    async fn text(r: http::Response<Body>) -> String {
        let bytes = r.into_body().collect().await.expect("body").to_bytes();
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    }

    async fn get(peers: &Peers, base: &str, path: &str) -> http::Response<Body> {
        peers
            .send(
                base,
                &Method::GET,
                path,
                NO_HEADERS,
                Payload::Bytes(Bytes::new()),
            )
            .await
            .expect("answer")
    }

    #[tokio::test]
    async fn answers_in_every_framing_arrive_whole_on_one_kept_alive_connection() {
        let base = server().await;
        let peers = Peers::default();
        let port = text(get(&peers, &base, "/port").await).await;
        let chunked = get(&peers, &base, "/chunked").await;
        assert!(chunked.headers().contains_key(header::TRANSFER_ENCODING));
        let expected: String = (0..50).map(|i| format!("part{i};")).collect();
        assert_eq!(text(chunked).await, expected);
        let big = get(&peers, &base, "/big").await;
        assert_eq!(
            big.into_body().collect().await.expect("body").to_bytes(),
            vec![7u8; 1 << 20]
        );
        let empty = get(&peers, &base, "/empty").await;
        assert_eq!(empty.status(), StatusCode::NO_CONTENT);
        let head = peers
            .send(
                &base,
                &Method::HEAD,
                "/big",
                NO_HEADERS,
                Payload::Bytes(Bytes::new()),
            )
            .await
            .expect("answer");
        assert_eq!(head.headers()[header::CONTENT_LENGTH], "1048576");
        assert_eq!(text(head).await, "");
        // Every answer was read to its end, so the one connection served them all.
        assert_eq!(text(get(&peers, &base, "/port").await).await, port);
    }

    #[tokio::test]
    async fn bodies_go_out_held_or_streamed() {
        let base = server().await;
        let peers = Peers::default();
        let held = vec![3u8; 200_000];
        let answer = peers
            .send(
                &base,
                &Method::POST,
                "/echo",
                NO_HEADERS,
                Payload::Bytes(Bytes::from(held)),
            )
            .await
            .expect("answer");
        assert_eq!(text(answer).await, "200000:600000");
        let parts = (0..100).map(|_| Ok::<_, io::Error>(Bytes::from(vec![1u8; 1000])));
        let streamed = Body::from_stream(futures_util::stream::iter(parts));
        let answer = peers
            .send(
                &base,
                &Method::POST,
                "/echo",
                NO_HEADERS,
                Payload::Stream(streamed),
            )
            .await
            .expect("answer");
        assert_eq!(text(answer).await, "100000:100000");
    }

    #[tokio::test]
    async fn a_connection_the_member_closed_while_idle_is_not_reused() {
        // A server that answers one request per connection, says keep-alive, then hangs up.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let mut served = 0u32;
            while let Ok((mut s, _)) = listener.accept().await {
                served += 1;
                let mut buf = vec![0u8; 4096];
                let _ = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await;
                let body = served.to_string();
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(answer.as_bytes()).await;
                drop(s);
            }
        });
        let peers = Peers::default();
        assert_eq!(text(get(&peers, &base, "/").await).await, "1");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(text(get(&peers, &base, "/").await).await, "2");
    }

    #[tokio::test]
    async fn an_unreachable_member_is_an_error_that_says_so() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let peers = Peers::default();
        let err = peers
            .send(
                &format!("http://127.0.0.1:{port}"),
                &Method::GET,
                "/",
                NO_HEADERS,
                Payload::Bytes(Bytes::new()),
            )
            .await
            .expect_err("nobody listens");
        assert!(matches!(err, PeerError::Connect(_)), "{err:?}");
        let err = peers
            .send(
                "127.0.0.1:1",
                &Method::GET,
                "/",
                NO_HEADERS,
                Payload::Bytes(Bytes::new()),
            )
            .await
            .expect_err("not a URL");
        assert!(matches!(err, PeerError::Address(_)), "{err:?}");
    }
}
