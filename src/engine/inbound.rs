//! Nothing WhatsApp handed us is lost: the inbound durability hook.
//!
//! WhatsApp keeps a message it delivered until the device acknowledges it (the delivery
//! receipt), and delivers what is still unacknowledged again at the next login. whatsapp-rust
//! acknowledges a decrypted message at once unless an `InboundDurabilityHook` is registered;
//! with ours it acknowledges a batch only after [`Durable::on_messages`] returned `Ok`, that
//! is after every message of the batch is on durable storage with its chat and its outbox
//! event (`engine::recorder`). So:
//!
//! 1. whatsapp-rust decrypts the message and first writes the plaintext to the device store's
//!    pending-inbound buffer (`wa_pending_inbound`, fenced like every device-store write);
//! 2. the hook records the batch, message by message, each in its own idempotent transaction
//!    (messages are keyed by session, chat and id; a redelivered one is stored and announced
//!    once);
//! 3. only then whatsapp-rust sends the acks and clears the buffer.
//!
//! A crash before 3 leaves the messages unacknowledged: WhatsApp delivers them again and the
//! hook runs again, from the buffered plaintext when the Signal ratchet had already moved
//! past them. A failed write (database down, this node no longer holds the session's shard)
//! returns `Err`: no ack, WhatsApp delivers the batch again, here or on the new owner.
//!
//! What the hook does not cover (whatsapp-rust acks those on their own paths, and
//! `docs/events.md` says what holds for each): newsletter posts, placeholder (PDO)
//! recoveries, receipts and the other notifications, which are recorded from the event
//! stream after their ack.

use std::sync::Arc;

use whatsapp_rust::{Client, InboundDurabilityHook, types::events::InboundMessage};

use super::{events::Envelope, recorder::Recorder};

/// The hook of one session's client.
pub(super) struct Durable {
    pub(super) recorder: Arc<Recorder>,
}

#[async_trait::async_trait]
impl InboundDurabilityHook for Durable {
    async fn on_messages(
        &self,
        client: Arc<Client>,
        batch: &[InboundMessage],
    ) -> anyhow::Result<()> {
        for m in batch {
            let e = Envelope::received(&m.info);
            if let Err(err) = self.recorder.record(&client, &m.message, &e, None).await {
                tracing::warn!(
                    session = %self.recorder.name, id = %m.info.id, batch = batch.len(), error = %err,
                    "inbound message not stored: left unacknowledged for WhatsApp to deliver again"
                );
                // A write refused by the fence was reported by the store: the client stops
                // (`Live`) and the batch goes to the session's new owner.
                return Err(err.into());
            }
        }
        Ok(())
    }
}
