//! A real whatsapp-rust client driven against wamock.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};
use wacore::store::InMemoryBackend;
use whatsapp_rust::InboundDurabilityHook;
use whatsapp_rust::async_channel::Receiver;
use whatsapp_rust::bot::{Bot, BotHandle};
use whatsapp_rust::pair_code::PairCodeOptions;
use whatsapp_rust::transport::TokioWebSocketTransportFactory;
use whatsapp_rust::types::events::{ChannelEventHandler, Event};

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// `ws://ADDR/ws/chat` → ADDR.
pub fn server_addr(ws_url: &str) -> anyhow::Result<std::net::SocketAddr> {
    let addr = ws_url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap_or_default();
    Ok(addr.parse()?)
}

/// A boxed hook is a hook.
struct Boxed(Box<dyn InboundDurabilityHook>);

#[async_trait::async_trait]
impl InboundDurabilityHook for Boxed {
    async fn on_messages(
        &self,
        client: Arc<whatsapp_rust::Client>,
        batch: &[whatsapp_rust::types::events::InboundMessage],
    ) -> anyhow::Result<()> {
        self.0.on_messages(client, batch).await
    }
}

/// One whatsapp-rust client with its event stream.
pub struct TestClient {
    pub handle: BotHandle,
    pub events: Receiver<Arc<Event>>,
}

impl TestClient {
    /// Builds a client over `backend` (an existing store logs in again) and starts it.
    pub async fn start(ws_url: &str, backend: Arc<InMemoryBackend>) -> anyhow::Result<Self> {
        Self::start_with(ws_url, backend, None).await
    }

    /// Like `start`, and an unpaired client asks to pair by code with `phone`.
    pub async fn start_with(
        ws_url: &str,
        backend: Arc<InMemoryBackend>,
        pair_code_phone: Option<&str>,
    ) -> anyhow::Result<Self> {
        Self::build(ws_url, backend, pair_code_phone, None).await
    }

    /// Like `start`, with an inbound durability hook: a message is acknowledged only once the
    /// hook stored it.
    pub async fn start_hooked(
        ws_url: &str,
        backend: Arc<InMemoryBackend>,
        hook: impl InboundDurabilityHook + 'static,
    ) -> anyhow::Result<Self> {
        Self::build(ws_url, backend, None, Some(Box::new(hook))).await
    }

    async fn build(
        ws_url: &str,
        backend: Arc<InMemoryBackend>,
        pair_code_phone: Option<&str>,
        hook: Option<Box<dyn InboundDurabilityHook>>,
    ) -> anyhow::Result<Self> {
        let mut builder = Bot::builder()
            .with_backend_arc(backend)
            .with_transport_factory(TokioWebSocketTransportFactory::new().with_url(ws_url))
            // Routes wamock's media host (from `media_conn`) to wamock's HTTP side.
            .with_http_client(wamock::RoutingHttpClient::new(server_addr(ws_url)?))
            .with_runtime(whatsapp_rust::TokioRuntime)
            .with_version((2, 3000, 1))
            .with_push_name("wamock test");
        if let Some(phone) = pair_code_phone {
            builder = builder.with_pair_code(PairCodeOptions {
                phone_number: phone.to_string(),
                ..Default::default()
            });
        }
        if let Some(hook) = hook {
            builder = builder.with_inbound_durability_hook(Boxed(hook));
        }
        let bot = builder.build().await?;
        let (handler, events) = ChannelEventHandler::new();
        bot.client().subscribe_handler(handler).detach();
        Ok(Self {
            handle: bot.spawn(),
            events,
        })
    }

    /// Waits for the first event `pick` maps to `Some`, failing on `PairError`.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut pick: impl FnMut(&Event) -> Option<T>,
    ) -> anyhow::Result<T> {
        let wait = async {
            loop {
                let event = self.events.recv().await.context("event stream closed")?;
                if let Event::PairError(e) = &*event {
                    bail!("pair error: {e:?}");
                }
                if let Some(found) = pick(&event) {
                    return Ok(found);
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| anyhow!("no {what} within {timeout:?}"))?
    }

    pub async fn shutdown(self) {
        if tokio::time::timeout(Duration::from_secs(10), self.handle.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("client did not shut down within 10 s");
        }
    }
}

/// `POST /admin/scan-qr`.
pub async fn scan_qr(http_url: &str, qr: &str, phone: &str) -> anyhow::Result<String> {
    let response = reqwest::Client::new()
        .post(format!("{http_url}/admin/scan-qr"))
        .json(&json!({ "qr": qr, "phone": phone, "pushName": "Phone Owner" }))
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    if !status.is_success() {
        bail!("scan-qr answered {status}: {body}");
    }
    body["jid"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("scan-qr answer has no jid: {body}"))
}

/// `GET /admin/devices`.
pub async fn devices(http_url: &str) -> anyhow::Result<Value> {
    Ok(reqwest::get(format!("{http_url}/admin/devices"))
        .await?
        .error_for_status()?
        .json()
        .await?)
}

/// Polls `/admin/devices` until `check` accepts it.
pub async fn wait_devices(
    http_url: &str,
    timeout: Duration,
    check: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let now = devices(http_url).await?;
        if check(&now) {
            return Ok(now);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("devices never reached the expected state; last: {now}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Shows a QR, has it scanned as `phone`, and waits for `PairSuccess` then `Connected`.
pub async fn pair_and_connect(
    server: &wamock::Server,
    client: &TestClient,
    phone: &str,
) -> anyhow::Result<String> {
    let qr = client
        .wait_for("QR code", Duration::from_secs(10), |e| match e {
            Event::PairingQrCode(q) => Some(q.code.clone()),
            _ => None,
        })
        .await?;
    let jid = scan_qr(&server.http_url(), &qr, phone).await?;
    client
        .wait_for("PairSuccess", Duration::from_secs(10), |e| {
            matches!(e, Event::PairSuccess(_)).then_some(())
        })
        .await?;
    // The phone's app-state key share arrives with the login after pairing; without it
    // the client would wait its 10 s grace before syncing and connecting.
    client
        .wait_for("Connected", Duration::from_secs(5), |e| {
            matches!(e, Event::Connected(_)).then_some(())
        })
        .await?;
    Ok(jid)
}

/// `POST` JSON to the admin API; fails on a non-2xx answer.
pub async fn post_json(url: String, body: Value) -> anyhow::Result<Value> {
    let response = reqwest::Client::new().post(&url).json(&body).send().await?;
    let status = response.status();
    let body: Value = response.json().await?;
    if !status.is_success() {
        bail!("{url} answered {status}: {body}");
    }
    Ok(body)
}

/// `GET` JSON from the admin API; fails on a non-2xx answer.
pub async fn get_json(url: String) -> anyhow::Result<Value> {
    let response = reqwest::get(&url).await?;
    let status = response.status();
    let body: Value = response.json().await?;
    if !status.is_success() {
        bail!("{url} answered {status}: {body}");
    }
    Ok(body)
}

/// `POST /admin/users`: a simulated user; returns its JID.
pub async fn create_user(http_url: &str, phone: &str, push_name: &str) -> anyhow::Result<String> {
    let body = post_json(
        format!("{http_url}/admin/users"),
        json!({ "phone": phone, "pushName": push_name }),
    )
    .await?;
    body["jid"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("users answer has no jid: {body}"))
}

/// `POST /admin/users/{phone}/send`: returns the message id.
pub async fn user_send(
    http_url: &str,
    phone: &str,
    to: &str,
    text: &str,
) -> anyhow::Result<String> {
    let body = post_json(
        format!("{http_url}/admin/users/{phone}/send"),
        json!({ "to": to, "text": text }),
    )
    .await?;
    body["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("send answer has no id: {body}"))
}

/// Polls `GET /admin/users/{phone}/{list}` until an entry satisfies `pick`.
pub async fn wait_user_list(
    http_url: &str,
    phone: &str,
    list: &str,
    timeout: Duration,
    pick: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let now = get_json(format!("{http_url}/admin/users/{phone}/{list}")).await?;
        if let Some(found) = now.as_array().and_then(|a| a.iter().find(|e| pick(e))) {
            return Ok(found.clone());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("no matching {list} entry for {phone} within {timeout:?}; last: {now}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
