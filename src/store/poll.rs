//! Polls a session sent or received, kept for voting on them later: the creator, the options
//! and the poll's message secret (a vote is encrypted with a key derived from it).

use async_trait::async_trait;
use uuid::Uuid;

use super::{StoreResult, cache::CachedStore};

/// One poll, keyed by its chat and message id.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PollRow {
    /// Non-AD JID of the chat the poll was sent in.
    pub chat_jid: String,
    pub msg_id: String,
    /// Non-AD JID of the poll's author.
    pub creator_jid: String,
    pub name: String,
    /// JSON array of the option names, in order.
    pub options: String,
    /// How many options a vote may choose; 0 means any number.
    pub selectable_count: i32,
    /// The poll's `messageSecret` (32 bytes).
    pub secret: Vec<u8>,
}

impl PollRow {
    /// The option names (empty when the stored JSON is unreadable).
    pub fn option_names(&self) -> Vec<String> {
        serde_json::from_str(&self.options).unwrap_or_default()
    }
}

/// The latest vote of one voter on a poll, decrypted.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PollVoteRow {
    pub chat_jid: String,
    pub poll_msg_id: String,
    /// Non-AD JID of the voter (their phone JID when known).
    pub voter_jid: String,
    /// JSON array of the chosen option names (`[]`: the vote was withdrawn).
    pub options: String,
    pub vote_msg_id: String,
    /// Unix seconds.
    pub voted_at: i64,
}

#[async_trait]
pub trait PollStore: Send + Sync {
    /// Stores the poll; a poll stored before is kept as it was.
    async fn save_poll(&self, session_id: Uuid, poll: &PollRow) -> StoreResult<()>;
    async fn get_poll(
        &self,
        session_id: Uuid,
        chat_jid: &str,
        msg_id: &str,
    ) -> StoreResult<Option<PollRow>>;
    /// Keeps the voter's vote unless a later one of theirs is stored already.
    async fn save_poll_vote(&self, session_id: Uuid, vote: &PollVoteRow) -> StoreResult<()>;
    /// The latest vote of every voter on a poll, by voter.
    async fn poll_votes(
        &self,
        session_id: Uuid,
        chat_jid: &str,
        poll_msg_id: &str,
    ) -> StoreResult<Vec<PollVoteRow>>;
}

macro_rules! impl_poll_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::poll::PollStore for $store {
            async fn save_poll(
                &self,
                session_id: uuid::Uuid,
                p: &$crate::store::poll::PollRow,
            ) -> $crate::store::StoreResult<()> {
                let q = |e| $crate::store::StoreError::from_sqlx(e, String::new);
                let mut tx = self.begin_write(session_id).await?;
                sqlx::query::<$db>(
                    "INSERT INTO polls (session_id, chat_jid, msg_id, creator_jid, name, options, \
                     selectable_count, secret, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     ON CONFLICT (session_id, chat_jid, msg_id) DO NOTHING",
                )
                .bind(session_id)
                .bind(&p.chat_jid)
                .bind(&p.msg_id)
                .bind(&p.creator_jid)
                .bind(&p.name)
                .bind(&p.options)
                .bind(p.selectable_count)
                .bind(&p.secret)
                .bind($crate::store::sql::now())
                .execute(&mut *tx)
                .await
                .map_err(q)?;
                tx.commit().await.map_err(q)
            }

            async fn get_poll(
                &self,
                session_id: uuid::Uuid,
                chat_jid: &str,
                msg_id: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::poll::PollRow>> {
                sqlx::query_as::<$db, $crate::store::poll::PollRow>(
                    "SELECT chat_jid, msg_id, creator_jid, name, options, selectable_count, secret \
                     FROM polls WHERE session_id = $1 AND chat_jid = $2 AND msg_id = $3",
                )
                .bind(session_id)
                .bind(chat_jid)
                .bind(msg_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| $crate::store::StoreError::from_sqlx(e, String::new))
            }

            async fn save_poll_vote(
                &self,
                session_id: uuid::Uuid,
                v: &$crate::store::poll::PollVoteRow,
            ) -> $crate::store::StoreResult<()> {
                let q = |e| $crate::store::StoreError::from_sqlx(e, String::new);
                let mut tx = self.begin_write(session_id).await?;
                sqlx::query::<$db>(
                    "INSERT INTO poll_votes (session_id, chat_jid, poll_msg_id, voter_jid, options, \
                     vote_msg_id, voted_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (session_id, chat_jid, poll_msg_id, voter_jid) DO UPDATE SET \
                       options = excluded.options, vote_msg_id = excluded.vote_msg_id, \
                       voted_at = excluded.voted_at \
                     WHERE poll_votes.voted_at <= excluded.voted_at",
                )
                .bind(session_id)
                .bind(&v.chat_jid)
                .bind(&v.poll_msg_id)
                .bind(&v.voter_jid)
                .bind(&v.options)
                .bind(&v.vote_msg_id)
                .bind(v.voted_at)
                .execute(&mut *tx)
                .await
                .map_err(q)?;
                tx.commit().await.map_err(q)
            }

            async fn poll_votes(
                &self,
                session_id: uuid::Uuid,
                chat_jid: &str,
                poll_msg_id: &str,
            ) -> $crate::store::StoreResult<Vec<$crate::store::poll::PollVoteRow>> {
                sqlx::query_as::<$db, $crate::store::poll::PollVoteRow>(
                    "SELECT chat_jid, poll_msg_id, voter_jid, options, vote_msg_id, voted_at \
                     FROM poll_votes WHERE session_id = $1 AND chat_jid = $2 AND poll_msg_id = $3 \
                     ORDER BY voter_jid",
                )
                .bind(session_id)
                .bind(chat_jid)
                .bind(poll_msg_id)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| $crate::store::StoreError::from_sqlx(e, String::new))
            }
        }
    };
}

pub(crate) use impl_poll_store;

#[async_trait]
impl PollStore for CachedStore {
    async fn save_poll(&self, session_id: Uuid, poll: &PollRow) -> StoreResult<()> {
        self.inner().save_poll(session_id, poll).await
    }

    async fn get_poll(
        &self,
        session_id: Uuid,
        chat_jid: &str,
        msg_id: &str,
    ) -> StoreResult<Option<PollRow>> {
        self.inner().get_poll(session_id, chat_jid, msg_id).await
    }

    async fn save_poll_vote(&self, session_id: Uuid, vote: &PollVoteRow) -> StoreResult<()> {
        self.inner().save_poll_vote(session_id, vote).await
    }

    async fn poll_votes(
        &self,
        session_id: Uuid,
        chat_jid: &str,
        poll_msg_id: &str,
    ) -> StoreResult<Vec<PollVoteRow>> {
        self.inner()
            .poll_votes(session_id, chat_jid, poll_msg_id)
            .await
    }
}
