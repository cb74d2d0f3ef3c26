//! `AppSyncStore`: app-state sync keys, collection versions, mutation MACs.

macro_rules! impl_appsync_store {
    ($db:ty) => {
        mod wa_appsync_store {
            use std::collections::HashMap;

            use async_trait::async_trait;
            use sqlx::{QueryBuilder, types::Json};
            use wacore::{
                appstate::{hash::HashState, processor::AppStateMutationMAC},
                store::traits::{AppStateSyncKey, AppSyncStore},
            };

            use $crate::store::device::{
                DeviceBackend,
                codec::{CHUNK, WaResult, db, fixed, from_json, last_wins, to_json, widen},
            };

            type Db = $db;

            #[async_trait]
            impl AppSyncStore for DeviceBackend<Db> {
                async fn get_sync_key(&self, key_id: &[u8]) -> WaResult<Option<AppStateSyncKey>> {
                    let row = sqlx::query_as::<Db, (Vec<u8>, Vec<u8>, i64)>(
                        "SELECT key_data, fingerprint, ts FROM wa_app_state_keys \
                         WHERE session_id = $1 AND key_id = $2",
                    )
                    .bind(self.session_id)
                    .bind(key_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db)?;
                    Ok(row.map(|(key_data, fingerprint, timestamp)| AppStateSyncKey {
                        key_data,
                        fingerprint,
                        timestamp,
                    }))
                }

                /// The key also becomes the latest stored (`seq`), as in the reference.
                async fn set_sync_key(&self, key_id: &[u8], key: AppStateSyncKey) -> WaResult<()> {
                    self.write(sqlx::query::<Db>(
                        "INSERT INTO wa_app_state_keys \
                           (session_id, key_id, key_data, fingerprint, ts, seq) \
                         VALUES ($1, $2, $3, $4, $5, \
                           (SELECT COALESCE(MAX(seq), 0) + 1 FROM wa_app_state_keys WHERE session_id = $1)) \
                         ON CONFLICT (session_id, key_id) DO UPDATE SET key_data = excluded.key_data, \
                           fingerprint = excluded.fingerprint, ts = excluded.ts, seq = excluded.seq",
                    )
                    .bind(self.session_id)
                    .bind(key_id)
                    .bind(&key.key_data)
                    .bind(&key.fingerprint)
                    .bind(key.timestamp))
                    .await
                    .map(|_| ())
                }

                async fn get_version(&self, name: &str) -> WaResult<HashState> {
                    let state = sqlx::query_scalar::<Db, Json<serde_json::Value>>(
                        "SELECT state FROM wa_app_state_versions WHERE session_id = $1 AND name = $2",
                    )
                    .bind(self.session_id)
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db)?;
                    match state {
                        Some(Json(v)) => from_json(v),
                        None => Ok(HashState::default()),
                    }
                }

                async fn set_version(&self, name: &str, state: HashState) -> WaResult<()> {
                    self.write(sqlx::query::<Db>(
                        "INSERT INTO wa_app_state_versions (session_id, name, state) VALUES ($1, $2, $3) \
                         ON CONFLICT (session_id, name) DO UPDATE SET state = excluded.state",
                    )
                    .bind(self.session_id)
                    .bind(name)
                    .bind(Json(to_json(&state)?)))
                    .await
                    .map(|_| ())
                }

                async fn put_mutation_macs(
                    &self,
                    name: &str,
                    version: u64,
                    mutations: &[AppStateMutationMAC],
                ) -> WaResult<()> {
                    let version = widen("app state version", version)?;
                    let mutations = last_wins(mutations, |m| m.index_mac.as_slice());
                    let stmts = mutations
                        .chunks(CHUNK)
                        .map(|chunk| {
                            let mut qb = QueryBuilder::<Db>::new(
                                "INSERT INTO wa_app_state_mutation_macs \
                                 (session_id, name, index_mac, value_mac, version) ",
                            );
                            qb.push_values(chunk, |mut b, m| {
                                b.push_bind(self.session_id)
                                    .push_bind(name)
                                    .push_bind(m.index_mac.as_slice())
                                    .push_bind(m.value_mac.as_slice())
                                    .push_bind(version);
                            });
                            qb.push(
                                " ON CONFLICT (session_id, name, index_mac) DO UPDATE SET \
                                 value_mac = excluded.value_mac, version = excluded.version",
                            );
                            qb
                        })
                        .collect();
                    self.exec_all(stmts).await.map(|_| ())
                }

                async fn get_mutation_mac(
                    &self,
                    name: &str,
                    index_mac: &[u8],
                ) -> WaResult<Option<Vec<u8>>> {
                    sqlx::query_scalar::<Db, Vec<u8>>(
                        "SELECT value_mac FROM wa_app_state_mutation_macs \
                         WHERE session_id = $1 AND name = $2 AND index_mac = $3",
                    )
                    .bind(self.session_id)
                    .bind(name)
                    .bind(index_mac)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db)
                }

                async fn get_mutation_macs(
                    &self,
                    name: &str,
                    index_macs: &[[u8; 32]],
                ) -> WaResult<HashMap<[u8; 32], Vec<u8>>> {
                    let mut out = HashMap::with_capacity(index_macs.len());
                    for chunk in index_macs.chunks(CHUNK) {
                        let mut qb = QueryBuilder::<Db>::new(
                            "SELECT index_mac, value_mac FROM wa_app_state_mutation_macs \
                             WHERE session_id = ",
                        );
                        qb.push_bind(self.session_id)
                            .push(" AND name = ")
                            .push_bind(name)
                            .push(" AND index_mac IN (");
                        let mut list = qb.separated(", ");
                        for mac in chunk {
                            list.push_bind(mac.as_slice());
                        }
                        qb.push(")");
                        let rows: Vec<(Vec<u8>, Vec<u8>)> = qb
                            .build_query_as()
                            .fetch_all(&self.pool)
                            .await
                            .map_err(db)?;
                        for (index_mac, value_mac) in rows {
                            out.insert(fixed("index MAC", index_mac)?, value_mac);
                        }
                    }
                    Ok(out)
                }

                async fn delete_mutation_macs(
                    &self,
                    name: &str,
                    index_macs: &[Vec<u8>],
                ) -> WaResult<()> {
                    let stmts = index_macs
                        .chunks(CHUNK)
                        .map(|chunk| {
                            let mut qb = QueryBuilder::<Db>::new(
                                "DELETE FROM wa_app_state_mutation_macs WHERE session_id = ",
                            );
                            qb.push_bind(self.session_id)
                                .push(" AND name = ")
                                .push_bind(name)
                                .push(" AND index_mac IN (");
                            let mut list = qb.separated(", ");
                            for mac in chunk {
                                list.push_bind(mac.as_slice());
                            }
                            qb.push(")");
                            qb
                        })
                        .collect();
                    self.exec_all(stmts).await.map(|_| ())
                }

                async fn clear_mutation_macs(&self, name: &str) -> WaResult<()> {
                    self.write(sqlx::query::<Db>(
                        "DELETE FROM wa_app_state_mutation_macs WHERE session_id = $1 AND name = $2",
                    )
                    .bind(self.session_id)
                    .bind(name))
                    .await
                    .map(|_| ())
                }

                async fn get_latest_sync_key_id(&self) -> WaResult<Option<Vec<u8>>> {
                    sqlx::query_scalar::<Db, Vec<u8>>(
                        "SELECT key_id FROM wa_app_state_keys WHERE session_id = $1 \
                         ORDER BY seq DESC LIMIT 1",
                    )
                    .bind(self.session_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db)
                }
            }
        }
    };
}

pub(crate) use impl_appsync_store;
