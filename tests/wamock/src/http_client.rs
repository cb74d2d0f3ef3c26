//! An HTTP client for whatsapp-rust clients that talk to wamock (simulated users get
//! one; tests and onwapp's wamock builds can use it or copy [`route`]). The client
//! builds media URLs as `https://{host}{path}` from the `media_conn` hosts; requests for
//! wamock's media host go to wamock's own plain-HTTP listener instead.

use std::net::SocketAddr;

use wacore::net::{HttpClient, HttpRequest, HttpResponse};

/// The host name wamock's `media_conn` answer names.
pub const MEDIA_HOST: &str = "media.wamock.test";

pub struct RoutingHttpClient {
    client: reqwest::Client,
    server: SocketAddr,
}

impl RoutingHttpClient {
    /// Routes wamock's media host to `server` (wamock's address).
    pub fn new(server: SocketAddr) -> Self {
        Self {
            client: reqwest::Client::new(),
            server,
        }
    }
}

/// `https://media.wamock.test/path` → `http://ADDR/path`; other URLs unchanged.
pub fn route(url: &str, server: SocketAddr) -> String {
    let prefix = format!("https://{MEDIA_HOST}");
    match url.strip_prefix(&prefix) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') || rest.starts_with('?') => {
            format!("http://{server}{rest}")
        }
        _ => url.to_string(),
    }
}

#[async_trait::async_trait]
impl HttpClient for RoutingHttpClient {
    async fn execute(&self, request: HttpRequest) -> anyhow::Result<HttpResponse> {
        let method = reqwest::Method::from_bytes(request.method.as_bytes())?;
        let mut builder = self
            .client
            .request(method, route(&request.url, self.server));
        for (k, v) in &request.headers {
            builder = builder.header(k, v);
        }
        if let Some(body) = request.body {
            builder = builder.body(body);
        }
        let response = builder.send().await?;
        let status_code = response.status().as_u16();
        let body = response.bytes().await?.to_vec();
        Ok(HttpResponse { status_code, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_media_host_is_routed() {
        let addr: SocketAddr = "127.0.0.1:9".parse().expect("addr");
        assert_eq!(
            route("https://media.wamock.test/mms/image/x?auth=1", addr),
            "http://127.0.0.1:9/mms/image/x?auth=1"
        );
        assert_eq!(
            route("https://media.wamock.test.evil/x", addr),
            "https://media.wamock.test.evil/x"
        );
        assert_eq!(
            route("https://example.com/x", addr),
            "https://example.com/x"
        );
    }
}
