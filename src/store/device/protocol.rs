//! `ProtocolStore`: sender-key distribution per device, LID/PN mappings, retry base keys,
//! device lists and group metadata here; tokens, sent messages and the pending inbound buffer
//! in `messages.rs`.

macro_rules! impl_protocol_store {
    ($db:ty) => {
        mod wa_protocol_store {
            use async_trait::async_trait;
            use sqlx::{QueryBuilder, types::Json};
            use wacore::store::traits::{
                DeviceListRecord, LidPnMappingEntry, PendingInboundKey, PendingInboundRow,
                ProtocolStore, TcTokenEntry,
            };

            use $crate::store::device::{
                DeviceBackend,
                codec::{CHUNK, WaResult, db, from_json, last_wins, narrow, to_json},
            };

            type Db = $db;

            const LID_COLS: &str = "lid, phone_number, created_at, updated_at, learning_source";

            type LidRow = (String, String, i64, i64, String);

            fn lid_entry(r: LidRow) -> LidPnMappingEntry {
                LidPnMappingEntry {
                    lid: r.0,
                    phone_number: r.1,
                    created_at: r.2,
                    updated_at: r.3,
                    learning_source: r.4,
                }
            }

            impl DeviceBackend<Db> {
                async fn lid_rows(&self, filter: &str, value: &str) -> WaResult<Option<LidRow>> {
                    sqlx::query_as::<Db, LidRow>(sqlx::AssertSqlSafe(format!(
                        "SELECT {LID_COLS} FROM wa_lid_pn_mappings WHERE session_id = $1 \
                         AND {filter} = $2 ORDER BY seq DESC LIMIT 1"
                    )))
                    .bind(self.session_id)
                    .bind(value)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db)
                }
            }

            #[async_trait]
            impl ProtocolStore for DeviceBackend<Db> {
                async fn get_sender_key_devices(
                    &self,
                    group_jid: &str,
                ) -> WaResult<Vec<(String, bool)>> {
                    sqlx::query_as::<Db, (String, bool)>(
                        "SELECT device_jid, has_key FROM wa_sender_key_devices \
                         WHERE session_id = $1 AND group_jid = $2 ORDER BY device_jid",
                    )
                    .bind(self.session_id)
                    .bind(group_jid)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db)
                }

                async fn set_sender_key_status(
                    &self,
                    group_jid: &str,
                    entries: &[(&str, bool)],
                ) -> WaResult<()> {
                    let entries = last_wins(entries, |e| e.0);
                    let stmts = entries
                        .chunks(CHUNK)
                        .map(|chunk| {
                            let mut qb = QueryBuilder::<Db>::new(
                                "INSERT INTO wa_sender_key_devices \
                                 (session_id, group_jid, device_jid, has_key) ",
                            );
                            qb.push_values(chunk, |mut b, (device_jid, has_key)| {
                                b.push_bind(self.session_id)
                                    .push_bind(group_jid)
                                    .push_bind(*device_jid)
                                    .push_bind(*has_key);
                            });
                            qb.push(
                                " ON CONFLICT (session_id, group_jid, device_jid) \
                                 DO UPDATE SET has_key = excluded.has_key",
                            );
                            qb
                        })
                        .collect();
                    self.exec_all(stmts).await.map(|_| ())
                }

                async fn clear_sender_key_devices(&self, group_jid: &str) -> WaResult<()> {
                    self.delete_keyed("wa_sender_key_devices", "group_jid", group_jid)
                        .await
                }

                async fn delete_sender_key_device_rows(&self, device_jids: &[&str]) -> WaResult<()> {
                    let stmts = device_jids
                        .chunks(CHUNK)
                        .map(|chunk| {
                            let mut qb = QueryBuilder::<Db>::new(
                                "DELETE FROM wa_sender_key_devices WHERE session_id = ",
                            );
                            qb.push_bind(self.session_id).push(" AND device_jid IN (");
                            let mut list = qb.separated(", ");
                            for jid in chunk {
                                list.push_bind(*jid);
                            }
                            qb.push(")");
                            qb
                        })
                        .collect();
                    self.exec_all(stmts).await.map(|_| ())
                }

                async fn clear_all_sender_key_devices(&self) -> WaResult<()> {
                    self.write(sqlx::query::<Db>("DELETE FROM wa_sender_key_devices WHERE session_id = $1")
                        .bind(self.session_id))
                        .await
                        .map(|_| ())
                }

                async fn get_lid_mapping(&self, lid: &str) -> WaResult<Option<LidPnMappingEntry>> {
                    Ok(self.lid_rows("lid", lid).await?.map(lid_entry))
                }

                /// The mapping most recently written for this phone number.
                async fn get_pn_mapping(&self, phone: &str) -> WaResult<Option<LidPnMappingEntry>> {
                    Ok(self.lid_rows("phone_number", phone).await?.map(lid_entry))
                }

                async fn put_lid_mapping(&self, entry: &LidPnMappingEntry) -> WaResult<()> {
                    self.put_lid_mappings(std::slice::from_ref(entry)).await
                }

                /// Replaces each LID's mapping; `seq` records the order of writing, so the
                /// latest write for a phone number is the one `get_pn_mapping` finds.
                async fn put_lid_mappings(&self, entries: &[LidPnMappingEntry]) -> WaResult<()> {
                    let entries = last_wins(entries, |e| e.lid.as_str());
                    let stmts = entries
                        .chunks(CHUNK)
                        .map(|chunk| {
                            let mut qb = QueryBuilder::<Db>::new(format!(
                                "INSERT INTO wa_lid_pn_mappings (session_id, {LID_COLS}, seq) "
                            ));
                            qb.push_values(chunk.iter().enumerate(), |mut b, (i, e)| {
                                b.push_bind(self.session_id)
                                    .push_bind(e.lid.as_str())
                                    .push_bind(e.phone_number.as_str())
                                    .push_bind(e.created_at)
                                    .push_bind(e.updated_at)
                                    .push_bind(e.learning_source.as_str())
                                    .push(
                                        "(SELECT COALESCE(MAX(seq), 0) FROM wa_lid_pn_mappings \
                                         WHERE session_id = ",
                                    )
                                    .push_bind_unseparated(self.session_id)
                                    .push_unseparated(") + ")
                                    .push_bind_unseparated(i as i64 + 1);
                            });
                            qb.push(
                                " ON CONFLICT (session_id, lid) DO UPDATE SET \
                                 phone_number = excluded.phone_number, \
                                 created_at = excluded.created_at, updated_at = excluded.updated_at, \
                                 learning_source = excluded.learning_source, seq = excluded.seq",
                            );
                            qb
                        })
                        .collect();
                    self.exec_all(stmts).await.map(|_| ())
                }

                async fn get_all_lid_mappings(&self) -> WaResult<Vec<LidPnMappingEntry>> {
                    let rows = sqlx::query_as::<Db, LidRow>(sqlx::AssertSqlSafe(format!(
                        "SELECT {LID_COLS} FROM wa_lid_pn_mappings WHERE session_id = $1 ORDER BY lid"
                    )))
                    .bind(self.session_id)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db)?;
                    Ok(rows.into_iter().map(lid_entry).collect())
                }

                async fn save_base_key(
                    &self,
                    address: &str,
                    message_id: &str,
                    base_key: &[u8],
                ) -> WaResult<()> {
                    self.write(sqlx::query::<Db>(
                        "INSERT INTO wa_base_keys (session_id, address, message_id, base_key, created_at) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (session_id, address, message_id) \
                         DO UPDATE SET base_key = excluded.base_key, created_at = excluded.created_at",
                    )
                    .bind(self.session_id)
                    .bind(address)
                    .bind(message_id)
                    .bind(base_key)
                    .bind(wacore::time::now_secs()))
                    .await
                    .map(|_| ())
                }

                async fn has_same_base_key(
                    &self,
                    address: &str,
                    message_id: &str,
                    current_base_key: &[u8],
                ) -> WaResult<bool> {
                    let stored = sqlx::query_scalar::<Db, Vec<u8>>(
                        "SELECT base_key FROM wa_base_keys \
                         WHERE session_id = $1 AND address = $2 AND message_id = $3",
                    )
                    .bind(self.session_id)
                    .bind(address)
                    .bind(message_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db)?;
                    Ok(stored.is_some_and(|k| k == current_base_key))
                }

                async fn delete_base_key(&self, address: &str, message_id: &str) -> WaResult<()> {
                    self.write(sqlx::query::<Db>(
                        "DELETE FROM wa_base_keys \
                         WHERE session_id = $1 AND address = $2 AND message_id = $3",
                    )
                    .bind(self.session_id)
                    .bind(address)
                    .bind(message_id))
                    .await
                    .map(|_| ())
                }

                async fn update_device_list(&self, record: DeviceListRecord) -> WaResult<()> {
                    self.update_device_lists(vec![record]).await
                }

                async fn update_device_lists(&self, records: Vec<DeviceListRecord>) -> WaResult<()> {
                    let records = last_wins(&records, |r| r.user.as_str());
                    let rows = records
                        .iter()
                        .map(|r| Ok((*r, to_json(&r.devices)?)))
                        .collect::<WaResult<Vec<_>>>()?;
                    let stmts = rows
                        .chunks(CHUNK)
                        .map(|chunk| {
                            let mut qb = QueryBuilder::<Db>::new(
                                "INSERT INTO wa_device_lists \
                                 (session_id, user_id, devices, ts, phash, raw_id) ",
                            );
                            qb.push_values(chunk, |mut b, (r, devices)| {
                                b.push_bind(self.session_id)
                                    .push_bind(r.user.as_str())
                                    .push_bind(Json(devices))
                                    .push_bind(r.timestamp)
                                    .push_bind(r.phash.as_deref())
                                    .push_bind(r.raw_id.map(i64::from));
                            });
                            qb.push(
                                " ON CONFLICT (session_id, user_id) DO UPDATE SET \
                                 devices = excluded.devices, ts = excluded.ts, \
                                 phash = excluded.phash, raw_id = excluded.raw_id",
                            );
                            qb
                        })
                        .collect();
                    self.exec_all(stmts).await.map(|_| ())
                }

                async fn get_devices(&self, user: &str) -> WaResult<Option<DeviceListRecord>> {
                    type Row = (String, Json<serde_json::Value>, i64, Option<String>, Option<i64>);
                    let row = sqlx::query_as::<Db, Row>(
                        "SELECT user_id, devices, ts, phash, raw_id FROM wa_device_lists \
                         WHERE session_id = $1 AND user_id = $2",
                    )
                    .bind(self.session_id)
                    .bind(user)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db)?;
                    row.map(|(user, Json(devices), timestamp, phash, raw_id)| {
                        Ok(DeviceListRecord {
                            user,
                            devices: from_json(devices)?,
                            timestamp,
                            phash,
                            raw_id: raw_id.map(|v| narrow("raw id", v)).transpose()?,
                        })
                    })
                    .transpose()
                }

                async fn delete_devices(&self, user: &str) -> WaResult<()> {
                    self.delete_keyed("wa_device_lists", "user_id", user).await
                }

                async fn get_group_metadata(&self, group_jid: &str) -> WaResult<Option<Vec<u8>>> {
                    self.get_blob("wa_group_metadata", "group_jid", "info", group_jid)
                        .await
                }

                async fn put_group_metadata(&self, group_jid: &str, blob: &[u8]) -> WaResult<()> {
                    self.write(sqlx::query::<Db>(
                        "INSERT INTO wa_group_metadata (session_id, group_jid, info, updated_at) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (session_id, group_jid) \
                         DO UPDATE SET info = excluded.info, updated_at = excluded.updated_at",
                    )
                    .bind(self.session_id)
                    .bind(group_jid)
                    .bind(blob)
                    .bind(wacore::time::now_secs()))
                    .await
                    .map(|_| ())
                }

                async fn delete_group_metadata(&self, group_jid: &str) -> WaResult<()> {
                    self.delete_keyed("wa_group_metadata", "group_jid", group_jid)
                        .await
                }

                async fn get_tc_token(&self, jid: &str) -> WaResult<Option<TcTokenEntry>> {
                    self.tc_get(jid).await
                }

                async fn put_tc_token(&self, jid: &str, entry: &TcTokenEntry) -> WaResult<()> {
                    self.tc_put(jid, entry).await
                }

                async fn delete_tc_token(&self, jid: &str) -> WaResult<()> {
                    self.delete_keyed("wa_tc_tokens", "jid", jid).await
                }

                async fn get_all_tc_token_jids(&self) -> WaResult<Vec<String>> {
                    self.tc_jids().await
                }

                async fn delete_expired_tc_tokens(
                    &self,
                    token_cutoff: i64,
                    sender_cutoff: i64,
                ) -> WaResult<u32> {
                    self.tc_delete_expired(token_cutoff, sender_cutoff).await
                }

                async fn touch_tc_token_sender_timestamp(
                    &self,
                    jid: &str,
                    sender_timestamp: i64,
                ) -> WaResult<()> {
                    self.tc_touch_sender(jid, sender_timestamp).await
                }

                async fn store_received_tc_token(
                    &self,
                    jid: &str,
                    token: &[u8],
                    token_timestamp: i64,
                ) -> WaResult<()> {
                    self.tc_store_received(jid, token, token_timestamp).await
                }

                async fn store_sent_message(
                    &self,
                    chat_jid: &str,
                    message_id: &str,
                    payload: &[u8],
                ) -> WaResult<()> {
                    self.sent_store(chat_jid, message_id, payload).await
                }

                async fn take_sent_message(
                    &self,
                    chat_jid: &str,
                    message_id: &str,
                ) -> WaResult<Option<Vec<u8>>> {
                    self.sent_take(chat_jid, message_id).await
                }

                async fn delete_expired_sent_messages(&self, cutoff_timestamp: i64) -> WaResult<u32> {
                    self.sent_delete_expired(cutoff_timestamp).await
                }

                async fn store_pending_inbound(
                    &self,
                    chat: &str,
                    sender: &str,
                    id: &str,
                    message: &[u8],
                ) -> WaResult<()> {
                    let row = PendingInboundRow { chat, sender, id, message };
                    self.inbound_store(&[row]).await
                }

                async fn get_pending_inbound(
                    &self,
                    chat: &str,
                    sender: &str,
                    id: &str,
                ) -> WaResult<Option<Vec<u8>>> {
                    self.inbound_get(chat, sender, id).await
                }

                async fn delete_pending_inbound(
                    &self,
                    chat: &str,
                    sender: &str,
                    id: &str,
                ) -> WaResult<()> {
                    self.inbound_delete(&[PendingInboundKey { chat, sender, id }]).await
                }

                async fn delete_expired_pending_inbound(&self, cutoff_timestamp: i64) -> WaResult<u32> {
                    self.inbound_delete_expired(cutoff_timestamp).await
                }

                async fn store_pending_inbound_batch(
                    &self,
                    rows: &[PendingInboundRow<'_>],
                ) -> WaResult<()> {
                    self.inbound_store(rows).await
                }

                async fn delete_pending_inbound_batch(
                    &self,
                    keys: &[PendingInboundKey<'_>],
                ) -> WaResult<()> {
                    self.inbound_delete(keys).await
                }
            }
        }
    };
}

pub(crate) use impl_protocol_store;
