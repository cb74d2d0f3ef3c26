//! One delivery attempt: POST the event to the session's webhook URL.

use std::time::Duration;

use bytes::Bytes;
use http::Method;
use url::Url;

use crate::media::web::{self, Exchange};

/// What the receiver answered, or why there was no answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    Answered {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// Timeout, connection refused, reset...: retried.
    Failed(String),
    /// The URL cannot be used at all: a dead letter.
    BadUrl(String),
}

/// The headers of an event's delivery (the same on every attempt, so receivers de-duplicate).
pub fn headers(
    id: &str,
    event: &str,
    timestamp: i64,
    secret: Option<&str>,
    body: &[u8],
) -> Vec<(String, String)> {
    let mut h = vec![
        ("Content-Type".to_string(), "application/json".to_string()),
        (
            "User-Agent".to_string(),
            concat!("onwapp-rs/", env!("CARGO_PKG_VERSION")).to_string(),
        ),
        ("X-Webhook-Id".to_string(), id.to_string()),
        ("X-Webhook-Timestamp".to_string(), timestamp.to_string()),
        ("X-Webhook-Event".to_string(), event.to_string()),
    ];
    if let Some(secret) = secret.filter(|s| !s.is_empty()) {
        h.push((
            "X-Webhook-Signature".to_string(),
            super::sign::signature(secret, body),
        ));
    }
    h
}

/// POSTs `body` to `url`, within `timeout` (resolution, connection and response together).
pub async fn post(
    url: &str,
    headers: &[(String, String)],
    body: Bytes,
    timeout: Duration,
) -> Attempt {
    let url = match Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => u,
        Ok(u) => return Attempt::BadUrl(format!("unsupported scheme {}", u.scheme())),
        Err(e) => return Attempt::BadUrl(format!("invalid URL: {e}")),
    };
    let exchange = async {
        let addrs = web::resolve(&url).await?;
        let mut last = None;
        for addr in addrs {
            let req = Exchange {
                method: Method::POST,
                url: &url,
                headers,
                body: body.clone(),
                max_body: 64 * 1024,
            };
            match web::exchange(addr, &req).await {
                Ok(r) => return Ok(r),
                Err(e @ web::WebError::Connect(..)) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| web::WebError::Url("no address".into())))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Err(_) => Attempt::Failed(format!("timed out after {}s", timeout.as_secs_f64())),
        Ok(Err(web::WebError::Url(e))) => Attempt::BadUrl(e),
        Ok(Err(e)) => Attempt::Failed(e.to_string()),
        Ok(Ok(r)) => Attempt::Answered {
            status: r.status,
            retry_after: super::retry::parse_retry_after(
                r.headers
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok()),
            ),
        },
    }
}
