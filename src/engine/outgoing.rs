//! Honest sends: a send the API answered with success is in history and in the outbox.
//!
//! Every send (texts, media, rich messages, reactions, edits, revokes, votes) takes one path,
//! [`Live::send_recorded`]:
//!
//! 1. **journaled** (`outgoing_messages`, state `sending`): what will be recorded, before the
//!    message goes on the wire. If that write fails (the database is down, or this node no
//!    longer holds the session's shard) nothing is sent and the API says why.
//! 2. **on the wire**: whatsapp-rust encrypts and sends it. If that fails the journal row is
//!    dropped and the API answers the error: nothing was sent, nothing is recorded.
//! 3. **recorded**: the message row (status `sent`, later `delivered` and `read` from
//!    receipts), its chat and its `message.sent` event in one transaction, or the reaction,
//!    edit, revoke or vote applied to the message it names, tried three times; then the
//!    journal row goes and the API answers the message's id.
//! 4. If recording still fails, the journal row is marked `sent` (with the message's id) and
//!    the API answers 500 naming the id, saying the message went out and must not be sent
//!    again. The record is tried again in the background with backoff, and by the session's
//!    journal sweep, on this node or on the session's next owner, until it is written.
//!
//! The sweep (at each start of the session's client, then every minute) records the `sent`
//! rows left behind and drops the `sending` rows older than a request can live: their request
//! never answered success (the process died, or the shard moved, between 1 and 4).
//!
//! A journal row that has done its job is deleted off the request path, by one task for the
//! whole engine ([`Journal`]) that deletes what accumulated in one statement: a send costs one
//! write of its own before the wire and the record's transaction after it. A deletion that
//! fails or never runs (a crash) leaves a row the sweep drops (`sending`) or records again,
//! idempotently, then drops (`sent`).

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use tokio::sync::mpsc;
use tracing::Instrument;
use whatsapp_rust::{Jid, waproto::whatsapp as wa};

use super::{
    EngineError, Live,
    events::poll_vote::PollVote,
    metrics::{self, SendOutcome},
};
use crate::store::{
    Store, StoreError,
    outgoing::{FORGET_CHUNK, OutgoingRow, SENDING, SENT},
};

/// How often recording a sent message is tried before the API hears it failed.
const RECORD_TRIES: u32 = 3;
/// A `sending` row older than this belongs to no live request (the request timeout is 120 s
/// by default): the sweep drops it.
const ORPHAN_AFTER: Duration = Duration::from_secs(300);
/// A `sent` row is recorded by the sweep once it is this old (the request's own retries are
/// over by then).
const SENT_SETTLED: Duration = Duration::from_secs(10);
/// The background retries of a record that failed: first wait, last wait, how long in all.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_LAST: Duration = Duration::from_secs(30);
const RETRY_FOR: Duration = Duration::from_secs(600);

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn store_error(e: StoreError) -> EngineError {
    match e {
        StoreError::Fenced(m) => EngineError::Fenced(m),
        other => EngineError::NotJournaled(other.to_string()),
    }
}

impl Live {
    /// Sends through `wire` (which answers the message's id) what is recorded as `record` in
    /// `chat` (with `vote` when it casts one), along the path in this module's header.
    pub(super) async fn send_recorded<F, Fut>(
        self: &Arc<Self>,
        chat: &Jid,
        record: &wa::Message,
        vote: Option<PollVote>,
        wire: F,
    ) -> Result<String, EngineError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<String, EngineError>>,
    {
        let store = self.recorder().store.clone();
        let session = self.session_id();
        let mut encoded = Vec::new();
        whatsapp_rust::waproto::codec::message_encode_into(record, &mut encoded);
        let journal = OutgoingRow {
            id: uuid::Uuid::now_v7(),
            msg_id: None,
            chat_jid: chat.to_string(),
            message: encoded,
            vote: vote.as_ref().and_then(|v| serde_json::to_string(v).ok()),
            state: SENDING.into(),
            created_at: now_ms(),
        };
        let kind = super::events::kind(record).0;
        if let Err(e) = store.journal_send(session, &journal).await {
            metrics::sent(kind, SendOutcome::Failed);
            return Err(store_error(e));
        }
        let span = tracing::info_span!(
            "whatsapp.send",
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            session = %self.name(),
            message.id = tracing::field::Empty,
        );
        let sent = wire().instrument(span.clone()).await;
        match &sent {
            Ok(id) => span.record("message.id", id.as_str()),
            Err(_) => span.record("otel.status_code", "ERROR"),
        };
        let id = match sent {
            Ok(id) => id,
            Err(e) => {
                metrics::sent(kind, SendOutcome::Failed);
                self.forget_send(journal.id);
                return Err(e);
            }
        };
        let mut last = None;
        for attempt in 0..RECORD_TRIES {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(50 << (2 * attempt))).await;
            }
            match self.record_sent_as(&id, chat, record, vote.clone()).await {
                Ok(()) => {
                    metrics::sent(kind, SendOutcome::Sent);
                    self.forget_send(journal.id);
                    return Ok(id);
                }
                Err(e @ StoreError::Fenced(_)) => {
                    last = Some(e);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        metrics::sent(kind, SendOutcome::NotRecorded);
        let why = last.map_or_else(String::new, |e| e.to_string());
        tracing::error!(session = %self.name(), %id, error = %why, "sent, but not recorded; retrying in the background");
        if let Err(e) = store.mark_sent(session, journal.id, &id).await {
            tracing::error!(session = %self.name(), %id, error = %e, "marking an unrecorded send as sent");
        }
        let this = self.clone();
        let chat = chat.clone();
        let record = record.clone();
        let (msg_id, journal_id) = (id.clone(), journal.id);
        tokio::spawn(async move {
            this.record_later(journal_id, &msg_id, &chat, &record, vote)
                .await
        });
        Err(EngineError::NotRecorded { id, why })
    }

    /// Retries the record of a send WhatsApp took, with backoff, until it is written, the
    /// session's shard is gone, or [`RETRY_FOR`] passed (the journal sweep goes on from there).
    async fn record_later(
        &self,
        journal: uuid::Uuid,
        id: &str,
        chat: &Jid,
        record: &wa::Message,
        vote: Option<PollVote>,
    ) {
        let started = tokio::time::Instant::now();
        let mut wait = RETRY_FIRST;
        while started.elapsed() < RETRY_FOR {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(RETRY_LAST);
            match self.record_sent_as(id, chat, record, vote.clone()).await {
                Ok(()) => {
                    tracing::info!(session = %self.name(), %id, "a send recorded late");
                    self.forget_send(journal);
                    return;
                }
                Err(StoreError::Fenced(_)) => return,
                Err(e) => {
                    tracing::warn!(session = %self.name(), %id, error = %e, retry_in = ?wait, "recording a send")
                }
            }
        }
    }

    /// The journal sweep (see the module's header). Errors are logged and the sweep comes
    /// again; nothing is dropped that was not recorded or never answered success.
    pub(super) async fn sweep_sends(&self) {
        let store = self.recorder().store.clone();
        let session = self.session_id();
        let cutoff = now_ms() - SENT_SETTLED.as_millis() as i64;
        let rows = match store.journaled_sends(session, cutoff).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(session = %self.name(), error = %e, "reading the send journal");
                return;
            }
        };
        let orphan = now_ms() - ORPHAN_AFTER.as_millis() as i64;
        for row in rows {
            match (row.state.as_str(), &row.msg_id) {
                (SENT, Some(id)) => {
                    let decoded = whatsapp_rust::waproto::codec::message_decode(&row.message);
                    let (Ok(message), Ok(chat)) = (decoded, row.chat_jid.parse::<Jid>()) else {
                        tracing::error!(session = %self.name(), %id, "a journaled send does not decode; dropped");
                        self.forget_send(row.id);
                        continue;
                    };
                    let vote = row
                        .vote
                        .as_deref()
                        .and_then(|v| serde_json::from_str(v).ok());
                    match self.record_sent_as(id, &chat, &message, vote).await {
                        Ok(()) => {
                            tracing::info!(session = %self.name(), %id, "a journaled send recorded");
                            self.forget_send(row.id);
                        }
                        Err(e) => {
                            tracing::warn!(session = %self.name(), %id, error = %e, "recording a journaled send; the next sweep tries again");
                        }
                    }
                }
                _ if row.created_at < orphan => {
                    tracing::warn!(session = %self.name(), journal = %row.id, "a send whose request never answered success is forgotten");
                    self.forget_send(row.id);
                }
                _ => {}
            }
        }
    }

    /// Drops a journal row. A failure leaves the row to the sweep: a `sending` row is dropped
    /// there, and a recorded message is never recorded twice (the writes are idempotent).
    fn forget_send(&self, journal: uuid::Uuid) {
        self.recorder().journal.forget(journal);
    }
}

/// Deletes the journal rows of finished sends, batched, off the request path (see the header).
pub(super) struct Journal {
    store: Arc<dyn Store>,
    /// The deleting task's queue, started on first use (the engine may be built outside a
    /// runtime); the task ends with the engine, when this sender goes.
    queue: OnceLock<mpsc::UnboundedSender<uuid::Uuid>>,
}

impl Journal {
    pub(super) fn new(store: Arc<dyn Store>) -> Self {
        Journal {
            store,
            queue: OnceLock::new(),
        }
    }

    fn forget(&self, id: uuid::Uuid) {
        let queue = self.queue.get_or_init(|| {
            let (tx, mut rx) = mpsc::unbounded_channel::<uuid::Uuid>();
            let store = self.store.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                while rx.recv_many(&mut ids, FORGET_CHUNK).await > 0 {
                    if let Err(e) = store.forget_sends(&ids).await {
                        tracing::warn!(rows = ids.len(), error = %e, "deleting finished send journal rows; the sweep will");
                    }
                    ids.clear();
                }
            });
            tx
        });
        // The task only stops with the engine; a row it never deletes is the sweep's.
        let _ = queue.send(id);
    }
}
