//! whatsapp-rust's HTTP client (media upload and download, version checks) on our own small
//! HTTP/1.1 client with rustls and ring (`media::web`): nothing global to install, and
//! https works in every build.
//!
//! With a test server configured (`WHATSAPP_SERVER_URL`, which only `wamock` builds read from
//! the environment), requests to wamock's media host `https://media.wamock.test/...` go to the
//! test server's own plain-HTTP address instead, as `wamock::http_client::route` does.

use std::time::Duration;

use url::Url;
use whatsapp_rust::wacore::net::{HttpClient, HttpRequest, HttpResponse};

use crate::media::web::{self, Exchange};

/// One exchange with a media host (upload or download of up to the size limit) may take this long.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(300);

/// The media host wamock's `media_conn` names (a reserved `.test` name: never real).
const WAMOCK_MEDIA_HOST: &str = "media.wamock.test";

pub struct EngineHttp {
    /// `host:port` of a test server that serves wamock's media host over plain HTTP.
    media_route: Option<String>,
    max_body: u64,
}

impl EngineHttp {
    /// `server_url`: the test server's `ws://HOST:PORT/...`, if any. `max_body`: the largest
    /// response accepted (downloads are ciphertext, slightly larger than the file).
    pub fn new(server_url: Option<&str>, max_body: u64) -> Self {
        let media_route = server_url.and_then(|u| Url::parse(u).ok()).and_then(|u| {
            let host = u.host_str()?.to_string();
            let port = u.port_or_known_default()?;
            Some(format!("{host}:{port}"))
        });
        EngineHttp {
            media_route,
            max_body,
        }
    }

    /// `https://media.wamock.test/path` → `http://HOST:PORT/path` when routing; else unchanged.
    fn route(&self, url: &str) -> String {
        let Some(addr) = &self.media_route else {
            return url.to_string();
        };
        let prefix = format!("https://{WAMOCK_MEDIA_HOST}");
        match url.strip_prefix(&prefix) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') || rest.starts_with('?') => {
                format!("http://{addr}{rest}")
            }
            _ => url.to_string(),
        }
    }
}

#[async_trait::async_trait]
impl HttpClient for EngineHttp {
    async fn execute(&self, request: HttpRequest) -> anyhow::Result<HttpResponse> {
        let url = Url::parse(&self.route(&request.url))?;
        let method = http::Method::from_bytes(request.method.as_bytes())?;
        let headers: Vec<(String, String)> = request.headers.into_iter().collect();
        let exchange = Exchange {
            method,
            url: &url,
            headers: &headers,
            body: request.body.unwrap_or_default(),
            max_body: self.max_body,
        };
        let addrs = web::resolve(&url).await?;
        let mut last = None;
        for addr in addrs {
            let outcome = tokio::time::timeout(EXCHANGE_TIMEOUT, web::exchange(addr, &exchange))
                .await
                .map_err(|_| anyhow::anyhow!("{url}: no answer within {EXCHANGE_TIMEOUT:?}"))?;
            match outcome {
                Ok(r) => {
                    return Ok(HttpResponse {
                        status_code: r.status,
                        body: r.body,
                    });
                }
                // Another address of the same host may answer; other failures are final.
                Err(e @ web::WebError::Connect(..)) => last = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last.map_or_else(|| anyhow::anyhow!("{url}: no address"), Into::into))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_wamock_media_host_is_routed_and_only_with_a_test_server() {
        let routed = EngineHttp::new(Some("ws://127.0.0.1:7780/ws/chat"), 1);
        assert_eq!(
            routed.route("https://media.wamock.test/mms/image/x?auth=1"),
            "http://127.0.0.1:7780/mms/image/x?auth=1"
        );
        assert_eq!(
            routed.route("https://media.wamock.test.evil/x"),
            "https://media.wamock.test.evil/x"
        );
        assert_eq!(
            routed.route("https://mmg.whatsapp.net/v/t62"),
            "https://mmg.whatsapp.net/v/t62"
        );
        let real = EngineHttp::new(None, 1);
        assert_eq!(
            real.route("https://media.wamock.test/x"),
            "https://media.wamock.test/x"
        );
    }
}
