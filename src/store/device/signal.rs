//! `SignalStore`: identities, Signal sessions, pre-keys, signed pre-keys, sender keys.

macro_rules! impl_signal_store {
    ($db:ty) => {
        mod wa_signal_store {
            use std::{collections::HashMap, sync::Arc};

            use async_trait::async_trait;
            use bytes::Bytes;
            use sqlx::QueryBuilder;
            use wacore::store::traits::SignalStore;

            use $crate::store::device::{
                DeviceBackend,
                codec::{CHUNK, WaResult, db, fixed, last_wins, narrow},
            };

            type Db = $db;

            impl DeviceBackend<Db> {
                /// Upserts `(key, blob)` rows into a table keyed by `(session_id, key_col)`.
                pub(crate) async fn put_blobs(
                    &self,
                    table: &str,
                    key_col: &str,
                    val_col: &str,
                    rows: &[(&str, &[u8])],
                ) -> WaResult<()> {
                    let rows = last_wins(rows, |r| r.0);
                    let stmts = rows
                        .chunks(CHUNK)
                        .map(|chunk| {
                            let mut qb = QueryBuilder::<Db>::new(format!(
                                "INSERT INTO {table} (session_id, {key_col}, {val_col}) "
                            ));
                            qb.push_values(chunk, |mut b, (k, v)| {
                                b.push_bind(self.session_id).push_bind(*k).push_bind(*v);
                            });
                            qb.push(format!(
                                " ON CONFLICT (session_id, {key_col}) DO UPDATE SET \
                                 {val_col} = excluded.{val_col}"
                            ));
                            qb
                        })
                        .collect();
                    self.exec_all(stmts).await.map(|_| ())
                }

                pub(crate) async fn get_blob(
                    &self,
                    table: &str,
                    key_col: &str,
                    val_col: &str,
                    key: &str,
                ) -> WaResult<Option<Vec<u8>>> {
                    sqlx::query_scalar::<Db, Vec<u8>>(sqlx::AssertSqlSafe(format!(
                        "SELECT {val_col} FROM {table} WHERE session_id = $1 AND {key_col} = $2"
                    )))
                    .bind(self.session_id)
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db)
                }

                pub(crate) async fn delete_keyed(
                    &self,
                    table: &str,
                    key_col: &str,
                    key: &str,
                ) -> WaResult<()> {
                    self.write(sqlx::query::<Db>(sqlx::AssertSqlSafe(format!(
                        "DELETE FROM {table} WHERE session_id = $1 AND {key_col} = $2"
                    )))
                    .bind(self.session_id)
                    .bind(key))
                    .await
                    .map(|_| ())
                }

                async fn put_prekeys(&self, keys: &[(u32, &[u8])], uploaded: bool) -> WaResult<()> {
                    let keys = last_wins(keys, |k| k.0);
                    let stmts = keys
                        .chunks(CHUNK)
                        .map(|chunk| {
                            let mut qb = QueryBuilder::<Db>::new(
                                "INSERT INTO wa_prekeys (session_id, id, record, uploaded) ",
                            );
                            qb.push_values(chunk, |mut b, (id, record)| {
                                b.push_bind(self.session_id)
                                    .push_bind(i64::from(*id))
                                    .push_bind(*record)
                                    .push_bind(uploaded);
                            });
                            qb.push(
                                " ON CONFLICT (session_id, id) DO UPDATE SET \
                                 record = excluded.record, uploaded = excluded.uploaded",
                            );
                            qb
                        })
                        .collect();
                    self.exec_all(stmts).await.map(|_| ())
                }
            }

            #[async_trait]
            impl SignalStore for DeviceBackend<Db> {
                async fn put_identity(&self, address: &str, key: [u8; 32]) -> WaResult<()> {
                    self.put_blobs("wa_identities", "address", "identity_key", &[(address, &key)])
                        .await
                }

                async fn put_identities_batch(
                    &self,
                    identities: &[(Arc<str>, [u8; 32])],
                ) -> WaResult<()> {
                    let rows: Vec<(&str, &[u8])> =
                        identities.iter().map(|(a, k)| (a.as_ref(), k.as_slice())).collect();
                    self.put_blobs("wa_identities", "address", "identity_key", &rows)
                        .await
                }

                async fn load_identity(&self, address: &str) -> WaResult<Option<[u8; 32]>> {
                    self.get_blob("wa_identities", "address", "identity_key", address)
                        .await?
                        .map(|k| fixed("identity key", k))
                        .transpose()
                }

                async fn delete_identity(&self, address: &str) -> WaResult<()> {
                    self.delete_keyed("wa_identities", "address", address).await
                }

                async fn get_session(&self, address: &str) -> WaResult<Option<Bytes>> {
                    Ok(self
                        .get_blob("wa_signal_sessions", "address", "record", address)
                        .await?
                        .map(Bytes::from))
                }

                async fn put_session(&self, address: &str, session: &[u8]) -> WaResult<()> {
                    self.put_blobs("wa_signal_sessions", "address", "record", &[(address, session)])
                        .await
                }

                async fn put_sessions_batch(&self, sessions: &[(Arc<str>, Bytes)]) -> WaResult<()> {
                    let rows: Vec<(&str, &[u8])> =
                        sessions.iter().map(|(a, r)| (a.as_ref(), r.as_ref())).collect();
                    self.put_blobs("wa_signal_sessions", "address", "record", &rows)
                        .await
                }

                async fn delete_session(&self, address: &str) -> WaResult<()> {
                    self.delete_keyed("wa_signal_sessions", "address", address)
                        .await
                }

                async fn has_session(&self, address: &str) -> WaResult<bool> {
                    sqlx::query::<Db>(
                        "SELECT 1 FROM wa_signal_sessions WHERE session_id = $1 AND address = $2",
                    )
                    .bind(self.session_id)
                    .bind(address)
                    .fetch_optional(&self.pool)
                    .await
                    .map(|r| r.is_some())
                    .map_err(db)
                }

                async fn has_signal_state_for_user(&self, user: &str) -> WaResult<bool> {
                    // Addresses are `user@server` (device 0) or `user:device@server`. Compared
                    // as a prefix of exact characters (no LIKE: its wildcards and SQLite's
                    // case folding would widen the match).
                    let len = narrow::<i32>("user length", user.chars().count() as i64 + 1)?;
                    sqlx::query::<Db>(
                        "SELECT 1 FROM wa_signal_sessions WHERE session_id = $1 \
                           AND substr(address, 1, $2) IN ($3, $4) \
                         UNION ALL \
                         SELECT 1 FROM wa_identities WHERE session_id = $1 \
                           AND substr(address, 1, $2) IN ($3, $4) \
                         LIMIT 1",
                    )
                    .bind(self.session_id)
                    .bind(len)
                    .bind(format!("{user}@"))
                    .bind(format!("{user}:"))
                    .fetch_optional(&self.pool)
                    .await
                    .map(|r| r.is_some())
                    .map_err(db)
                }

                async fn store_prekey(&self, id: u32, record: &[u8], uploaded: bool) -> WaResult<()> {
                    self.put_prekeys(&[(id, record)], uploaded).await
                }

                async fn store_prekeys_batch(
                    &self,
                    keys: &[(u32, Bytes)],
                    uploaded: bool,
                ) -> WaResult<()> {
                    let keys: Vec<(u32, &[u8])> =
                        keys.iter().map(|(id, r)| (*id, r.as_ref())).collect();
                    self.put_prekeys(&keys, uploaded).await
                }

                async fn load_prekey(&self, id: u32) -> WaResult<Option<Bytes>> {
                    sqlx::query_scalar::<Db, Vec<u8>>(
                        "SELECT record FROM wa_prekeys WHERE session_id = $1 AND id = $2",
                    )
                    .bind(self.session_id)
                    .bind(i64::from(id))
                    .fetch_optional(&self.pool)
                    .await
                    .map(|r| r.map(Bytes::from))
                    .map_err(db)
                }

                async fn load_prekeys_batch(&self, ids: &[u32]) -> WaResult<Vec<(u32, Bytes)>> {
                    let mut found: HashMap<i64, Bytes> = HashMap::with_capacity(ids.len());
                    for chunk in ids.chunks(CHUNK) {
                        let mut qb = QueryBuilder::<Db>::new(
                            "SELECT id, record FROM wa_prekeys WHERE session_id = ",
                        );
                        qb.push_bind(self.session_id).push(" AND id IN (");
                        let mut list = qb.separated(", ");
                        for id in chunk {
                            list.push_bind(i64::from(*id));
                        }
                        qb.push(")");
                        let rows: Vec<(i64, Vec<u8>)> = qb
                            .build_query_as()
                            .fetch_all(&self.pool)
                            .await
                            .map_err(db)?;
                        found.extend(rows.into_iter().map(|(id, r)| (id, Bytes::from(r))));
                    }
                    // In the order asked, like the reference: only the keys that exist.
                    Ok(ids
                        .iter()
                        .filter_map(|id| found.get(&i64::from(*id)).map(|r| (*id, r.clone())))
                        .collect())
                }

                async fn mark_prekeys_uploaded(&self, ids: &[u32]) -> WaResult<()> {
                    let stmts = ids
                        .chunks(CHUNK)
                        .map(|chunk| {
                            let mut qb =
                                QueryBuilder::<Db>::new("UPDATE wa_prekeys SET uploaded = ");
                            qb.push_bind(true)
                                .push(" WHERE session_id = ")
                                .push_bind(self.session_id)
                                .push(" AND id IN (");
                            let mut list = qb.separated(", ");
                            for id in chunk {
                                list.push_bind(i64::from(*id));
                            }
                            qb.push(")");
                            qb
                        })
                        .collect();
                    self.exec_all(stmts).await.map(|_| ())
                }

                async fn remove_prekey(&self, id: u32) -> WaResult<()> {
                    self.write(sqlx::query::<Db>("DELETE FROM wa_prekeys WHERE session_id = $1 AND id = $2")
                        .bind(self.session_id)
                        .bind(i64::from(id)))
                        .await
                        .map(|_| ())
                }

                async fn get_max_prekey_id(&self) -> WaResult<u32> {
                    let max = sqlx::query_scalar::<Db, i64>(
                        "SELECT id FROM wa_prekeys WHERE session_id = $1 ORDER BY id DESC LIMIT 1",
                    )
                    .bind(self.session_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db)?;
                    narrow("pre-key id", max.unwrap_or(0))
                }

                async fn store_signed_prekey(&self, id: u32, record: &[u8]) -> WaResult<()> {
                    self.write(sqlx::query::<Db>(
                        "INSERT INTO wa_signed_prekeys (session_id, id, record) VALUES ($1, $2, $3) \
                         ON CONFLICT (session_id, id) DO UPDATE SET record = excluded.record",
                    )
                    .bind(self.session_id)
                    .bind(i64::from(id))
                    .bind(record))
                    .await
                    .map(|_| ())
                }

                async fn load_signed_prekey(&self, id: u32) -> WaResult<Option<Vec<u8>>> {
                    sqlx::query_scalar::<Db, Vec<u8>>(
                        "SELECT record FROM wa_signed_prekeys WHERE session_id = $1 AND id = $2",
                    )
                    .bind(self.session_id)
                    .bind(i64::from(id))
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db)
                }

                async fn load_all_signed_prekeys(&self) -> WaResult<Vec<(u32, Vec<u8>)>> {
                    let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as::<Db, (i64, Vec<u8>)>(
                        "SELECT id, record FROM wa_signed_prekeys WHERE session_id = $1 ORDER BY id",
                    )
                    .bind(self.session_id)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db)?;
                    rows.into_iter()
                        .map(|(id, r)| Ok((narrow("signed pre-key id", id)?, r)))
                        .collect()
                }

                async fn remove_signed_prekey(&self, id: u32) -> WaResult<()> {
                    self.write(sqlx::query::<Db>(
                        "DELETE FROM wa_signed_prekeys WHERE session_id = $1 AND id = $2",
                    )
                    .bind(self.session_id)
                    .bind(i64::from(id)))
                    .await
                    .map(|_| ())
                }

                async fn put_sender_key(&self, address: &str, record: &[u8]) -> WaResult<()> {
                    self.put_blobs("wa_sender_keys", "address", "record", &[(address, record)])
                        .await
                }

                async fn put_sender_keys_batch(
                    &self,
                    sender_keys: &[(Arc<str>, Bytes)],
                ) -> WaResult<()> {
                    let rows: Vec<(&str, &[u8])> =
                        sender_keys.iter().map(|(a, r)| (a.as_ref(), r.as_ref())).collect();
                    self.put_blobs("wa_sender_keys", "address", "record", &rows)
                        .await
                }

                async fn get_sender_key(&self, address: &str) -> WaResult<Option<Vec<u8>>> {
                    self.get_blob("wa_sender_keys", "address", "record", address)
                        .await
                }

                async fn delete_sender_key(&self, address: &str) -> WaResult<()> {
                    self.delete_keyed("wa_sender_keys", "address", address).await
                }
            }
        }
    };
}

pub(crate) use impl_signal_store;
