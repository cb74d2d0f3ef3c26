//! The journal of sends in flight: a message the API sends is written here before it goes on
//! the wire, so a send WhatsApp took is never missing from history and webhooks, whatever
//! fails after (`engine::outgoing` says the whole path and the states a send goes through).

use async_trait::async_trait;
use uuid::Uuid;

use super::{StoreResult, cache::CachedStore};

/// Not on the wire yet, or on it without an answer: the API request has not answered success.
pub const SENDING: &str = "sending";
/// WhatsApp took it; recording it in history and the outbox is still to be done.
pub const SENT: &str = "sent";

/// One send in flight.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OutgoingRow {
    /// The journal's own key (whatsapp-rust names some messages only once they are sent).
    pub id: Uuid,
    /// The message's id, known once it is on the wire.
    pub msg_id: Option<String>,
    /// The chat it goes to (full JID).
    pub chat_jid: String,
    /// The `wa::Message` as whatsapp-rust encodes it.
    pub message: Vec<u8>,
    /// JSON of the poll vote the message casts, if it is one.
    pub vote: Option<String>,
    /// [`SENDING`] or [`SENT`].
    pub state: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// Journal rows deleted by one statement (far below both databases' bind limits).
pub(crate) const FORGET_CHUNK: usize = 256;

#[async_trait]
pub trait OutgoingStore: Send + Sync {
    /// Journals a send before it goes on the wire (fenced).
    async fn journal_send(&self, session_id: Uuid, row: &OutgoingRow) -> StoreResult<()>;
    /// WhatsApp took the send (as `msg_id`), but recording it failed: it is recorded later.
    async fn mark_sent(&self, session_id: Uuid, id: Uuid, msg_id: &str) -> StoreResult<()>;
    /// These sends are recorded (or never went out): their journal rows go. Not fenced: a
    /// row dropped by a node that no longer owns its session is one the sweep would drop or
    /// record again (idempotently) anyway.
    async fn forget_sends(&self, ids: &[Uuid]) -> StoreResult<()>;
    /// The session's journaled sends created before `before_ms`, oldest first.
    async fn journaled_sends(
        &self,
        session_id: Uuid,
        before_ms: i64,
    ) -> StoreResult<Vec<OutgoingRow>>;
}

macro_rules! impl_outgoing_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::outgoing::OutgoingStore for $store {
            async fn journal_send(
                &self,
                session_id: uuid::Uuid,
                r: &$crate::store::outgoing::OutgoingRow,
            ) -> $crate::store::StoreResult<()> {
                let e = |e| $crate::store::StoreError::from_sqlx(e, String::new);
                let mut tx = self.begin_write(session_id).await?;
                sqlx::query::<$db>(
                    "INSERT INTO outgoing_messages \
                     (id, session_id, msg_id, chat_jid, message, vote, state, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(r.id)
                .bind(session_id)
                .bind(r.msg_id.as_deref())
                .bind(&r.chat_jid)
                .bind(&r.message)
                .bind(r.vote.as_deref())
                .bind(&r.state)
                .bind(r.created_at)
                .execute(&mut *tx)
                .await
                .map_err(e)?;
                tx.commit().await.map_err(e)
            }

            async fn mark_sent(
                &self,
                session_id: uuid::Uuid,
                id: uuid::Uuid,
                msg_id: &str,
            ) -> $crate::store::StoreResult<()> {
                let e = |e| $crate::store::StoreError::from_sqlx(e, String::new);
                let mut tx = self.begin_write(session_id).await?;
                sqlx::query::<$db>(
                    "UPDATE outgoing_messages SET state = $3, msg_id = $4 \
                     WHERE session_id = $1 AND id = $2",
                )
                .bind(session_id)
                .bind(id)
                .bind($crate::store::outgoing::SENT)
                .bind(msg_id)
                .execute(&mut *tx)
                .await
                .map_err(e)?;
                tx.commit().await.map_err(e)
            }

            async fn forget_sends(
                &self,
                ids: &[uuid::Uuid],
            ) -> $crate::store::StoreResult<()> {
                let e = |e| $crate::store::StoreError::from_sqlx(e, String::new);
                for chunk in ids.chunks($crate::store::outgoing::FORGET_CHUNK) {
                    let mut qb =
                        sqlx::QueryBuilder::<$db>::new("DELETE FROM outgoing_messages WHERE id IN (");
                    let mut list = qb.separated(", ");
                    for id in chunk {
                        list.push_bind(*id);
                    }
                    qb.push(")");
                    // Not prepared and kept: each batch size would be a statement of its own.
                    let q = qb.build().persistent(false);
                    q.execute(&self.pool).await.map_err(e)?;
                }
                Ok(())
            }

            async fn journaled_sends(
                &self,
                session_id: uuid::Uuid,
                before_ms: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::outgoing::OutgoingRow>> {
                sqlx::query_as::<$db, $crate::store::outgoing::OutgoingRow>(
                    "SELECT id, msg_id, chat_jid, message, vote, state, created_at FROM outgoing_messages \
                     WHERE session_id = $1 AND created_at < $2 ORDER BY created_at",
                )
                .bind(session_id)
                .bind(before_ms)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| $crate::store::StoreError::from_sqlx(e, String::new))
            }
        }
    };
}

pub(crate) use impl_outgoing_store;

#[async_trait]
impl OutgoingStore for CachedStore {
    async fn journal_send(&self, session_id: Uuid, row: &OutgoingRow) -> StoreResult<()> {
        self.inner().journal_send(session_id, row).await
    }

    async fn mark_sent(&self, session_id: Uuid, id: Uuid, msg_id: &str) -> StoreResult<()> {
        self.inner().mark_sent(session_id, id, msg_id).await
    }

    async fn forget_sends(&self, ids: &[Uuid]) -> StoreResult<()> {
        self.inner().forget_sends(ids).await
    }

    async fn journaled_sends(
        &self,
        session_id: Uuid,
        before_ms: i64,
    ) -> StoreResult<Vec<OutgoingRow>> {
        self.inner().journaled_sends(session_id, before_ms).await
    }
}
