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
use bytes::{Bytes, BytesMut};
use http::{Method, Version};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf},
    net::TcpStream,
};
use tokio_rustls::{TlsConnector, client::TlsStream};

mod wire;

use wire::{Decoded, Decoder, Framing, Head, encode_head, parse_head};

/// Why a member could not be asked or did not answer.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error(
        "bad member address '{0}' (expected http://host:port, or https:// with TLS between nodes)"
    )]
    Address(String),
    #[error("TLS handshake")]
    Tls(#[source] io::Error),
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

impl PeerError {
    /// The member cannot have acted on the request: it never had all of it (no connection, a
    /// write that failed, the client's own body that failed midway). Everything else (a read
    /// that failed, a close before the answer) may come after the member ran the request.
    pub fn never_reached(&self) -> bool {
        matches!(
            self,
            PeerError::Address(_)
                | PeerError::Connect(_)
                | PeerError::Tls(_)
                | PeerError::ConnectTimeout(_)
                | PeerError::Write(_)
                | PeerError::RequestBody(_)
        )
    }

    /// The connection was closed or reset under the request, before any of an answer came.
    fn closed_before_answer(&self) -> bool {
        use io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
        match self {
            PeerError::Closed => true,
            PeerError::Write(e) | PeerError::Read(e) => {
                // A TLS connection closed without close_notify reads as an unexpected EOF.
                matches!(
                    e.kind(),
                    BrokenPipe | ConnectionReset | ConnectionAborted | UnexpectedEof
                )
            }
            _ => false,
        }
    }
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
/// Bodies up to this size go out in the same write as the head.
const INLINE_BODY: usize = 64 * 1024;
/// Idle connections kept per member.
const MAX_IDLE: usize = 256;
/// An idle connection older than this is closed rather than reused.
const IDLE_FOR: Duration = Duration::from_secs(20);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a request whose sending failed waits for an answer the member may have sent first.
const EARLY_ANSWER: Duration = Duration::from_secs(1);
/// How much a body read asks the socket for.
const READ_CHUNK: usize = 16 * 1024;

/// Kept-alive connections to the members, by `host:port`; over TLS to `https://` members when
/// built [`Peers::with_tls`].
#[derive(Clone, Default)]
pub struct Peers {
    idle: Arc<Mutex<HashMap<Arc<str>, Member>>>,
    tls: Option<TlsConnector>,
}

/// A connection to a member: plain TCP, or TLS over it.
enum PeerStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for PeerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PeerStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            PeerStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            PeerStream::Plain(s) => Pin::new(s).poll_write(cx, data),
            PeerStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, data),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PeerStream::Plain(s) => Pin::new(s).poll_flush(cx),
            PeerStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PeerStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            PeerStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl PeerStream {
    /// Nothing may arrive on an idle connection: one that is readable (or closed) was closed
    /// or broken by the member.
    fn idle_and_open(&mut self) -> bool {
        match self {
            PeerStream::Plain(s) => {
                let mut probe = [0u8; 1];
                matches!(s.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            PeerStream::Tls(s) => {
                // Read without waiting: pending means nothing came (the server sends no
                // session tickets, see `tls.rs`).
                let mut probe = [0u8; 1];
                let mut buf = ReadBuf::new(&mut probe);
                let mut cx = Context::from_waker(std::task::Waker::noop());
                matches!(
                    Pin::new(s.as_mut()).poll_read(&mut cx, &mut buf),
                    Poll::Pending
                )
            }
        }
    }
}

/// One member's idle connections, and its address as connections hold it.
struct Member {
    authority: Arc<str>,
    idle: Vec<Idle>,
}

struct Idle {
    stream: PeerStream,
    since: Instant,
}

/// A connection on loan, returned to its pool when its answer has been read.
struct Conn {
    stream: PeerStream,
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
    /// A pool that reaches `https://` members over TLS with `connector`.
    pub fn with_tls(connector: TlsConnector) -> Peers {
        Peers {
            idle: Arc::default(),
            tls: Some(connector),
        }
    }

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
        let (authority, tls) = match (base.strip_prefix("http://"), base.strip_prefix("https://")) {
            // With TLS between nodes nothing goes to a member in the clear (an address from
            // before the switch to https:// included).
            (Some(a), _) if self.tls.is_none() => (a, None),
            (_, Some(a)) if self.tls.is_some() => (a, self.tls.as_ref()),
            _ => return Err(PeerError::Address(base.to_string())),
        };
        let authority = Some(authority.trim_end_matches('/'))
            .filter(|a| !a.is_empty() && !a.contains('/'))
            .ok_or_else(|| PeerError::Address(base.to_string()))?;
        let mut out = BytesMut::with_capacity(512);
        encode_head(&mut out, method, target, authority, headers, &payload);
        let no_body = *method == Method::HEAD;
        let mut buf = BytesMut::with_capacity(8 * 1024);
        let (conn, head, sent_all) = match payload {
            Payload::Bytes(body) => {
                // The common case, a small body, goes out in one write with the head.
                let rest = if body.len() <= INLINE_BODY {
                    out.extend_from_slice(&body);
                    None
                } else {
                    Some(body)
                };
                if let Some(mut conn) = self.take(authority) {
                    match transmit(&mut conn.stream, &out, rest.clone(), &mut buf).await {
                        Ok((head, sent_all)) => return answer(conn, head, sent_all, buf, no_body),
                        // The member closed this idle connection (its close was on the way
                        // when the connection was taken). A request that provably never
                        // reached it, or one that is safe to repeat, goes again on a new
                        // connection; any other may have run there and is not sent twice.
                        Err(e)
                            if buf.is_empty()
                                && e.closed_before_answer()
                                && (e.never_reached() || is_safe(method)) =>
                        {
                            tracing::debug!(
                                member = authority,
                                "idle connection closed by the member; asking on a new one"
                            );
                        }
                        Err(e) => return Err(e),
                    }
                }
                let mut conn = self.connect(authority, tls).await?;
                let (head, sent_all) = transmit(&mut conn.stream, &out, rest, &mut buf).await?;
                (conn, head, sent_all)
            }
            // A stream cannot be sent twice: a new connection, never one that may have closed.
            Payload::Stream(body) => {
                let mut conn = self.connect(authority, tls).await?;
                let (head, sent_all) =
                    exchange(&mut conn.stream, &out, Outgoing::Stream(body), &mut buf).await?;
                (conn, head, sent_all)
            }
        };
        answer(conn, head, sent_all, buf, no_body)
    }

    /// An idle connection to `authority` that is still open.
    fn take(&self, authority: &str) -> Option<Conn> {
        let mut idle = self.idle.lock().ok()?;
        let member = idle.get_mut(authority)?;
        while let Some(mut c) = member.idle.pop() {
            if c.since.elapsed() > IDLE_FOR {
                // The rest are older still.
                member.idle.clear();
                break;
            }
            if c.stream.idle_and_open() {
                return Some(Conn {
                    stream: c.stream,
                    authority: member.authority.clone(),
                    pool: self.clone(),
                });
            }
        }
        None
    }

    async fn connect(
        &self,
        authority: &str,
        tls: Option<&TlsConnector>,
    ) -> Result<Conn, PeerError> {
        let connect = async {
            let tcp = TcpStream::connect(authority)
                .await
                .map_err(PeerError::Connect)?;
            tcp.set_nodelay(true).map_err(PeerError::Connect)?;
            let Some(tls) = tls else {
                return Ok(PeerStream::Plain(tcp));
            };
            let host = authority
                .rsplit_once(':')
                .map_or(authority, |(h, _)| h)
                .trim_start_matches('[')
                .trim_end_matches(']');
            let name = rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|_| PeerError::Address(authority.to_string()))?;
            let stream = tls.connect(name, tcp).await.map_err(PeerError::Tls)?;
            Ok(PeerStream::Tls(Box::new(stream)))
        };
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| PeerError::ConnectTimeout(CONNECT_TIMEOUT))??;
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

/// Methods that change nothing on the member (RFC 9110, 9.2.1): sending one twice is harmless.
pub fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The answer whose head is `head`, its body the rest of `buf` and what `conn` brings.
fn answer(
    conn: Conn,
    head: Head,
    sent_all: bool,
    mut buf: BytesMut,
    head_request: bool,
) -> Result<http::Response<Body>, PeerError> {
    let framing = head.framing(head_request)?;
    let mut response = http::Response::new(Body::empty());
    *response.status_mut() = head.status;
    *response.version_mut() = Version::HTTP_11;
    *response.headers_mut() = head.headers;
    // A member that answered before it read the whole request closes the connection.
    let reusable = sent_all && head.keep_alive && !matches!(framing, Framing::UntilClose);
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

/// Sends a held request (`head`, then `rest` of its body unless it went with the head) and
/// reads its answer's head; says whether the whole request went out.
async fn transmit(
    stream: &mut PeerStream,
    head: &[u8],
    rest: Option<Bytes>,
    buf: &mut BytesMut,
) -> Result<(Head, bool), PeerError> {
    match rest {
        None => {
            stream.write_all(head).await.map_err(PeerError::Write)?;
            stream.flush().await.map_err(PeerError::Write)?;
            Ok((read_head(stream, buf).await?, true))
        }
        Some(body) => exchange(stream, head, Outgoing::Held(body), buf).await,
    }
}

/// A body that does not go out in one write with its head.
enum Outgoing {
    Held(Bytes),
    Stream(Body),
}

/// Sends `head` and `body` while watching for the answer: a member may answer before it has
/// read the whole request (a 401, a 413) and close the connection; that answer is the one the
/// client gets, not an error about the write it cut short. Also says whether the whole request
/// went out.
async fn exchange(
    stream: &mut PeerStream,
    head: &[u8],
    body: Outgoing,
    buf: &mut BytesMut,
) -> Result<(Head, bool), PeerError> {
    match stream {
        PeerStream::Plain(tcp) => {
            let (r, w) = tcp.split();
            exchange_on(r, w, head, body, buf).await
        }
        PeerStream::Tls(tls) => {
            let (r, w) = tokio::io::split(tls.as_mut());
            exchange_on(r, w, head, body, buf).await
        }
    }
}

async fn exchange_on(
    mut r: impl AsyncRead + Unpin,
    mut w: impl AsyncWrite + Unpin,
    head: &[u8],
    body: Outgoing,
    buf: &mut BytesMut,
) -> Result<(Head, bool), PeerError> {
    let write = async {
        w.write_all(head).await.map_err(PeerError::Write)?;
        match body {
            Outgoing::Held(b) => w.write_all(&b).await.map_err(PeerError::Write)?,
            Outgoing::Stream(body) => write_chunked(&mut w, body).await?,
        }
        // TLS holds written bytes until flushed; TCP has nothing to flush.
        w.flush().await.map_err(PeerError::Write)
    };
    let read = read_head(&mut r, buf);
    tokio::pin!(write, read);
    tokio::select! {
        biased;
        answer = &mut read => Ok((answer?, false)),
        sent = &mut write => match sent {
            Ok(()) => Ok((read.await?, true)),
            // Cut short: by an answer on its way, or by a member that is gone.
            Err(e) => match tokio::time::timeout(EARLY_ANSWER, read).await {
                Ok(Ok(answer)) => Ok((answer, false)),
                _ => Err(e),
            },
        },
    }
}

async fn write_chunked(w: &mut (impl AsyncWrite + Unpin), mut body: Body) -> Result<(), PeerError> {
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| PeerError::RequestBody(e.to_string()))?;
        if let Ok(data) = frame.into_data()
            && !data.is_empty()
        {
            let size = format!("{:x}\r\n", data.len());
            w.write_all(size.as_bytes())
                .await
                .map_err(PeerError::Write)?;
            w.write_all(&data).await.map_err(PeerError::Write)?;
            w.write_all(b"\r\n").await.map_err(PeerError::Write)?;
        }
    }
    w.write_all(b"0\r\n\r\n").await.map_err(PeerError::Write)
}

/// Reads until a complete final (not 1xx) head is in `buf`, and takes it off.
async fn read_head(
    stream: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
) -> Result<Head, PeerError> {
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

/// Raft's calls go through the same pool (and TLS) as forwarded requests.
impl onwapp_cluster::network::Transport for Peers {
    fn post<'a>(
        &'a self,
        base: &'a str,
        path: &'a str,
        secret: &'a str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> onwapp_cluster::network::TransportFuture<'a> {
        use onwapp_cluster::network::TransportFailure;
        Box::pin(async move {
            let auth = format!("Bearer {secret}");
            let headers: [(&[u8], &[u8]); 2] = [
                (b"authorization", auth.as_bytes()),
                (b"content-type", b"application/json"),
            ];
            let call = async {
                let answer = self
                    .send(
                        base,
                        &Method::POST,
                        path,
                        headers,
                        Payload::Bytes(body.into()),
                    )
                    .await
                    .map_err(|e| {
                        let text = format!("{e}: {}", e.source_text());
                        if e.never_reached() {
                            TransportFailure::Unreachable(text)
                        } else {
                            TransportFailure::Failed(text)
                        }
                    })?;
                let status = answer.status().as_u16();
                let body = http_body_util::Limited::new(answer.into_body(), MAX_ANSWER)
                    .collect()
                    .await
                    .map_err(|e| TransportFailure::Failed(e.to_string()))?
                    .to_bytes();
                Ok((status, body.to_vec()))
            };
            tokio::time::timeout(timeout, call)
                .await
                .map_err(|_| TransportFailure::Failed(format!("timed out after {timeout:?}")))?
        })
    }
}

/// The largest answer to a cluster call read (snapshots of the map are well under it).
const MAX_ANSWER: usize = 64 * 1024 * 1024;

impl PeerError {
    /// The underlying error's text, if any.
    fn source_text(&self) -> String {
        std::error::Error::source(self).map_or_else(String::new, |e| e.to_string())
    }
}

#[cfg(test)]
mod tests;
