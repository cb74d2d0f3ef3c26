//! `MsgSecretStore`: the secrets of messages (for replies, reactions, poll votes, edits), with
//! an expiry deadline (0: never) and the parent message's time.

macro_rules! impl_msg_secret_store {
    ($db:ty) => {
        mod wa_msg_secret_store {
            use async_trait::async_trait;
            use sqlx::QueryBuilder;
            use wacore::store::traits::{MsgSecretEntry, MsgSecretStore};

            use $crate::store::device::{
                DeviceBackend,
                codec::{CHUNK, WaResult, count, db, merge_msg_secrets},
            };

            type Db = $db;

            #[async_trait]
            impl MsgSecretStore for DeviceBackend<Db> {
                /// Counts the entries given, like the reference.
                async fn put_msg_secrets(&self, entries: Vec<MsgSecretEntry>) -> WaResult<usize> {
                    let given = entries.len();
                    let rows = merge_msg_secrets(entries);
                    let stmts = rows
                        .chunks(CHUNK)
                        .map(|chunk| {
                            let mut qb = QueryBuilder::<Db>::new(
                                "INSERT INTO wa_msg_secrets \
                                 (session_id, chat, sender, msg_id, secret, expires_at, message_ts) ",
                            );
                            qb.push_values(chunk, |mut b, e| {
                                b.push_bind(self.session_id)
                                    .push_bind(e.chat.as_ref())
                                    .push_bind(e.sender.as_ref())
                                    .push_bind(e.msg_id.as_ref())
                                    .push_bind(e.secret.as_slice())
                                    .push_bind(e.expires_at)
                                    .push_bind(e.message_ts);
                            });
                            // The merge rules of merge_msg_secret_expiry (0 = never wins, else
                            // the later deadline) and merge_msg_secret_message_ts (the later).
                            qb.push(
                                " ON CONFLICT (session_id, chat, sender, msg_id) DO UPDATE SET \
                                 secret = excluded.secret, \
                                 expires_at = CASE \
                                   WHEN wa_msg_secrets.expires_at = 0 OR excluded.expires_at = 0 THEN 0 \
                                   WHEN excluded.expires_at > wa_msg_secrets.expires_at \
                                     THEN excluded.expires_at \
                                   ELSE wa_msg_secrets.expires_at END, \
                                 message_ts = CASE \
                                   WHEN excluded.message_ts > wa_msg_secrets.message_ts \
                                     THEN excluded.message_ts \
                                   ELSE wa_msg_secrets.message_ts END",
                            );
                            qb
                        })
                        .collect();
                    self.exec_all(stmts).await?;
                    Ok(given)
                }

                async fn get_msg_secret(
                    &self,
                    chat: &str,
                    sender: &str,
                    msg_id: &str,
                ) -> WaResult<Option<Vec<u8>>> {
                    Ok(self
                        .get_msg_secret_with_ts(chat, sender, msg_id)
                        .await?
                        .map(|(secret, _)| secret))
                }

                async fn get_msg_secret_with_ts(
                    &self,
                    chat: &str,
                    sender: &str,
                    msg_id: &str,
                ) -> WaResult<Option<(Vec<u8>, i64)>> {
                    sqlx::query_as::<Db, (Vec<u8>, i64)>(
                        "SELECT secret, message_ts FROM wa_msg_secrets \
                         WHERE session_id = $1 AND chat = $2 AND sender = $3 AND msg_id = $4",
                    )
                    .bind(self.session_id)
                    .bind(chat)
                    .bind(sender)
                    .bind(msg_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db)
                }

                async fn delete_expired_msg_secrets(&self, cutoff_timestamp: i64) -> WaResult<u32> {
                    let r = self.write(sqlx::query::<Db>(
                        "DELETE FROM wa_msg_secrets \
                         WHERE session_id = $1 AND expires_at <> 0 AND expires_at <= $2",
                    )
                    .bind(self.session_id)
                    .bind(cutoff_timestamp))
                    .await?;
                    Ok(count(r))
                }
            }
        }
    };
}

pub(crate) use impl_msg_secret_store;
