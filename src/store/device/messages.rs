//! The per-message rows of `ProtocolStore`: trusted-contact tokens, sent messages kept for
//! retries and the pending inbound buffer. Each write that must be atomic is one statement.

macro_rules! impl_message_rows {
    ($db:ty) => {
        mod wa_message_rows {
            use sqlx::QueryBuilder;
            use wacore::store::traits::{PendingInboundKey, PendingInboundRow, TcTokenEntry};

            use $crate::store::device::{
                DeviceBackend,
                codec::{CHUNK, WaResult, count, db, last_wins},
            };

            type Db = $db;

            impl DeviceBackend<Db> {
                pub(crate) async fn tc_get(&self, jid: &str) -> WaResult<Option<TcTokenEntry>> {
                    let row = sqlx::query_as::<Db, (Vec<u8>, i64, Option<i64>)>(
                        "SELECT token, token_timestamp, sender_timestamp FROM wa_tc_tokens \
                         WHERE session_id = $1 AND jid = $2",
                    )
                    .bind(self.session_id)
                    .bind(jid)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db)?;
                    Ok(row.map(|(token, token_timestamp, sender_timestamp)| TcTokenEntry {
                        token,
                        token_timestamp,
                        sender_timestamp,
                    }))
                }

                pub(crate) async fn tc_put(&self, jid: &str, e: &TcTokenEntry) -> WaResult<()> {
                    self.write(sqlx::query::<Db>(
                        "INSERT INTO wa_tc_tokens \
                           (session_id, jid, token, token_timestamp, sender_timestamp) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (session_id, jid) DO UPDATE SET \
                           token = excluded.token, token_timestamp = excluded.token_timestamp, \
                           sender_timestamp = excluded.sender_timestamp",
                    )
                    .bind(self.session_id)
                    .bind(jid)
                    .bind(&e.token)
                    .bind(e.token_timestamp)
                    .bind(e.sender_timestamp))
                    .await
                    .map(|_| ())
                }

                pub(crate) async fn tc_jids(&self) -> WaResult<Vec<String>> {
                    sqlx::query_scalar::<Db, String>(
                        "SELECT jid FROM wa_tc_tokens WHERE session_id = $1 ORDER BY jid",
                    )
                    .bind(self.session_id)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db)
                }

                /// Deletes a row only when both its received token and its sender bucket are
                /// stale or absent.
                pub(crate) async fn tc_delete_expired(
                    &self,
                    token_cutoff: i64,
                    sender_cutoff: i64,
                ) -> WaResult<u32> {
                    let r = self.write(sqlx::query::<Db>(
                        "DELETE FROM wa_tc_tokens WHERE session_id = $1 \
                         AND (COALESCE(length(token), 0) = 0 OR token_timestamp < $2) \
                         AND (sender_timestamp IS NULL OR sender_timestamp < $3)",
                    )
                    .bind(self.session_id)
                    .bind(token_cutoff)
                    .bind(sender_cutoff))
                    .await?;
                    Ok(count(r))
                }

                /// Advances the sender bucket (never backwards), inserting a token-less row
                /// when there is none; the token is left alone.
                pub(crate) async fn tc_touch_sender(&self, jid: &str, at: i64) -> WaResult<()> {
                    self.write(sqlx::query::<Db>(
                        "INSERT INTO wa_tc_tokens \
                           (session_id, jid, token, token_timestamp, sender_timestamp) \
                         VALUES ($1, $2, $3, $4, $4) ON CONFLICT (session_id, jid) DO UPDATE SET \
                           sender_timestamp = CASE \
                             WHEN wa_tc_tokens.sender_timestamp IS NULL \
                               OR wa_tc_tokens.sender_timestamp < excluded.sender_timestamp \
                             THEN excluded.sender_timestamp \
                             ELSE wa_tc_tokens.sender_timestamp END",
                    )
                    .bind(self.session_id)
                    .bind(jid)
                    .bind(&[] as &[u8])
                    .bind(at))
                    .await
                    .map(|_| ())
                }

                /// Stores a received token unless a real token at least as new is there (newer
                /// wins; a placeholder never blocks); the sender bucket is left alone.
                pub(crate) async fn tc_store_received(
                    &self,
                    jid: &str,
                    token: &[u8],
                    at: i64,
                ) -> WaResult<()> {
                    self.write(sqlx::query::<Db>(
                        "INSERT INTO wa_tc_tokens (session_id, jid, token, token_timestamp) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (session_id, jid) DO UPDATE SET \
                           token = excluded.token, token_timestamp = excluded.token_timestamp \
                         WHERE COALESCE(length(wa_tc_tokens.token), 0) = 0 \
                           OR excluded.token_timestamp >= wa_tc_tokens.token_timestamp",
                    )
                    .bind(self.session_id)
                    .bind(jid)
                    .bind(token)
                    .bind(at))
                    .await
                    .map(|_| ())
                }

                pub(crate) async fn sent_store(
                    &self,
                    chat_jid: &str,
                    message_id: &str,
                    payload: &[u8],
                ) -> WaResult<()> {
                    self.write(sqlx::query::<Db>(
                        "INSERT INTO wa_sent_messages \
                           (session_id, chat_jid, message_id, payload, created_at) \
                         VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (session_id, chat_jid, message_id) DO UPDATE SET \
                           payload = excluded.payload, created_at = excluded.created_at",
                    )
                    .bind(self.session_id)
                    .bind(chat_jid)
                    .bind(message_id)
                    .bind(payload)
                    .bind(wacore::time::now_secs()))
                    .await
                    .map(|_| ())
                }

                /// Reads and deletes in one statement, so a retry receipt consumes it once.
                pub(crate) async fn sent_take(
                    &self,
                    chat_jid: &str,
                    message_id: &str,
                ) -> WaResult<Option<Vec<u8>>> {
                    let mut tx = self.begin_write().await?;
                    let payload = sqlx::query_scalar::<Db, Vec<u8>>(
                        "DELETE FROM wa_sent_messages \
                         WHERE session_id = $1 AND chat_jid = $2 AND message_id = $3 \
                         RETURNING payload",
                    )
                    .bind(self.session_id)
                    .bind(chat_jid)
                    .bind(message_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?;
                    tx.commit().await.map_err(db)?;
                    Ok(payload)
                }

                pub(crate) async fn sent_delete_expired(&self, cutoff: i64) -> WaResult<u32> {
                    self.delete_older("wa_sent_messages", "created_at", cutoff).await
                }

                pub(crate) async fn inbound_store(
                    &self,
                    rows: &[PendingInboundRow<'_>],
                ) -> WaResult<()> {
                    let rows = last_wins(rows, |r| (r.chat, r.sender, r.id));
                    let now = wacore::time::now_secs();
                    let stmts = rows
                        .chunks(CHUNK)
                        .map(|chunk| {
                            let mut qb = QueryBuilder::<Db>::new(
                                "INSERT INTO wa_pending_inbound \
                                 (session_id, chat, sender, id, message, inserted_at) ",
                            );
                            qb.push_values(chunk, |mut b, r| {
                                b.push_bind(self.session_id)
                                    .push_bind(r.chat)
                                    .push_bind(r.sender)
                                    .push_bind(r.id)
                                    .push_bind(r.message)
                                    .push_bind(now);
                            });
                            qb.push(
                                " ON CONFLICT (session_id, chat, sender, id) DO UPDATE SET \
                                 message = excluded.message, inserted_at = excluded.inserted_at",
                            );
                            qb
                        })
                        .collect();
                    self.exec_all(stmts).await.map(|_| ())
                }

                pub(crate) async fn inbound_get(
                    &self,
                    chat: &str,
                    sender: &str,
                    id: &str,
                ) -> WaResult<Option<Vec<u8>>> {
                    sqlx::query_scalar::<Db, Vec<u8>>(
                        "SELECT message FROM wa_pending_inbound \
                         WHERE session_id = $1 AND chat = $2 AND sender = $3 AND id = $4",
                    )
                    .bind(self.session_id)
                    .bind(chat)
                    .bind(sender)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db)
                }

                pub(crate) async fn inbound_delete(
                    &self,
                    keys: &[PendingInboundKey<'_>],
                ) -> WaResult<()> {
                    let stmts = keys
                        .chunks(CHUNK)
                        .map(|chunk| {
                            let mut qb = QueryBuilder::<Db>::new(
                                "DELETE FROM wa_pending_inbound WHERE session_id = ",
                            );
                            qb.push_bind(self.session_id).push(" AND (");
                            let mut any = qb.separated(" OR ");
                            for k in chunk {
                                any.push("(chat = ")
                                    .push_bind_unseparated(k.chat)
                                    .push_unseparated(" AND sender = ")
                                    .push_bind_unseparated(k.sender)
                                    .push_unseparated(" AND id = ")
                                    .push_bind_unseparated(k.id)
                                    .push_unseparated(")");
                            }
                            qb.push(")");
                            qb
                        })
                        .collect();
                    self.exec_all(stmts).await.map(|_| ())
                }

                pub(crate) async fn inbound_delete_expired(&self, cutoff: i64) -> WaResult<u32> {
                    self.delete_older("wa_pending_inbound", "inserted_at", cutoff).await
                }

                /// Deletes the session's rows of `table` whose `col` is before `cutoff`.
                async fn delete_older(&self, table: &str, col: &str, cutoff: i64) -> WaResult<u32> {
                    let r = self.write(sqlx::query::<Db>(sqlx::AssertSqlSafe(format!(
                        "DELETE FROM {table} WHERE session_id = $1 AND {col} < $2"
                    )))
                    .bind(self.session_id)
                    .bind(cutoff))
                    .await?;
                    Ok(count(r))
                }
            }
        }
    };
}

pub(crate) use impl_message_rows;
