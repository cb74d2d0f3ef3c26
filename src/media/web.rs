//! One HTTP/1.1 exchange over TCP or TLS, to an address the caller resolved (and, for URLs
//! users give us, checked). Used for WhatsApp's media hosts (through the engine's
//! `HttpClient`) and for media URLs in send requests.
//!
//! Why not reqwest: a TLS feature on the root's reqwest is unified into every workspace
//! member's reqwest, whose `Client::new()` then panics without a process-wide rustls
//! provider. Here the provider (ring) is chosen explicitly, so nothing global is needed.

use std::{
    net::SocketAddr,
    sync::{Arc, OnceLock},
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
};
use tokio_rustls::{
    TlsConnector,
    rustls::{self, pki_types::ServerName},
};
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("invalid URL: {0}")]
    Url(String),
    #[error("cannot resolve {0}: {1}")]
    Resolve(String, String),
    #[error("cannot connect to {0}: {1}")]
    Connect(SocketAddr, String),
    #[error("TLS handshake with {0} failed: {1}")]
    Tls(String, String),
    #[error("HTTP exchange failed: {0}")]
    Http(String),
    /// The response body is larger than the caller allows.
    #[error("file size exceeds the {} limit", human_size(*.0))]
    TooLarge(u64),
}

/// `100 MiB`, `512 KiB` or `1234 bytes`.
pub fn human_size(n: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * 1024;
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= KIB && n.is_multiple_of(KIB) {
        format!("{} KiB", n / KIB)
    } else {
        format!("{n} bytes")
    }
}

/// How long a TCP connect may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What to send.
pub struct Exchange<'a> {
    pub method: Method,
    pub url: &'a Url,
    pub headers: &'a [(String, String)],
    pub body: Bytes,
    /// Larger response bodies fail with [`WebError::TooLarge`].
    pub max_body: u64,
}

/// What came back: any status, the caller decides what it means.
#[derive(Debug)]
pub struct WebResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// rustls with ring and the Mozilla roots (webpki-roots), built once.
fn tls() -> Result<TlsConnector, WebError> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    });
    match config {
        Ok(c) => Ok(TlsConnector::from(c.clone())),
        Err(e) => Err(WebError::Tls("-".into(), e.clone())),
    }
}

/// Every address the URL's host resolves to (the URL's port, or the scheme's default).
pub async fn resolve(url: &Url) -> Result<Vec<SocketAddr>, WebError> {
    let port = url
        .port_or_known_default()
        .ok_or_else(|| WebError::Url(format!("{url} has no port")))?;
    match url.host() {
        Some(url::Host::Ipv4(ip)) => Ok(vec![SocketAddr::new(ip.into(), port)]),
        Some(url::Host::Ipv6(ip)) => Ok(vec![SocketAddr::new(ip.into(), port)]),
        Some(url::Host::Domain(d)) => {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((d, port))
                .await
                .map_err(|e| WebError::Resolve(d.to_string(), e.to_string()))?
                .collect();
            if addrs.is_empty() {
                return Err(WebError::Resolve(d.to_string(), "no addresses".into()));
            }
            Ok(addrs)
        }
        None => Err(WebError::Url(format!("{url} has no host"))),
    }
}

/// Sends `req` to `addr` (plain for `http`, TLS for `https`, the certificate checked against
/// the URL's host and the Mozilla roots) and reads the whole response.
pub async fn exchange(addr: SocketAddr, req: &Exchange<'_>) -> Result<WebResponse, WebError> {
    exchange_with(&tls()?, addr, req).await
}

/// [`exchange`] with a TLS connector of the caller's (other roots, e.g. in tests).
pub async fn exchange_with(
    tls: &TlsConnector,
    addr: SocketAddr,
    req: &Exchange<'_>,
) -> Result<WebResponse, WebError> {
    let mut sender = connect_with(tls, addr, req.url).await?;
    send(&mut sender, req).await
}

/// An HTTP/1.1 connection that can carry several requests, one after another (keep-alive).
pub type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// Opens a connection to `addr` for `url`'s scheme and host (TLS checked as in [`exchange`]).
pub async fn connect(addr: SocketAddr, url: &Url) -> Result<Sender, WebError> {
    connect_with(&tls()?, addr, url).await
}

async fn connect_with(tls: &TlsConnector, addr: SocketAddr, url: &Url) -> Result<Sender, WebError> {
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| WebError::Connect(addr, "timed out".into()))?
        .map_err(|e| WebError::Connect(addr, e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    match url.scheme() {
        "http" => handshake(tcp).await,
        "https" => {
            let host = url
                .host_str()
                .ok_or_else(|| WebError::Url("no host".into()))?;
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let name = ServerName::try_from(bare.to_string())
                .map_err(|e| WebError::Url(format!("{host}: {e}")))?;
            let stream = tls
                .connect(name, tcp)
                .await
                .map_err(|e| WebError::Tls(host.to_string(), e.to_string()))?;
            handshake(stream).await
        }
        other => Err(WebError::Url(format!("unsupported scheme {other}"))),
    }
}

async fn handshake<S>(io: S) -> Result<Sender, WebError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| WebError::Http(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "HTTP connection ended");
        }
    });
    Ok(sender)
}

/// Sends `req` on an open connection and reads the whole response; the connection can be
/// used again afterwards when the server keeps it open.
pub async fn send(sender: &mut Sender, req: &Exchange<'_>) -> Result<WebResponse, WebError> {
    let http = |e: hyper::Error| WebError::Http(e.to_string());
    sender.ready().await.map_err(http)?;
    let url = req.url;
    let host = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        (None, _) => return Err(WebError::Url("no host".into())),
    };
    let target = &url[url::Position::BeforePath..url::Position::AfterQuery];
    let mut builder = Request::builder()
        .method(req.method.clone())
        .uri(if target.is_empty() { "/" } else { target })
        .header(header::HOST, host);
    for (k, v) in req.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let request = builder
        .body(Full::new(req.body.clone()))
        .map_err(|e| WebError::Http(e.to_string()))?;
    let response = sender.send_request(request).await.map_err(http)?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > req.max_body) {
        return Err(WebError::TooLarge(req.max_body));
    }
    let mut body = response.into_body();
    // Pre-size from Content-Length, but never trust it with more than 8 MiB up front.
    let mut out = Vec::with_capacity(declared.unwrap_or(0).min(8 << 20) as usize);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(http)?;
        if let Ok(data) = frame.into_data() {
            if (out.len() + data.len()) as u64 > req.max_body {
                return Err(WebError::TooLarge(req.max_body));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(WebResponse {
        status,
        headers,
        body: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(100 * 1024 * 1024), "100 MiB");
        assert_eq!(human_size(2048), "2 KiB");
        assert_eq!(human_size(1000), "1000 bytes");
    }

    /// A TLS server for `media.test` with a certificate made by the `openssl` CLI, answering one
    /// request with the Host header and SNI it saw; `None` without openssl.
    async fn tls_server() -> Option<(SocketAddr, TlsConnector)> {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = tempfile::tempdir().ok()?;
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        let made = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args(["-nodes", "-days", "1", "-subj", "/CN=media.test"])
            .args(["-addext", "subjectAltName=DNS:media.test"])
            .args(["-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .ok()?;
        if !made.status.success() {
            return None;
        }
        let certs = vec![CertificateDer::from_pem_file(&cert).ok()?];
        let key = PrivateKeyDer::from_pem_file(&key).ok()?;
        let ring = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(ring.clone())
            .with_safe_default_protocol_versions()
            .ok()?
            .with_no_client_auth()
            .with_single_cert(certs.clone(), key)
            .ok()?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(certs[0].clone()).ok()?;
        let client = rustls::ClientConfig::builder_with_provider(ring)
            .with_safe_default_protocol_versions()
            .ok()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.ok()?;
        let addr = listener.local_addr().ok()?;
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let sni = tls.get_ref().1.server_name().unwrap_or("").to_string();
                    let mut buf = vec![0u8; 4096];
                    let n = tls.read(&mut buf).await.unwrap_or(0);
                    let request = String::from_utf8_lossy(&buf[..n]).to_string();
                    let host = request
                        .lines()
                        .find_map(|l| {
                            l.strip_prefix("host: ")
                                .or_else(|| l.strip_prefix("Host: "))
                        })
                        .unwrap_or("")
                        .to_string();
                    let body = format!("sni={sni} host={host}");
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tls.write_all(answer.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        Some((addr, TlsConnector::from(Arc::new(client))))
    }

    #[tokio::test]
    async fn https_with_sni_and_certificate_checked_against_the_url_host() {
        let Some((addr, connector)) = tls_server().await else {
            eprintln!("skipping: no openssl to make a certificate");
            return;
        };
        let url = Url::parse(&format!("https://media.test:{}/v/file?auth=x", addr.port())).unwrap();
        let req = Exchange {
            method: Method::GET,
            url: &url,
            headers: &[],
            body: Bytes::new(),
            max_body: 1024,
        };
        let res = exchange_with(&connector, addr, &req)
            .await
            .expect("https exchange");
        assert_eq!(res.status, 200);
        let body = String::from_utf8(res.body).unwrap();
        assert_eq!(
            body,
            format!("sni=media.test host=media.test:{}", addr.port())
        );
        // The same server under another name: the certificate does not match.
        let wrong = Url::parse(&format!("https://other.test:{}/", addr.port())).unwrap();
        let req = Exchange { url: &wrong, ..req };
        assert!(matches!(
            exchange_with(&connector, addr, &req).await,
            Err(WebError::Tls(..))
        ));
    }

    #[test]
    fn the_tls_config_builds_without_a_global_provider() {
        // No `install_default` anywhere in this test: the provider is explicit.
        assert!(tls().is_ok());
    }
}
