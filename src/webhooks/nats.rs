//! Events to NATS JetStream (`NATS_ENABLED=true`), from the same durable outbox as webhooks.
//!
//! The delivery worker publishes each event before it posts the webhook, in the session's
//! order, to `<NATS_STREAM_PREFIX>.<session>.<event>` (the stream is named after the prefix and
//! created if missing, subjects `<prefix>.>`). The message id (`Nats-Msg-Id`) is the event's id
//! (the webhook's `X-Webhook-Id`), so JetStream drops a second copy of an event published again
//! after a crash, a retry or a failover within its duplicate window (`NATS_DUPLICATE_WINDOW`,
//! 2 minutes by default).
//!
//! An event counts as published once JetStream acknowledged it (`NATS_ACK_WAIT`). Until then
//! it stays in the outbox and the session's later events wait behind it, webhook included:
//! a NATS outage delays events, never drops them (OnWapp dropped an event after
//! `NATS_MAX_RETRIES`; here that count only decides when the outage is logged as an error).

use std::{
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use async_nats::jetstream::{self, message::PublishMessage, stream};
use bytes::Bytes;
use tokio::sync::OnceCell;

/// The `NATS_*` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct NatsSettings {
    /// `NATS_URL`.
    pub url: String,
    /// `NATS_STREAM_PREFIX`: the stream's name and the first token of every subject.
    pub stream_prefix: String,
    /// `NATS_MAX_RETRIES`: failed publishes in a row before the outage is logged as an error.
    pub max_retries: u32,
    /// `NATS_RETRY_DELAY`: how long a session's events wait after a failed publish.
    pub retry_delay: Duration,
    /// `NATS_ACK_WAIT`: how long a publish waits for JetStream's acknowledgement.
    pub ack_wait: Duration,
    /// `NATS_DUPLICATE_WINDOW`: the stream's deduplication window (used when creating it).
    pub duplicate_window: Duration,
}

impl Default for NatsSettings {
    fn default() -> Self {
        NatsSettings {
            url: "nats://localhost:4222".into(),
            stream_prefix: "ONWAPP".into(),
            max_retries: 5,
            retry_delay: Duration::from_secs(5),
            ack_wait: Duration::from_secs(30),
            duplicate_window: Duration::from_secs(120),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("NATS connection to {0} failed: {1}")]
    Connect(String, String),
    #[error("NATS stream {0} unavailable: {1}")]
    Stream(String, String),
    #[error("NATS publish to {0} failed: {1}")]
    Publish(String, String),
    #[error("NATS did not acknowledge {0} within {1:?}")]
    NoAck(String, Duration),
}

/// Publishes outbox events to JetStream.
pub struct Publisher {
    settings: NatsSettings,
    client: OnceCell<async_nats::Client>,
    /// The stream exists (checked or created once per process).
    stream: OnceCell<jetstream::Context>,
    failures: AtomicU32,
}

impl Publisher {
    pub fn new(settings: NatsSettings) -> Self {
        Publisher {
            settings,
            client: OnceCell::new(),
            stream: OnceCell::new(),
            failures: AtomicU32::new(0),
        }
    }

    pub fn settings(&self) -> &NatsSettings {
        &self.settings
    }

    /// The subject of an event: `<prefix>.<session>.<event>`. Characters NATS gives a meaning
    /// (space, `*`, `>`, `.`) are replaced in the session token; an event name's dots stay
    /// (`message.received` is two tokens, so `ONWAPP.*.message.>` selects all message events).
    pub fn subject(&self, session: &str, event: &str) -> String {
        let clean = |s: &str, keep_dots: bool| -> String {
            s.chars()
                .map(|c| match c {
                    '.' if keep_dots => '.',
                    ' ' | '\t' | '\r' | '\n' | '*' | '>' | '.' => '_',
                    c => c,
                })
                .collect()
        };
        let session = if session.is_empty() { "_" } else { session };
        format!(
            "{}.{}.{}",
            self.settings.stream_prefix,
            clean(session, false),
            clean(event, true)
        )
    }

    async fn client(&self) -> Result<&async_nats::Client, NatsError> {
        self.client
            .get_or_try_init(|| async {
                // Reconnects forever in the background once connected; the first connect
                // is retried by the next publish.
                async_nats::ConnectOptions::new()
                    .name("onwapp")
                    .connection_timeout(self.settings.ack_wait.min(Duration::from_secs(10)))
                    .max_reconnects(None)
                    .connect(self.settings.url.as_str())
                    .await
                    .map_err(|e| NatsError::Connect(self.settings.url.clone(), e.to_string()))
            })
            .await
    }

    async fn context(&self) -> Result<&jetstream::Context, NatsError> {
        let client = self.client().await?.clone();
        self.stream
            .get_or_try_init(|| async move {
                let mut js = jetstream::new(client);
                js.set_timeout(self.settings.ack_wait);
                let prefix = &self.settings.stream_prefix;
                js.get_or_create_stream(stream::Config {
                    name: prefix.clone(),
                    subjects: vec![format!("{prefix}.>")],
                    duplicate_window: self.settings.duplicate_window,
                    ..Default::default()
                })
                .await
                .map_err(|e| NatsError::Stream(prefix.clone(), e.to_string()))?;
                tracing::info!(stream = %prefix, url = %self.settings.url, "NATS JetStream stream ready");
                Ok(js)
            })
            .await
    }

    /// Publishes one event and waits for JetStream's acknowledgement.
    pub async fn publish(
        &self,
        subject: String,
        id: &str,
        payload: Bytes,
    ) -> Result<(), NatsError> {
        let outcome = tokio::time::timeout(self.settings.ack_wait, async {
            let js = self.context().await?;
            let ack = js
                .send_publish(
                    subject.clone(),
                    PublishMessage::build().message_id(id).payload(payload),
                )
                .await
                .map_err(|e| NatsError::Publish(subject.clone(), e.to_string()))?;
            ack.await
                .map_err(|e| NatsError::Publish(subject.clone(), e.to_string()))
        })
        .await
        .unwrap_or_else(|_| Err(NatsError::NoAck(subject.clone(), self.settings.ack_wait)));
        match &outcome {
            Ok(ack) => {
                if self.failures.swap(0, Ordering::Relaxed) > 0 {
                    tracing::info!("NATS publishing resumed");
                }
                tracing::trace!(%subject, seq = ack.sequence, duplicate = ack.duplicate, "published");
            }
            Err(e) => {
                let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                if n == self.settings.max_retries {
                    tracing::error!(error = %e, failures = n, "NATS unavailable: events wait in the outbox until it is back");
                } else {
                    tracing::warn!(error = %e, failures = n, "NATS publish failed; the event is kept and tried again");
                }
            }
        }
        outcome.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_keep_the_event_name_and_clean_the_session() {
        let p = Publisher::new(NatsSettings::default());
        assert_eq!(
            p.subject("shop", "message.received"),
            "ONWAPP.shop.message.received"
        );
        assert_eq!(p.subject("a.b c*>", "presence"), "ONWAPP.a_b_c__.presence");
        assert_eq!(p.subject("", "x"), "ONWAPP._.x");
    }
}
