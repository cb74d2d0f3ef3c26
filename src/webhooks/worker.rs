//! The delivery workers: claim a session, deliver its due events in order, record each outcome,
//! stop at the first event that must wait (its successors wait behind it), release.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use bytes::Bytes;
use chrono::Utc;
use serde_json::Value;
use tokio::{sync::Notify, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{
    WebhookSettings,
    deliver::{self, Attempt},
    retry::{self, Verdict},
};
use crate::observability::Metrics;
use crate::store::{
    Store, StoreResult, WebhookRecord,
    outbox::{OutboxClaim, Outcome, QueuedEvent},
};

/// The longest a delivered event's outcome waits to be written with others.
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

/// How many sessions one worker claims and delivers side by side in one pass: one claim and
/// one outcome transaction serve them all.
pub const SESSIONS_PER_PASS: usize = 8;

/// Outcomes not yet written, shared by the sessions of a pass. They are written in groups (one
/// transaction each), at the latest `FLUSH_EVERY` after the first of a group: after a crash, at
/// most that window of delivered events is delivered again, with the same `X-Webhook-Id`.
#[derive(Default)]
struct Unrecorded {
    inner: std::sync::Mutex<Group>,
}

/// The outcomes waiting to be written, and when the first of them was added.
#[derive(Default)]
struct Group {
    /// (event id, its session, outcome).
    outcomes: Vec<(uuid::Uuid, uuid::Uuid, Outcome)>,
    since: Option<Instant>,
}

impl Unrecorded {
    fn push(&self, id: uuid::Uuid, session_id: uuid::Uuid, outcome: Outcome) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.outcomes.is_empty() {
            g.since = Some(Instant::now());
        }
        g.outcomes.push((id, session_id, outcome));
    }

    /// The group to write now: everything, or (`only_due`) nothing until the oldest has waited
    /// `FLUSH_EVERY`.
    fn take(&self, only_due: bool) -> Vec<(uuid::Uuid, uuid::Uuid, Outcome)> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if only_due && g.since.is_none_or(|t| t.elapsed() < FLUSH_EVERY) {
            return Vec::new();
        }
        g.since = None;
        std::mem::take(&mut g.outcomes)
    }
}

/// Drives delivery; tests call [`Dispatcher::run_once`] step by step, the app [`Dispatcher::spawn`]s it.
pub struct Dispatcher {
    store: Arc<dyn Store>,
    settings: WebhookSettings,
    wake: Arc<Notify>,
    client: deliver::Client,
    metrics: Option<Arc<Metrics>>,
    /// Every event also goes to NATS JetStream, before its webhook (`NATS_ENABLED`).
    nats: Option<Arc<super::nats::Publisher>>,
}

/// What one pass did for one session.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub delivered: usize,
    pub retried: usize,
    pub dead: usize,
    pub skipped: usize,
    /// Not attempted: NATS, where they go first, is unavailable.
    pub held: usize,
}

impl Dispatcher {
    pub fn new(store: Arc<dyn Store>, settings: WebhookSettings) -> Arc<Self> {
        Self::with_metrics(store, settings, None)
    }

    /// [`Dispatcher::new`] that also feeds the `webhook_*` metrics.
    pub fn with_metrics(
        store: Arc<dyn Store>,
        settings: WebhookSettings,
        metrics: Option<Arc<Metrics>>,
    ) -> Arc<Self> {
        Self::with_nats(store, settings, metrics, None)
    }

    /// [`Dispatcher::with_metrics`] that also publishes every event to NATS JetStream.
    pub fn with_nats(
        store: Arc<dyn Store>,
        settings: WebhookSettings,
        metrics: Option<Arc<Metrics>>,
        nats: Option<super::nats::NatsSettings>,
    ) -> Arc<Self> {
        Arc::new(Dispatcher {
            wake: store.outbox_signal(),
            store,
            client: deliver::Client::new(settings.allow_private_urls),
            settings,
            metrics,
            nats: nats.map(|n| Arc::new(super::nats::Publisher::new(n))),
        })
    }

    /// Wakes an idle worker. The store does this itself whenever it commits outbox rows
    /// (`OutboxStore::outbox_signal`), so idle workers do not wait for their next poll.
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    /// Claims up to [`SESSIONS_PER_PASS`] sessions with due events and delivers them (each
    /// session's in order, the sessions side by side); `None` when no session is due.
    pub async fn run_once(&self) -> StoreResult<Option<Pass>> {
        let Some(claim) = self
            .store
            .claim_sessions(Utc::now(), SESSIONS_PER_PASS)
            .await?
        else {
            return Ok(None);
        };
        let result = self.deliver_claimed(&*claim).await;
        claim.release().await?;
        result.map(Some)
    }

    async fn deliver_claimed(&self, claim: &dyn OutboxClaim) -> StoreResult<Pass> {
        // Read every queue first (two statements for the whole claim): no pooled connection
        // is held while posting.
        let ids = claim.session_ids();
        let mut webhooks = self.store.get_webhooks(ids).await?;
        let mut events = self
            .store
            .queued_events_of(ids, self.settings.batch)
            .await?
            .into_iter()
            .peekable();
        let mut queues = Vec::with_capacity(ids.len());
        for id in ids {
            let webhook = webhooks
                .iter()
                .position(|w| w.session_id == *id)
                .map(|i| webhooks.swap_remove(i));
            let mut queue = Vec::new();
            while let Some(ev) = events.next_if(|ev| ev.session_id == *id) {
                queue.push(ev);
            }
            queues.push((*id, webhook, queue));
        }
        let unrecorded = Unrecorded::default();
        let now = Utc::now();
        let running = AtomicUsize::new(queues.len());
        let all_done = CancellationToken::new();
        let passes = futures_util::future::join_all(queues.iter().map(|(id, webhook, events)| {
            let (unrecorded, running, all_done) = (&unrecorded, &running, &all_done);
            async move {
                let pass = self
                    .drain(webhook.as_ref(), events, now, unrecorded)
                    .await?;
                if running.fetch_sub(1, Ordering::SeqCst) == 1 {
                    all_done.cancel();
                    return Ok(pass);
                }
                // The sessions of a pass usually finish together and go with the claim; one
                // whose pass is held up by another's slow receiver is let go on its own,
                // once its outcomes are written.
                tokio::select! {
                    _ = all_done.cancelled() => {}
                    _ = tokio::time::sleep(FLUSH_EVERY) => {
                        self.store.record_outcomes(&unrecorded.take(false)).await?;
                        claim.release_session(*id).await?;
                    }
                }
                Ok::<Pass, crate::store::StoreError>(pass)
            }
        }))
        .await;
        let last = unrecorded.take(false);
        self.store.record_outcomes(&last).await?;
        let mut total = Pass::default();
        for pass in passes {
            let pass = pass?;
            total.delivered += pass.delivered;
            total.retried += pass.retried;
            total.dead += pass.dead;
            total.skipped += pass.skipped;
            total.held += pass.held;
        }
        Ok(total)
    }

    /// Delivers one session's due events in order, stopping at the first that must wait.
    async fn drain(
        &self,
        webhook: Option<&WebhookRecord>,
        events: &[QueuedEvent],
        now: chrono::DateTime<Utc>,
        unrecorded: &Unrecorded,
    ) -> StoreResult<Pass> {
        let mut pass = Pass::default();
        for ev in events {
            if ev.next_attempt_at > now {
                break;
            }
            // NATS first (when on); a webhook attempt only once it has the event.
            let (published, outcome) = match self.publish(ev).await {
                Ok(published) => (published, self.attempt(webhook, ev).await),
                Err(held) => (false, held),
            };
            self.observe(ev, &outcome);
            // Published now and not finished: not published again when tried again.
            if published && matches!(outcome, Outcome::Retry { .. } | Outcome::Dead { .. }) {
                self.store.mark_published(&[ev.id]).await?;
            }
            let stop = matches!(outcome, Outcome::Retry { .. } | Outcome::Held { .. });
            match outcome {
                Outcome::Delivered { .. } => pass.delivered += 1,
                Outcome::Skipped => pass.skipped += 1,
                Outcome::Dead { .. } => pass.dead += 1,
                Outcome::Retry { .. } => pass.retried += 1,
                Outcome::Held { .. } => pass.held += 1,
            }
            unrecorded.push(ev.id, ev.session_id, outcome);
            if stop {
                break;
            }
            let due = unrecorded.take(true);
            self.store.record_outcomes(&due).await?;
        }
        Ok(pass)
    }

    /// Publishes the event to NATS first when NATS is on and it is not published yet:
    /// `Ok(true)` published now, `Ok(false)` nothing to do, `Err` the outcome that holds it
    /// (and the session's later events) until NATS is back.
    async fn publish(&self, ev: &QueuedEvent) -> Result<bool, Outcome> {
        let Some(nats) = &self.nats else {
            return Ok(false);
        };
        if ev.published {
            return Ok(false);
        }
        let session = ev.payload.0["sessionId"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| ev.session_id.to_string());
        let body = Bytes::from(serde_json::to_vec(&payload(ev)).unwrap_or_default());
        match nats
            .publish(nats.subject(&session, &ev.event), &ev.id.to_string(), body)
            .await
        {
            Ok(()) => Ok(true),
            Err(e) => Err(Outcome::Held {
                error: e.to_string(),
                at: Utc::now()
                    + chrono::Duration::from_std(nats.settings().retry_delay)
                        .unwrap_or(chrono::Duration::MAX),
            }),
        }
    }

    fn observe(&self, ev: &QueuedEvent, outcome: &Outcome) {
        let Some(m) = &self.metrics else { return };
        let label = match outcome {
            Outcome::Delivered { .. } => {
                let waited = (Utc::now() - ev.created_at).num_microseconds().unwrap_or(0);
                m.webhook_latency.observe(waited.max(0) as f64 / 1e6);
                "delivered"
            }
            Outcome::Retry { .. } => "retried",
            Outcome::Dead { .. } => "dead",
            Outcome::Skipped => "skipped",
            Outcome::Held { .. } => "held",
        };
        m.webhook_attempts.with_label_values(&[label]).inc();
    }

    async fn attempt(&self, webhook: Option<&WebhookRecord>, ev: &QueuedEvent) -> Outcome {
        let Some(hook) = webhook.filter(|h| h.enabled && wants(&h.events.0, &ev.event)) else {
            return Outcome::Skipped;
        };
        let body = Bytes::from(serde_json::to_vec(&payload(ev)).unwrap_or_default());
        let headers = deliver::headers(
            &ev.id.to_string(),
            &ev.event,
            ev.created_at.timestamp(),
            hook.secret.as_deref(),
            &body,
        );
        let started = Instant::now();
        // Its own trace per attempt; the URL's host only (a path or query can hold a token).
        let span = tracing::info_span!(
            parent: None,
            "webhook.deliver",
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            event = %ev.event,
            event.id = %ev.id,
            attempt = ev.attempts + 1,
            server.address = url::Url::parse(&hook.url).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default(),
            http.response.status_code = tracing::field::Empty,
        );
        let attempt = self
            .client
            .post(&hook.url, &headers, body, self.settings.timeout)
            .instrument(span.clone())
            .await;
        match &attempt {
            Attempt::Answered { status, .. } => {
                span.record("http.response.status_code", *status);
                if *status >= 300 {
                    span.record("otel.status_code", "ERROR");
                }
            }
            Attempt::Failed(_) | Attempt::BadUrl(_) => {
                span.record("otel.status_code", "ERROR");
            }
        }
        let attempts = ev.attempts + 1;
        let (status, verdict, error) = match attempt {
            Attempt::Answered {
                status,
                retry_after,
            } => (
                Some(i32::from(status)),
                retry::classify(status, retry_after),
                // The class only: what a private service answers is not the tenant's to read.
                format!("HTTP {}xx", status / 100),
            ),
            Attempt::Failed(e) => (None, Verdict::Retry(None), e),
            Attempt::BadUrl(e) => (None, Verdict::Dead, e),
        };
        tracing::debug!(id = %ev.id, event = %ev.event, ?status, attempts, elapsed = ?started.elapsed(), "webhook attempt");
        match verdict {
            Verdict::Delivered => Outcome::Delivered {
                status: status.unwrap_or(200),
            },
            Verdict::Dead => Outcome::Dead { status, error },
            Verdict::Retry(_) if attempts >= self.settings.max_attempts => Outcome::Dead {
                status,
                error: format!("{error} (gave up after {attempts} attempts)"),
            },
            Verdict::Retry(hint) => {
                let delay = retry::next_delay(
                    attempts,
                    hint,
                    self.settings.base_delay,
                    self.settings.max_delay,
                );
                Outcome::Retry {
                    status,
                    error,
                    at: Utc::now()
                        + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX),
                }
            }
        }
    }

    /// Starts the workers (none when `workers` is 0: tests drive [`Dispatcher::run_once`]) and the janitor; they stop when `cancel` fires.
    pub fn spawn(self: &Arc<Self>, cancel: CancellationToken) -> Vec<JoinHandle<()>> {
        let mut tasks: Vec<JoinHandle<()>> = (0..self.settings.workers)
            .map(|_| {
                let me = self.clone();
                let cancel = cancel.clone();
                tokio::spawn(async move { me.work(cancel).await })
            })
            .collect();
        let me = self.clone();
        tasks.push(tokio::spawn(async move { me.janitor(cancel).await }));
        tasks
    }

    async fn work(&self, cancel: CancellationToken) {
        loop {
            if cancel.is_cancelled() {
                return;
            }
            let busy = match self.run_once().await {
                Ok(Some(_)) => true,
                Ok(None) => false,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook worker: store error");
                    false
                }
            };
            if !busy {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(self.settings.poll_interval) => {}
                }
            }
        }
    }

    async fn janitor(&self, cancel: CancellationToken) {
        let mut last_purge: Option<Instant> = None;
        loop {
            if let Some(m) = &self.metrics {
                match self.store.outbox_depth().await {
                    Ok((pending, dead)) => {
                        m.webhook_queue_depth.set(pending);
                        m.webhook_dead_letters.set(dead);
                    }
                    Err(e) => tracing::debug!(error = %e, "webhook gauges: store error"),
                }
            }
            if last_purge.is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(60)) {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
                }
                continue;
            }
            last_purge = Some(Instant::now());
            let before = Utc::now()
                - chrono::Duration::from_std(self.settings.retention)
                    .unwrap_or(chrono::Duration::MAX);
            match self.store.purge_finished(before).await {
                Ok(n) if n > 0 => tracing::debug!(n, "webhook janitor purged finished events"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "webhook janitor: store error"),
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
            }
        }
    }
}

/// An empty list, `*` or `all` means every event.
pub fn wants(list: &[String], event: &str) -> bool {
    list.is_empty() || list.iter().any(|e| e == "*" || e == "all" || e == event)
}

/// The stored payload, with `id` and `timestamp` added when it lacks them.
fn payload(ev: &QueuedEvent) -> Value {
    let mut p = ev.payload.0.clone();
    if let Value::Object(m) = &mut p {
        m.entry("id")
            .or_insert_with(|| Value::String(ev.id.to_string()));
        m.entry("timestamp").or_insert_with(|| {
            Value::String(
                ev.created_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            )
        });
    }
    p
}
