//! What a session keeps of a message, received or sent: the message row, its chat and its
//! outbox event in one transaction (`store::chat`), and what the message changes besides
//! (a reaction, edit or revoke on the message it names, a poll kept for voting, a decrypted
//! vote, the sender's push name, the media row).
//!
//! Every write is idempotent, keyed by the message's chat and id (a reaction by its sender),
//! so a message recorded twice (a redelivery after a crash between our commit and WhatsApp's
//! ack) is stored and announced once. Every error is returned, never only logged: for a
//! received message the inbound durability hook (`engine::inbound`) then withholds its ack
//! and WhatsApp delivers it again; for a sent one `Engine` says so to the client.

use std::sync::Arc;

use whatsapp_rust::{Client, waproto::whatsapp as wa};

use super::events::{Envelope, message_event, message_payload, message_row, poll_vote, updates};
use crate::store::{Store, StoreResult};

pub(super) struct Recorder {
    pub(super) name: String,
    pub(super) id: uuid::Uuid,
    pub(super) store: Arc<dyn Store>,
    /// The engine's media store: media messages get a row and their file (`engine::media`).
    pub(super) media: Option<Arc<super::media::MediaCtx>>,
    /// Where the journal rows of finished sends go (`engine::outgoing`).
    pub(super) journal: Arc<super::outgoing::Journal>,
}

impl Recorder {
    /// Records one message; `known` is the vote the message casts when the session cast it
    /// (its own vote is not decrypted back).
    pub(super) async fn record(
        &self,
        client: &Arc<Client>,
        message: &wa::Message,
        e: &Envelope<'_>,
        known: Option<poll_vote::PollVote>,
    ) -> StoreResult<()> {
        let recorded = self.record_message(client, message, e, known).await;
        if !e.from_me && recorded.is_err() {
            // Not acknowledged: WhatsApp delivers it again (`engine::inbound`).
            super::metrics::received(super::events::kind(message).0, e.timestamp, false);
        }
        recorded
    }

    async fn record_message(
        &self,
        client: &Arc<Client>,
        message: &wa::Message,
        e: &Envelope<'_>,
        known: Option<poll_vote::PollVote>,
    ) -> StoreResult<()> {
        let store = &*self.store;
        super::rich::remember_poll(store, self.id, message, e).await?;
        // Reactions, edits and revokes change the message they name (`events::updates`).
        if let Some(u) = updates::classify(message) {
            let changed = updates::record(store, &self.name, self.id, u, message, e).await?;
            tracing::debug!(session = %self.name, id = %e.id, kind = u.name(), changed, "message update");
            return Ok(());
        }
        let mut row = message_row(message, e);
        // A vote on a poll the session knows, decrypted (`events::poll_vote`).
        let vote = match known {
            Some(v) => Some(v),
            None if poll_vote::is_vote(message) => {
                poll_vote::decrypt(client, store, self.id, message, e).await?
            }
            None => None,
        };
        if let Some(v) = &vote {
            row.kind = "poll_vote".into();
            row.content = Some(v.content());
        }
        // Other protocol messages (key shares, ...) are not chat messages.
        if row.kind == "protocol" || (row.kind == "unknown" && row.content.is_none()) {
            return Ok(());
        }
        if !e.from_me {
            self.record_push_name(e).await?;
        }
        let event = message_event(e.from_me);
        let mut payload = message_payload(&self.name, event, &row, e, message);
        if let (Some(v), Some(out)) = (&vote, payload.as_object_mut()) {
            out.insert("pollVote".into(), v.payload());
        }
        store.record_message(self.id, &row, event, &payload).await?;
        if !e.from_me {
            super::metrics::received(&row.kind, e.timestamp, true);
        }
        // The latest vote per voter, upserted after the message's transaction (again on a
        // redelivery: the same row).
        if let Some(v) = &vote {
            store
                .save_poll_vote(self.id, &v.row(e.id, e.timestamp))
                .await?;
        }
        if let Some(media) = &self.media {
            media.capture(self.id, client, message, e).await?;
        }
        Ok(())
    }

    /// A sender's push name, kept with their contact; a new one is announced as
    /// `contact.push_name` (whatsapp-rust 0.7 has no event for it).
    async fn record_push_name(&self, e: &Envelope<'_>) -> StoreResult<()> {
        if e.push_name.is_empty() || e.is_group && e.sender == e.chat {
            return Ok(());
        }
        let contact = e.sender_pn.unwrap_or(e.sender).to_non_ad();
        let payload = |old: Option<&str>| {
            super::events::payload::event(
                &self.name,
                "contact.push_name",
                serde_json::json!({
                    "JID": contact.to_string(),
                    "JIDAlt": e.sender_pn.map(|_| e.sender.to_non_ad().to_string()).unwrap_or_default(),
                    "Message": super::events::info::info(e),
                    "OldPushName": old.unwrap_or_default(),
                    "NewPushName": e.push_name,
                }),
            )
            .payload
        };
        let changed = self
            .store
            .record_push_name(self.id, &contact.to_string(), e.push_name, &payload)
            .await?;
        tracing::debug!(session = %self.name, %contact, changed, "push name seen");
        Ok(())
    }
}
