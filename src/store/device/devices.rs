//! `DeviceStore`: the device itself (its keys, JIDs and counters), one row per session, kept as
//! whatsapp-rust's serde form of `Device` so fields it adds later are kept too.

macro_rules! impl_device_row_store {
    ($db:ty) => {
        mod wa_device_row_store {
            use async_trait::async_trait;
            use sqlx::types::Json;
            use wacore::{
                stats::StorageResourceReport,
                store::{Device, traits::DeviceStore},
            };

            use $crate::store::device::{
                DeviceBackend,
                codec::{WaResult, db, from_json, narrow, restored_device, to_json},
            };

            type Db = $db;

            #[async_trait]
            impl DeviceStore for DeviceBackend<Db> {
                async fn save(&self, device: &Device) -> WaResult<()> {
                    self.write(sqlx::query::<Db>(
                        "INSERT INTO wa_devices (session_id, data, updated_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (session_id) DO UPDATE SET \
                           data = excluded.data, updated_at = excluded.updated_at",
                    )
                    .bind(self.session_id)
                    .bind(Json(to_json(device)?))
                    .bind(wacore::time::now_secs()))
                    .await
                    .map(|_| ())
                }

                async fn load(&self) -> WaResult<Option<Device>> {
                    let data = sqlx::query_scalar::<Db, Json<serde_json::Value>>(
                        "SELECT data FROM wa_devices WHERE session_id = $1",
                    )
                    .bind(self.session_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db)?;
                    data.map(|Json(v)| from_json(v).map(restored_device))
                        .transpose()
                }

                async fn exists(&self) -> WaResult<bool> {
                    sqlx::query::<Db>("SELECT 1 FROM wa_devices WHERE session_id = $1")
                        .bind(self.session_id)
                        .fetch_optional(&self.pool)
                        .await
                        .map(|r| r.is_some())
                        .map_err(db)
                }

                /// Stores a fresh device unless the session has one, and answers how many times
                /// this was asked (1 the first time), as the reference numbers its devices.
                async fn create(&self) -> WaResult<i32> {
                    let mut tx = self.begin_write().await?;
                    let n = sqlx::query_scalar::<Db, i64>(
                        "INSERT INTO wa_devices (session_id, data, create_count, updated_at) \
                         VALUES ($1, $2, 1, $3) ON CONFLICT (session_id) DO UPDATE SET \
                           create_count = wa_devices.create_count + 1 \
                         RETURNING create_count",
                    )
                    .bind(self.session_id)
                    .bind(Json(to_json(&Device::new())?))
                    .bind(wacore::time::now_secs())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db)?;
                    tx.commit().await.map_err(db)?;
                    narrow("device id", n)
                }

                /// The rows live in the database, not in this process.
                async fn resource_report(&self) -> StorageResourceReport {
                    StorageResourceReport {
                        memory_bytes: Some(0),
                        ..StorageResourceReport::default()
                    }
                }
            }
        }
    };
}

pub(crate) use impl_device_row_store;
