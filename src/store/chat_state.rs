//! What the session's own chat actions change in the chat list: messages marked read (the
//! unread count follows), chats marked unread, disappearing timers, messages deleted for me.

use async_trait::async_trait;
use uuid::Uuid;

use super::{StoreResult, cache::CachedStore};

#[async_trait]
pub trait ChatStateStore: Send + Sync {
    /// Marks these received messages of the chat read (status `read`); the chat's unread
    /// count becomes the number of its received messages still unread, and it is no longer
    /// marked unread.
    async fn mark_messages_read(
        &self,
        session_id: Uuid,
        chat_jid: &str,
        ids: &[&str],
    ) -> StoreResult<()>;
    /// Marks the chat unread (its row is created if needed).
    async fn mark_chat_unread(&self, session_id: Uuid, chat_jid: &str) -> StoreResult<()>;
    /// Sets the chat's disappearing timer in seconds, 0 for off (its row is created if
    /// needed).
    async fn set_chat_ephemeral(
        &self,
        session_id: Uuid,
        chat_jid: &str,
        seconds: i64,
    ) -> StoreResult<()>;
    /// Removes a message deleted for me. `false` when it was not stored.
    async fn forget_message(
        &self,
        session_id: Uuid,
        chat_jid: &str,
        msg_id: &str,
    ) -> StoreResult<bool>;
}

macro_rules! impl_chat_state_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::chat_state::ChatStateStore for $store {
            async fn mark_messages_read(
                &self,
                session_id: uuid::Uuid,
                chat_jid: &str,
                ids: &[&str],
            ) -> $crate::store::StoreResult<()> {
                let q = |e| $crate::store::StoreError::from_sqlx(e, String::new);
                let mut tx = self.begin_write(session_id).await?;
                for id in ids {
                    sqlx::query::<$db>(
                        "UPDATE messages SET status = 'read' WHERE session_id = $1 \
                         AND chat_jid = $2 AND msg_id = $3 AND from_me = FALSE",
                    )
                    .bind(session_id)
                    .bind(chat_jid)
                    .bind(*id)
                    .execute(&mut *tx)
                    .await
                    .map_err(q)?;
                }
                sqlx::query::<$db>(
                    "UPDATE chats SET marked_as_unread = FALSE, unread_count = \
                       (SELECT COUNT(*) FROM messages WHERE session_id = $1 AND chat_jid = $2 \
                        AND from_me = FALSE AND status <> 'read') \
                     WHERE session_id = $1 AND jid = $2",
                )
                .bind(session_id)
                .bind(chat_jid)
                .execute(&mut *tx)
                .await
                .map_err(q)?;
                tx.commit().await.map_err(q)
            }

            async fn mark_chat_unread(
                &self,
                session_id: uuid::Uuid,
                chat_jid: &str,
            ) -> $crate::store::StoreResult<()> {
                let q = |e| $crate::store::StoreError::from_sqlx(e, String::new);
                let mut tx = self.begin_write(session_id).await?;
                sqlx::query::<$db>(
                    "INSERT INTO chats (session_id, jid, marked_as_unread) VALUES ($1, $2, TRUE) \
                     ON CONFLICT (session_id, jid) DO UPDATE SET marked_as_unread = TRUE",
                )
                .bind(session_id)
                .bind(chat_jid)
                .execute(&mut *tx)
                .await
                .map_err(q)?;
                tx.commit().await.map_err(q)
            }

            async fn set_chat_ephemeral(
                &self,
                session_id: uuid::Uuid,
                chat_jid: &str,
                seconds: i64,
            ) -> $crate::store::StoreResult<()> {
                let q = |e| $crate::store::StoreError::from_sqlx(e, String::new);
                let mut tx = self.begin_write(session_id).await?;
                sqlx::query::<$db>(
                    "INSERT INTO chats (session_id, jid, ephemeral_expiration) VALUES ($1, $2, $3) \
                     ON CONFLICT (session_id, jid) DO UPDATE SET \
                       ephemeral_expiration = excluded.ephemeral_expiration",
                )
                .bind(session_id)
                .bind(chat_jid)
                .bind(seconds)
                .execute(&mut *tx)
                .await
                .map_err(q)?;
                tx.commit().await.map_err(q)
            }

            async fn forget_message(
                &self,
                session_id: uuid::Uuid,
                chat_jid: &str,
                msg_id: &str,
            ) -> $crate::store::StoreResult<bool> {
                let q = |e| $crate::store::StoreError::from_sqlx(e, String::new);
                let mut tx = self.begin_write(session_id).await?;
                let gone = sqlx::query::<$db>(
                    "DELETE FROM messages WHERE session_id = $1 AND chat_jid = $2 AND msg_id = $3",
                )
                .bind(session_id)
                .bind(chat_jid)
                .bind(msg_id)
                .execute(&mut *tx)
                .await
                .map_err(q)?
                .rows_affected()
                    > 0;
                sqlx::query::<$db>(
                    "UPDATE chats SET unread_count = \
                       (SELECT COUNT(*) FROM messages WHERE session_id = $1 AND chat_jid = $2 \
                        AND from_me = FALSE AND status <> 'read') \
                     WHERE session_id = $1 AND jid = $2",
                )
                .bind(session_id)
                .bind(chat_jid)
                .execute(&mut *tx)
                .await
                .map_err(q)?;
                tx.commit().await.map_err(q)?;
                Ok(gone)
            }
        }
    };
}

pub(crate) use impl_chat_state_store;

#[async_trait]
impl ChatStateStore for CachedStore {
    async fn mark_messages_read(
        &self,
        session_id: Uuid,
        chat_jid: &str,
        ids: &[&str],
    ) -> StoreResult<()> {
        self.inner()
            .mark_messages_read(session_id, chat_jid, ids)
            .await
    }

    async fn mark_chat_unread(&self, session_id: Uuid, chat_jid: &str) -> StoreResult<()> {
        self.inner().mark_chat_unread(session_id, chat_jid).await
    }

    async fn set_chat_ephemeral(
        &self,
        session_id: Uuid,
        chat_jid: &str,
        seconds: i64,
    ) -> StoreResult<()> {
        self.inner()
            .set_chat_ephemeral(session_id, chat_jid, seconds)
            .await
    }

    async fn forget_message(
        &self,
        session_id: Uuid,
        chat_jid: &str,
        msg_id: &str,
    ) -> StoreResult<bool> {
        self.inner()
            .forget_message(session_id, chat_jid, msg_id)
            .await
    }
}
