//! Events that are not new chat messages: receipts, reactions, edits, deletions, contacts, and
//! every other event the engine maps. Each method writes what the event changes and appends its
//! outbox rows in one transaction (design section 7), as `chat::record_message` does for messages.

use async_trait::async_trait;
use serde_json::Value;
use uuid::Uuid;

use super::StoreResult;

/// An event to append to the webhook outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub name: &'static str,
    pub payload: Value,
}

/// A change to a stored message, announced by another message (an edit or a revoke).
#[derive(Debug, Clone, PartialEq)]
pub struct MessageChange {
    /// The changed message.
    pub msg_id: String,
    /// Who sent the change (non-AD JID), and their phone JID when that is a LID.
    pub sender_jid: String,
    pub sender_pn: Option<String>,
    pub from_me: bool,
    pub is_group: bool,
    /// Unix milliseconds of the change.
    pub at_ms: i64,
}

/// One reaction, as `message_reactions` keeps it; an empty emoji removes it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ReactionRow {
    pub chat_jid: String,
    pub msg_id: String,
    pub sender_jid: String,
    pub emoji: String,
    /// Unix milliseconds.
    pub timestamp: i64,
}

/// What the contact-related events say about a contact; `None` fields are left as they were.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContactPatch {
    pub jid: String,
    pub push_name: Option<String>,
    pub full_name: Option<String>,
    pub first_name: Option<String>,
    pub business_name: Option<String>,
    pub about: Option<String>,
    pub picture_id: Option<String>,
    /// The picture was removed (clears `picture_id`).
    pub picture_removed: bool,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ContactRow {
    pub jid: String,
    pub push_name: Option<String>,
    pub full_name: Option<String>,
    pub first_name: Option<String>,
    pub business_name: Option<String>,
    pub about: Option<String>,
    pub picture_id: Option<String>,
    /// Unix seconds.
    pub updated_at: i64,
}

/// When a stored message was last edited and whether it was deleted for everyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct MessageMarks {
    pub edited_at: Option<i64>,
    pub deleted_at: Option<i64>,
}

/// Builds a push-name event from the name the contact had before (`None`: unknown).
pub type PushNamePayload<'a> = &'a (dyn Fn(Option<&str>) -> Value + Send + Sync);

/// How far a message got; a receipt never moves a message back.
pub fn status_rank(status: &str) -> i32 {
    match status {
        "sent" => 1,
        "delivered" => 2,
        "read" => 3,
        "played" => 4,
        _ => 0,
    }
}

#[async_trait]
pub trait EventStore: Send + Sync {
    /// Appends events that change nothing else, in one transaction.
    async fn record_events(&self, session_id: Uuid, events: &[NewEvent]) -> StoreResult<()>;

    /// Moves the stored messages `ids` forward to `status` (never back) and appends `events`.
    /// Returns how many messages changed.
    async fn record_receipt(
        &self,
        session_id: Uuid,
        ids: &[String],
        status: &str,
        events: &[NewEvent],
    ) -> StoreResult<u64>;

    /// Stores (or, with an empty emoji, removes) a reaction and appends `events`. `false` and
    /// nothing written when it changes nothing (a redelivered reaction).
    async fn record_reaction(
        &self,
        session_id: Uuid,
        reaction: &ReactionRow,
        events: &[NewEvent],
    ) -> StoreResult<bool>;

    /// Replaces the content of the message `change.msg_id` when the change comes from its
    /// sender and is newer than the last edit, and appends `events`. `false` and nothing
    /// written for a stale or foreign edit; a message we never stored is announced anyway.
    async fn record_edit(
        &self,
        session_id: Uuid,
        change: &MessageChange,
        content: Option<&str>,
        events: &[NewEvent],
    ) -> StoreResult<bool>;

    /// Marks the message deleted for everyone (by its sender, or anyone in a group, where
    /// admins may) and appends `events`. `false` and nothing written when it was already
    /// deleted or the revoke is not its sender's.
    async fn record_revoke(
        &self,
        session_id: Uuid,
        change: &MessageChange,
        events: &[NewEvent],
    ) -> StoreResult<bool>;

    /// Applies what an event says about a contact and appends `events`.
    async fn record_contact(
        &self,
        session_id: Uuid,
        patch: &ContactPatch,
        events: &[NewEvent],
    ) -> StoreResult<()>;

    /// Stores a push name seen on a message; when it differs from the stored one, appends the
    /// event `payload(old name)` as `contact.push_name`. `true` when the name changed.
    async fn record_push_name(
        &self,
        session_id: Uuid,
        jid: &str,
        push_name: &str,
        payload: PushNamePayload<'_>,
    ) -> StoreResult<bool>;

    /// A history sync chunk: upserts its chats (name, unread count, last activity), stores
    /// its messages (those already stored are left alone), its push names, and appends
    /// `events`. Returns how many messages were new.
    async fn record_history(
        &self,
        session_id: Uuid,
        chats: &[super::chat::ChatRow],
        messages: &[super::chat::MessageRow],
        contacts: &[ContactPatch],
        events: &[NewEvent],
    ) -> StoreResult<u64>;

    async fn get_contact(&self, session_id: Uuid, jid: &str) -> StoreResult<Option<ContactRow>>;

    /// The reactions to one message, oldest first.
    async fn list_reactions(&self, session_id: Uuid, msg_id: &str)
    -> StoreResult<Vec<ReactionRow>>;

    async fn message_marks(
        &self,
        session_id: Uuid,
        msg_id: &str,
    ) -> StoreResult<Option<MessageMarks>>;
}

/// Every writing transaction starts with `begin_write` (`store::fence`): `BEGIN IMMEDIATE` on
/// SQLite (a transaction that reads first would fail with `SQLITE_BUSY_SNAPSHOT` when another
/// connection wrote in between) and the session's fence check.
macro_rules! impl_event_store {
    ($store:ty, $db:ty) => {
        impl $store {
            /// Appends `events` to the outbox inside `tx`, in order.
            async fn append_outbox_events(
                tx: &mut sqlx::Transaction<'_, $db>,
                session_id: uuid::Uuid,
                events: &[$crate::store::events::NewEvent],
            ) -> Result<(), sqlx::Error> {
                for e in events {
                    Self::append_outbox_row(tx, session_id, e.name, &e.payload).await?;
                }
                Ok(())
            }

            /// The stored message `msg_id` and whether `change` may alter it.
            async fn change_target(
                tx: &mut sqlx::Transaction<'_, $db>,
                session_id: uuid::Uuid,
                change: &$crate::store::events::MessageChange,
                group_admins_too: bool,
            ) -> Result<Option<(bool, $crate::store::events::MessageMarks)>, sqlx::Error> {
                let row: Option<(bool, Option<String>, Option<i64>, Option<i64>)> =
                    sqlx::query_as::<$db, (bool, Option<String>, Option<i64>, Option<i64>)>(
                        "SELECT from_me, sender_jid, edited_at, deleted_at FROM messages \
                         WHERE session_id = $1 AND msg_id = $2 LIMIT 1",
                    )
                    .bind(session_id)
                    .bind(&change.msg_id)
                    .fetch_optional(&mut **tx)
                    .await?;
                Ok(row.map(|(from_me, sender, edited_at, deleted_at)| {
                    let same_sender = if change.from_me {
                        from_me
                    } else {
                        !from_me
                            && sender.as_deref().is_some_and(|s| {
                                s == change.sender_jid || Some(s) == change.sender_pn.as_deref()
                            })
                    };
                    let allowed = same_sender || (group_admins_too && change.is_group);
                    (allowed, $crate::store::events::MessageMarks { edited_at, deleted_at })
                }))
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::events::EventStore for $store {
            async fn record_events(
                &self,
                session_id: uuid::Uuid,
                events: &[$crate::store::events::NewEvent],
            ) -> $crate::store::StoreResult<()> {
                // Group-committed with the other calls in flight (`store::group_commit`).
                let (done, answer) = tokio::sync::oneshot::channel();
                let append = $crate::store::group_commit::Append {
                    session_id,
                    events: events.to_vec(),
                    done,
                };
                if self.appender.send(append).is_err() {
                    return Err($crate::store::StoreError::Unavailable(
                        "the outbox writer has stopped".into(),
                    ));
                }
                answer.await.unwrap_or_else(|_| {
                    Err($crate::store::StoreError::Unavailable(
                        "the outbox writer has stopped".into(),
                    ))
                })
            }

            async fn record_receipt(
                &self,
                session_id: uuid::Uuid,
                ids: &[String],
                status: &str,
                events: &[$crate::store::events::NewEvent],
            ) -> $crate::store::StoreResult<u64> {
                let q = |e| $crate::store::StoreError::from_sqlx(e, || "conflict".to_string());
                let rank = $crate::store::events::status_rank(status);
                let mut tx = self.begin_write(session_id).await?;
                let mut changed = 0;
                for id in ids {
                    changed += sqlx::query::<$db>(
                        "UPDATE messages SET status = $3 WHERE session_id = $1 AND msg_id = $2 AND \
                         (CASE status WHEN 'sent' THEN 1 WHEN 'delivered' THEN 2 WHEN 'read' THEN 3 \
                          WHEN 'played' THEN 4 ELSE 0 END) < $4",
                    )
                    .bind(session_id)
                    .bind(id)
                    .bind(status)
                    .bind(rank)
                    .execute(&mut *tx)
                    .await
                    .map_err(q)?
                    .rows_affected();
                }
                Self::append_outbox_events(&mut tx, session_id, events).await.map_err(q)?;
                tx.commit().await.map_err(q)?;
                self.outbox_appended();
                Ok(changed)
            }

            async fn record_reaction(
                &self,
                session_id: uuid::Uuid,
                r: &$crate::store::events::ReactionRow,
                events: &[$crate::store::events::NewEvent],
            ) -> $crate::store::StoreResult<bool> {
                let q = |e| $crate::store::StoreError::from_sqlx(e, || "conflict".to_string());
                let mut tx = self.begin_write(session_id).await?;
                let changed = if r.emoji.is_empty() {
                    sqlx::query::<$db>(
                        "DELETE FROM message_reactions WHERE session_id = $1 AND chat_jid = $2 \
                         AND msg_id = $3 AND sender_jid = $4 AND timestamp <= $5",
                    )
                    .bind(session_id)
                    .bind(&r.chat_jid)
                    .bind(&r.msg_id)
                    .bind(&r.sender_jid)
                    .bind(r.timestamp)
                    .execute(&mut *tx)
                    .await
                    .map_err(q)?
                    .rows_affected()
                } else {
                    sqlx::query::<$db>(
                        "INSERT INTO message_reactions (session_id, chat_jid, msg_id, sender_jid, emoji, timestamp) \
                         VALUES ($1, $2, $3, $4, $5, $6) \
                         ON CONFLICT (session_id, chat_jid, msg_id, sender_jid) DO UPDATE SET \
                           emoji = excluded.emoji, timestamp = excluded.timestamp \
                         WHERE message_reactions.timestamp < excluded.timestamp",
                    )
                    .bind(session_id)
                    .bind(&r.chat_jid)
                    .bind(&r.msg_id)
                    .bind(&r.sender_jid)
                    .bind(&r.emoji)
                    .bind(r.timestamp)
                    .execute(&mut *tx)
                    .await
                    .map_err(q)?
                    .rows_affected()
                };
                if changed == 0 {
                    return Ok(false);
                }
                Self::append_outbox_events(&mut tx, session_id, events).await.map_err(q)?;
                tx.commit().await.map_err(q)?;
                self.outbox_appended();
                Ok(true)
            }

            async fn record_edit(
                &self,
                session_id: uuid::Uuid,
                change: &$crate::store::events::MessageChange,
                content: Option<&str>,
                events: &[$crate::store::events::NewEvent],
            ) -> $crate::store::StoreResult<bool> {
                let q = |e| $crate::store::StoreError::from_sqlx(e, || "conflict".to_string());
                let mut tx = self.begin_write(session_id).await?;
                match Self::change_target(&mut tx, session_id, change, false).await.map_err(q)? {
                    Some((false, _)) => return Ok(false),
                    Some((true, marks))
                        if marks.deleted_at.is_some()
                            || marks.edited_at.is_some_and(|t| t >= change.at_ms) =>
                    {
                        return Ok(false);
                    }
                    Some((true, _)) => {
                        sqlx::query::<$db>(
                            "UPDATE messages SET content = $3, edited_at = $4 \
                             WHERE session_id = $1 AND msg_id = $2",
                        )
                        .bind(session_id)
                        .bind(&change.msg_id)
                        .bind(content)
                        .bind(change.at_ms)
                        .execute(&mut *tx)
                        .await
                        .map_err(q)?;
                    }
                    None => {}
                }
                Self::append_outbox_events(&mut tx, session_id, events).await.map_err(q)?;
                tx.commit().await.map_err(q)?;
                self.outbox_appended();
                Ok(true)
            }

            async fn record_revoke(
                &self,
                session_id: uuid::Uuid,
                change: &$crate::store::events::MessageChange,
                events: &[$crate::store::events::NewEvent],
            ) -> $crate::store::StoreResult<bool> {
                let q = |e| $crate::store::StoreError::from_sqlx(e, || "conflict".to_string());
                let mut tx = self.begin_write(session_id).await?;
                match Self::change_target(&mut tx, session_id, change, true).await.map_err(q)? {
                    Some((false, _)) => return Ok(false),
                    Some((true, marks)) if marks.deleted_at.is_some() => return Ok(false),
                    Some((true, _)) => {
                        sqlx::query::<$db>(
                            "UPDATE messages SET deleted_at = $3 WHERE session_id = $1 AND msg_id = $2",
                        )
                        .bind(session_id)
                        .bind(&change.msg_id)
                        .bind(change.at_ms)
                        .execute(&mut *tx)
                        .await
                        .map_err(q)?;
                    }
                    None => {}
                }
                Self::append_outbox_events(&mut tx, session_id, events).await.map_err(q)?;
                tx.commit().await.map_err(q)?;
                self.outbox_appended();
                Ok(true)
            }

            async fn record_contact(
                &self,
                session_id: uuid::Uuid,
                c: &$crate::store::events::ContactPatch,
                events: &[$crate::store::events::NewEvent],
            ) -> $crate::store::StoreResult<()> {
                let q = |e| $crate::store::StoreError::from_sqlx(e, || "conflict".to_string());
                let mut tx = self.begin_write(session_id).await?;
                sqlx::query::<$db>(
                    "INSERT INTO contacts (session_id, jid, push_name, full_name, first_name, business_name, \
                     about, picture_id, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     ON CONFLICT (session_id, jid) DO UPDATE SET \
                       push_name = COALESCE(excluded.push_name, contacts.push_name), \
                       full_name = COALESCE(excluded.full_name, contacts.full_name), \
                       first_name = COALESCE(excluded.first_name, contacts.first_name), \
                       business_name = COALESCE(excluded.business_name, contacts.business_name), \
                       about = COALESCE(excluded.about, contacts.about), \
                       picture_id = CASE WHEN $10 THEN NULL \
                         ELSE COALESCE(excluded.picture_id, contacts.picture_id) END, \
                       updated_at = excluded.updated_at",
                )
                .bind(session_id)
                .bind(&c.jid)
                .bind(c.push_name.as_deref())
                .bind(c.full_name.as_deref())
                .bind(c.first_name.as_deref())
                .bind(c.business_name.as_deref())
                .bind(c.about.as_deref())
                .bind(c.picture_id.as_deref())
                .bind(chrono::Utc::now().timestamp())
                .bind(c.picture_removed)
                .execute(&mut *tx)
                .await
                .map_err(q)?;
                Self::append_outbox_events(&mut tx, session_id, events).await.map_err(q)?;
                tx.commit().await.map_err(q)?;
                self.outbox_appended();
                Ok(())
            }

            async fn record_push_name(
                &self,
                session_id: uuid::Uuid,
                jid: &str,
                push_name: &str,
                payload: $crate::store::events::PushNamePayload<'_>,
            ) -> $crate::store::StoreResult<bool> {
                let q = |e| $crate::store::StoreError::from_sqlx(e, || "conflict".to_string());
                let mut tx = self.begin_write(session_id).await?;
                let old: Option<(Option<String>,)> = sqlx::query_as::<$db, (Option<String>,)>(
                    "SELECT push_name FROM contacts WHERE session_id = $1 AND jid = $2",
                )
                .bind(session_id)
                .bind(jid)
                .fetch_optional(&mut *tx)
                .await
                .map_err(q)?;
                let old = old.and_then(|(n,)| n);
                if old.as_deref() == Some(push_name) {
                    return Ok(false);
                }
                sqlx::query::<$db>(
                    "INSERT INTO contacts (session_id, jid, push_name, updated_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (session_id, jid) DO UPDATE SET push_name = excluded.push_name, \
                       updated_at = excluded.updated_at",
                )
                .bind(session_id)
                .bind(jid)
                .bind(push_name)
                .bind(chrono::Utc::now().timestamp())
                .execute(&mut *tx)
                .await
                .map_err(q)?;
                let event = $crate::store::events::NewEvent {
                    name: "contact.push_name",
                    payload: payload(old.as_deref()),
                };
                Self::append_outbox_events(&mut tx, session_id, std::slice::from_ref(&event))
                    .await
                    .map_err(q)?;
                tx.commit().await.map_err(q)?;
                self.outbox_appended();
                Ok(true)
            }

            async fn record_history(
                &self,
                session_id: uuid::Uuid,
                chats: &[$crate::store::chat::ChatRow],
                messages: &[$crate::store::chat::MessageRow],
                contacts: &[$crate::store::events::ContactPatch],
                events: &[$crate::store::events::NewEvent],
            ) -> $crate::store::StoreResult<u64> {
                let q = |e| $crate::store::StoreError::from_sqlx(e, || "conflict".to_string());
                let mut tx = self.begin_write(session_id).await?;
                for c in chats {
                    sqlx::query::<$db>(
                        "INSERT INTO chats (session_id, jid, name, unread_count, marked_as_unread, \
                         conversation_timestamp) VALUES ($1, $2, $3, $4, $5, $6) \
                         ON CONFLICT (session_id, jid) DO UPDATE SET \
                           name = COALESCE(excluded.name, chats.name), \
                           unread_count = excluded.unread_count, \
                           marked_as_unread = excluded.marked_as_unread, \
                           conversation_timestamp = CASE \
                             WHEN chats.conversation_timestamp IS NULL \
                               OR chats.conversation_timestamp < excluded.conversation_timestamp \
                             THEN excluded.conversation_timestamp \
                             ELSE chats.conversation_timestamp END",
                    )
                    .bind(session_id)
                    .bind(&c.jid)
                    .bind(c.name.as_deref())
                    .bind(c.unread_count)
                    .bind(c.marked_as_unread)
                    .bind(c.conversation_timestamp)
                    .execute(&mut *tx)
                    .await
                    .map_err(q)?;
                }
                let mut new = 0;
                for m in messages {
                    new += Self::insert_message_row(&mut tx, session_id, m)
                        .await
                        .map_err(q)?;
                }
                for c in contacts.iter().filter(|c| c.push_name.is_some()) {
                    sqlx::query::<$db>(
                        "INSERT INTO contacts (session_id, jid, push_name, updated_at) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (session_id, jid) DO UPDATE SET push_name = excluded.push_name, \
                           updated_at = excluded.updated_at",
                    )
                    .bind(session_id)
                    .bind(&c.jid)
                    .bind(c.push_name.as_deref())
                    .bind(chrono::Utc::now().timestamp())
                    .execute(&mut *tx)
                    .await
                    .map_err(q)?;
                }
                Self::append_outbox_events(&mut tx, session_id, events).await.map_err(q)?;
                tx.commit().await.map_err(q)?;
                self.outbox_appended();
                Ok(new)
            }

            async fn get_contact(
                &self,
                session_id: uuid::Uuid,
                jid: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::events::ContactRow>> {
                sqlx::query_as::<$db, $crate::store::events::ContactRow>(
                    "SELECT jid, push_name, full_name, first_name, business_name, about, picture_id, \
                     updated_at FROM contacts WHERE session_id = $1 AND jid = $2",
                )
                .bind(session_id)
                .bind(jid)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| $crate::store::StoreError::from_sqlx(e, String::new))
            }

            async fn list_reactions(
                &self,
                session_id: uuid::Uuid,
                msg_id: &str,
            ) -> $crate::store::StoreResult<Vec<$crate::store::events::ReactionRow>> {
                sqlx::query_as::<$db, $crate::store::events::ReactionRow>(
                    "SELECT chat_jid, msg_id, sender_jid, emoji, timestamp FROM message_reactions \
                     WHERE session_id = $1 AND msg_id = $2 ORDER BY timestamp, sender_jid",
                )
                .bind(session_id)
                .bind(msg_id)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| $crate::store::StoreError::from_sqlx(e, String::new))
            }

            async fn message_marks(
                &self,
                session_id: uuid::Uuid,
                msg_id: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::events::MessageMarks>> {
                sqlx::query_as::<$db, $crate::store::events::MessageMarks>(
                    "SELECT edited_at, deleted_at FROM messages WHERE session_id = $1 AND msg_id = $2 LIMIT 1",
                )
                .bind(session_id)
                .bind(msg_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| $crate::store::StoreError::from_sqlx(e, String::new))
            }
        }
    };
}

pub(crate) use impl_event_store;

/// Nothing here is cached: the cache forwards every call.
#[async_trait]
impl EventStore for super::CachedStore {
    async fn record_events(&self, session_id: Uuid, events: &[NewEvent]) -> StoreResult<()> {
        self.inner().record_events(session_id, events).await
    }

    async fn record_receipt(
        &self,
        session_id: Uuid,
        ids: &[String],
        status: &str,
        events: &[NewEvent],
    ) -> StoreResult<u64> {
        self.inner()
            .record_receipt(session_id, ids, status, events)
            .await
    }

    async fn record_reaction(
        &self,
        session_id: Uuid,
        reaction: &ReactionRow,
        events: &[NewEvent],
    ) -> StoreResult<bool> {
        self.inner()
            .record_reaction(session_id, reaction, events)
            .await
    }

    async fn record_edit(
        &self,
        session_id: Uuid,
        change: &MessageChange,
        content: Option<&str>,
        events: &[NewEvent],
    ) -> StoreResult<bool> {
        self.inner()
            .record_edit(session_id, change, content, events)
            .await
    }

    async fn record_revoke(
        &self,
        session_id: Uuid,
        change: &MessageChange,
        events: &[NewEvent],
    ) -> StoreResult<bool> {
        self.inner().record_revoke(session_id, change, events).await
    }

    async fn record_contact(
        &self,
        session_id: Uuid,
        patch: &ContactPatch,
        events: &[NewEvent],
    ) -> StoreResult<()> {
        self.inner().record_contact(session_id, patch, events).await
    }

    async fn record_push_name(
        &self,
        session_id: Uuid,
        jid: &str,
        push_name: &str,
        payload: PushNamePayload<'_>,
    ) -> StoreResult<bool> {
        self.inner()
            .record_push_name(session_id, jid, push_name, payload)
            .await
    }

    async fn record_history(
        &self,
        session_id: Uuid,
        chats: &[super::chat::ChatRow],
        messages: &[super::chat::MessageRow],
        contacts: &[ContactPatch],
        events: &[NewEvent],
    ) -> StoreResult<u64> {
        self.inner()
            .record_history(session_id, chats, messages, contacts, events)
            .await
    }

    async fn get_contact(&self, session_id: Uuid, jid: &str) -> StoreResult<Option<ContactRow>> {
        self.inner().get_contact(session_id, jid).await
    }

    async fn list_reactions(
        &self,
        session_id: Uuid,
        msg_id: &str,
    ) -> StoreResult<Vec<ReactionRow>> {
        self.inner().list_reactions(session_id, msg_id).await
    }

    async fn message_marks(
        &self,
        session_id: Uuid,
        msg_id: &str,
    ) -> StoreResult<Option<MessageMarks>> {
        self.inner().message_marks(session_id, msg_id).await
    }
}
