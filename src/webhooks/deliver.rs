//! One delivery attempt: POST the event to the session's webhook URL.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::Method;
use url::Url;

use crate::media::{
    fetch::is_local_target,
    web::{self, Exchange},
};

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

/// How long an idle connection is kept for the next delivery to the same receiver.
const IDLE_FOR: Duration = Duration::from_secs(30);
/// Idle connections kept per receiver (origin).
const IDLE_PER_ORIGIN: usize = 32;

/// What a delivery that got no answer records: the same for a refused, reset or filtered port,
/// a TLS or HTTP failure and a timeout, so `webhook/failed` is no port scanner. The detail goes
/// to the node's log (debug).
pub const NO_ANSWER: &str = "no HTTP answer";

/// Why a delivery to a local address was not attempted.
pub const LOCAL_TARGET: &str = "refused: the URL resolves to a loopback, link-local, \
     unspecified or multicast address (WEBHOOK_ALLOW_PRIVATE_URLS=true allows it)";

/// Keep-alive connections to the receivers, by origin (`scheme://host:port`): a busy outbox
/// does not open (and leave in TIME_WAIT) one TCP connection per event.
///
/// Unless `allow_private`, every address a name resolves to is checked before connecting, and
/// only checked addresses are connected to: a name that resolves to a public address at
/// configuration time and to 127.0.0.1 later (DNS rebinding) is refused then. Redirects are not
/// followed (a 3xx is a dead letter).
#[derive(Default)]
pub struct Client {
    idle: Mutex<HashMap<String, Vec<(web::Sender, Instant)>>>,
    allow_private: bool,
}

impl Client {
    pub fn new(allow_private: bool) -> Client {
        Client {
            idle: Mutex::default(),
            allow_private,
        }
    }

    /// POSTs `body` to `url`, within `timeout` (resolution, connection and response together).
    /// A kept connection that turns out closed is replaced by a new one once.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: Bytes,
        timeout: Duration,
    ) -> Attempt {
        let url = match Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => u,
            Ok(u) => return Attempt::BadUrl(format!("unsupported scheme {}", u.scheme())),
            Err(_) => return Attempt::BadUrl("invalid URL".into()),
        };
        let origin = url.origin().ascii_serialization();
        let req = Exchange {
            method: Method::POST,
            url: &url,
            headers,
            body,
            max_body: 64 * 1024,
        };
        let exchange = async {
            if let Some(mut sender) = self.take(&origin)
                && let Ok(r) = web::send(&mut sender, &req).await
            {
                self.keep(&origin, sender);
                return Ok(r);
            }
            let addrs = web::resolve(&url).await?;
            if !self.allow_private && addrs.iter().any(|a| is_local_target(a.ip())) {
                return Err(web::WebError::Url(LOCAL_TARGET.into()));
            }
            let mut last = None;
            for addr in addrs {
                let mut sender = match web::connect(addr, &url).await {
                    Ok(s) => s,
                    Err(e @ web::WebError::Connect(..)) => {
                        last = Some(e);
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let r = web::send(&mut sender, &req).await?;
                self.keep(&origin, sender);
                return Ok(r);
            }
            Err(last.unwrap_or_else(|| web::WebError::Url("no address".into())))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Err(_) => {
                tracing::debug!(%url, ?timeout, "webhook delivery timed out");
                Attempt::Failed(NO_ANSWER.into())
            }
            Ok(Err(web::WebError::Url(e))) => Attempt::BadUrl(e),
            Ok(Err(e)) => {
                tracing::debug!(%url, error = %e, "webhook delivery got no answer");
                Attempt::Failed(NO_ANSWER.into())
            }
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

    /// A kept connection to `origin` that is still open and fresh.
    fn take(&self, origin: &str) -> Option<web::Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(origin)?;
        while let Some((sender, since)) = list.pop() {
            if !sender.is_closed() && since.elapsed() < IDLE_FOR {
                return Some(sender);
            }
        }
        None
    }

    fn keep(&self, origin: &str, sender: web::Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(origin.to_string()).or_default();
        list.retain(|(s, since)| !s.is_closed() && since.elapsed() < IDLE_FOR);
        if list.len() < IDLE_PER_ORIGIN {
            list.push((sender, Instant::now()));
        }
    }
}
