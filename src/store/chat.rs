//! Chats, messages and the webhook outbox: a message and the event announcing it are written in
//! one transaction (design section 7), so an event is never lost nor announced twice.

use async_trait::async_trait;
use uuid::Uuid;

use super::StoreResult;

/// A message as `GET /:session/chat/messages` lists it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct MessageRow {
    pub msg_id: String,
    pub chat_jid: String,
    pub sender_jid: Option<String>,
    pub push_name: Option<String>,
    /// Unix seconds.
    pub timestamp: i64,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub media_type: Option<String>,
    pub content: Option<String>,
    pub from_me: bool,
    pub is_group: bool,
    pub quoted_id: Option<String>,
    pub status: String,
}

/// A chat as `GET /:session/chat/list` lists it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ChatRow {
    pub jid: String,
    pub name: Option<String>,
    pub unread_count: i32,
    pub marked_as_unread: bool,
    /// Disappearing-messages timer in seconds (0: off).
    pub ephemeral_expiration: i64,
    pub conversation_timestamp: Option<i64>,
}

/// An event waiting in the outbox for delivery.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: Uuid,
    pub event: String,
    pub payload: sqlx::types::Json<serde_json::Value>,
    pub state: String,
}

#[async_trait]
pub trait MessageStore: Send + Sync {
    /// Stores the message, bumps its chat and appends `event` to the outbox, in one
    /// transaction. `false` (and nothing written) when the message was stored before.
    async fn record_message(
        &self,
        session_id: Uuid,
        message: &MessageRow,
        event: &str,
        payload: &serde_json::Value,
    ) -> StoreResult<bool>;
    /// Newest first.
    async fn list_messages(
        &self,
        session_id: Uuid,
        chat_jid: &str,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<MessageRow>>;
    /// Most recent conversation first; `unread` keeps chats with unread messages.
    async fn list_chats(
        &self,
        session_id: Uuid,
        limit: i64,
        offset: i64,
        unread: bool,
    ) -> StoreResult<Vec<ChatRow>>;
    async fn get_chat(&self, session_id: Uuid, jid: &str) -> StoreResult<Option<ChatRow>>;
    async fn get_message(
        &self,
        session_id: Uuid,
        chat_jid: &str,
        msg_id: &str,
    ) -> StoreResult<Option<MessageRow>>;
    /// Pending outbox events of a session, oldest first.
    async fn pending_events(&self, session_id: Uuid, limit: i64) -> StoreResult<Vec<OutboxRow>>;
}

macro_rules! impl_message_store {
    ($store:ty, $db:ty) => {
        impl $store {
            /// Inserts a message row unless it is stored already; the rows inserted (0 or 1).
            async fn insert_message_row(
                tx: &mut sqlx::Transaction<'_, $db>,
                session_id: uuid::Uuid,
                m: &$crate::store::chat::MessageRow,
            ) -> Result<u64, sqlx::Error> {
                Ok(sqlx::query::<$db>(
                    "INSERT INTO messages (session_id, chat_jid, msg_id, sender_jid, push_name, timestamp, \
                     type, media_type, content, from_me, is_group, quoted_id, status, stored_us) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
                     ON CONFLICT (session_id, chat_jid, msg_id) DO NOTHING",
                )
                .bind(session_id)
                .bind(&m.chat_jid)
                .bind(&m.msg_id)
                .bind(m.sender_jid.as_deref())
                .bind(m.push_name.as_deref())
                .bind(m.timestamp)
                .bind(&m.kind)
                .bind(m.media_type.as_deref())
                .bind(m.content.as_deref())
                .bind(m.from_me)
                .bind(m.is_group)
                .bind(m.quoted_id.as_deref())
                .bind(&m.status)
                .bind($crate::store::sql::now().timestamp_micros())
                .execute(&mut **tx)
                .await?
                .rows_affected())
            }

            /// Appends one event to the webhook outbox inside `tx`.
            async fn append_outbox_row(
                tx: &mut sqlx::Transaction<'_, $db>,
                session_id: uuid::Uuid,
                event: &str,
                payload: &serde_json::Value,
            ) -> Result<(), sqlx::Error> {
                let at = $crate::store::sql::now();
                sqlx::query::<$db>(
                    "INSERT INTO webhook_outbox (id, session_id, event, payload, state, attempts, created_at, next_attempt_at) \
                     VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5)",
                )
                .bind(uuid::Uuid::now_v7())
                .bind(session_id)
                .bind(event)
                .bind(sqlx::types::Json(payload))
                .bind(at)
                .execute(&mut **tx)
                .await?;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::chat::MessageStore for $store {
            async fn record_message(
                &self,
                session_id: uuid::Uuid,
                m: &$crate::store::chat::MessageRow,
                event: &str,
                payload: &serde_json::Value,
            ) -> $crate::store::StoreResult<bool> {
                let q = |e| $crate::store::StoreError::from_sqlx(e, || "conflict".to_string());
                let mut tx = self.begin_write(session_id).await?;
                let inserted = Self::insert_message_row(&mut tx, session_id, m)
                    .await
                    .map_err(q)?;
                if inserted == 0 {
                    return Ok(false);
                }
                sqlx::query::<$db>(
                    "INSERT INTO chats (session_id, jid, unread_count, conversation_timestamp) \
                     VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (session_id, jid) DO UPDATE SET \
                       unread_count = chats.unread_count + excluded.unread_count, \
                       conversation_timestamp = CASE \
                         WHEN chats.conversation_timestamp IS NULL \
                           OR chats.conversation_timestamp < excluded.conversation_timestamp \
                         THEN excluded.conversation_timestamp \
                         ELSE chats.conversation_timestamp END",
                )
                .bind(session_id)
                .bind(&m.chat_jid)
                .bind(if m.from_me { 0i32 } else { 1i32 })
                .bind(m.timestamp)
                .execute(&mut *tx)
                .await
                .map_err(q)?;
                Self::append_outbox_row(&mut tx, session_id, event, payload)
                    .await
                    .map_err(q)?;
                tx.commit().await.map_err(q)?;
                self.outbox_appended();
                Ok(true)
            }

            async fn list_messages(
                &self,
                session_id: uuid::Uuid,
                chat_jid: &str,
                limit: i64,
                offset: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::chat::MessageRow>> {
                sqlx::query_as::<$db, $crate::store::chat::MessageRow>(
                    "SELECT msg_id, chat_jid, sender_jid, push_name, timestamp, type, media_type, content, \
                     from_me, is_group, quoted_id, status FROM messages \
                     WHERE session_id = $1 AND chat_jid = $2 \
                     ORDER BY timestamp DESC, stored_us DESC LIMIT $3 OFFSET $4",
                )
                .bind(session_id)
                .bind(chat_jid)
                .bind(limit)
                .bind(offset)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| $crate::store::StoreError::from_sqlx(e, String::new))
            }

            async fn list_chats(
                &self,
                session_id: uuid::Uuid,
                limit: i64,
                offset: i64,
                unread: bool,
            ) -> $crate::store::StoreResult<Vec<$crate::store::chat::ChatRow>> {
                sqlx::query_as::<$db, $crate::store::chat::ChatRow>(
                    "SELECT jid, name, unread_count, marked_as_unread, ephemeral_expiration, conversation_timestamp FROM chats \
                     WHERE session_id = $1 AND ($2 = FALSE OR unread_count > 0 OR marked_as_unread) \
                     ORDER BY conversation_timestamp IS NULL, conversation_timestamp DESC, jid \
                     LIMIT $3 OFFSET $4",
                )
                .bind(session_id)
                .bind(unread)
                .bind(limit)
                .bind(offset)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| $crate::store::StoreError::from_sqlx(e, String::new))
            }

            async fn get_chat(
                &self,
                session_id: uuid::Uuid,
                jid: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::chat::ChatRow>> {
                sqlx::query_as::<$db, $crate::store::chat::ChatRow>(
                    "SELECT jid, name, unread_count, marked_as_unread, ephemeral_expiration, conversation_timestamp FROM chats \
                     WHERE session_id = $1 AND jid = $2",
                )
                .bind(session_id)
                .bind(jid)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| $crate::store::StoreError::from_sqlx(e, String::new))
            }

            async fn get_message(
                &self,
                session_id: uuid::Uuid,
                chat_jid: &str,
                msg_id: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::chat::MessageRow>> {
                sqlx::query_as::<$db, $crate::store::chat::MessageRow>(
                    "SELECT msg_id, chat_jid, sender_jid, push_name, timestamp, type, media_type, content, \
                     from_me, is_group, quoted_id, status FROM messages \
                     WHERE session_id = $1 AND chat_jid = $2 AND msg_id = $3",
                )
                .bind(session_id)
                .bind(chat_jid)
                .bind(msg_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| $crate::store::StoreError::from_sqlx(e, String::new))
            }

            async fn pending_events(
                &self,
                session_id: uuid::Uuid,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::chat::OutboxRow>> {
                sqlx::query_as::<$db, $crate::store::chat::OutboxRow>(
                    "SELECT id, event, payload, state FROM webhook_outbox \
                     WHERE session_id = $1 AND state = 'pending' ORDER BY created_at, id LIMIT $2",
                )
                .bind(session_id)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| $crate::store::StoreError::from_sqlx(e, String::new))
            }
        }
    };
}

pub(crate) use impl_message_store;
