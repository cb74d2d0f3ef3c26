//! whatsapp-rust's storage `Backend` on our own tables: a session's Signal keys, app-state
//! keys, LID mappings, device lists, message secrets and the device itself live in our database,
//! keyed by the session, so the session can later move between nodes (design section 5).
//!
//! [`DeviceBackend`] is bound to one session and holds a pool. Its SQL is written once and
//! implemented for Postgres and SQLite by [`impl_device_store!`], one macro per concern
//! (`signal`, `appsync`, `protocol`, `messages`, `secrets`, `devices`), like the other stores.
//! `wacore::store::InMemoryBackend` is the reference the tests compare it with
//! (`tests/api/device_store.rs`).

pub(crate) mod appsync;
pub(crate) mod codec;
pub(crate) mod devices;
pub(crate) mod messages;
pub(crate) mod protocol;
pub(crate) mod secrets;
pub(crate) mod signal;

use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;
pub use wacore::store::traits::Backend;

use super::StoreResult;

/// Every table of the device store. Each has a `session_id` column referencing `sessions`.
pub const TABLES: &[&str] = &[
    "wa_identities",
    "wa_signal_sessions",
    "wa_prekeys",
    "wa_signed_prekeys",
    "wa_sender_keys",
    "wa_app_state_keys",
    "wa_app_state_versions",
    "wa_app_state_mutation_macs",
    "wa_sender_key_devices",
    "wa_lid_pn_mappings",
    "wa_base_keys",
    "wa_device_lists",
    "wa_group_metadata",
    "wa_tc_tokens",
    "wa_sent_messages",
    "wa_pending_inbound",
    "wa_msg_secrets",
    "wa_devices",
];

/// Hands out the device store of each session.
#[async_trait]
pub trait DeviceStoreFactory: Send + Sync {
    /// whatsapp-rust's `Backend` for the session `session_id` (which must exist: its rows
    /// reference it).
    fn device_backend(&self, session_id: Uuid) -> Arc<dyn Backend>;
    /// Deletes everything the device store holds for the session (logout), keeping the session.
    async fn delete_device_store(&self, session_id: Uuid) -> StoreResult<()>;
}

/// whatsapp-rust's storage backend for one session, on a pool of database `DB`. Every write is
/// fenced (`store::fence`): it runs in a transaction that first checks the epoch of the
/// session's shard, once the store's [`Fences`](super::Fences) are enforced.
pub struct DeviceBackend<DB: sqlx::Database> {
    pub(crate) pool: sqlx::Pool<DB>,
    pub(crate) session_id: Uuid,
    pub(crate) fences: Arc<super::Fences>,
}

impl<DB: sqlx::Database> DeviceBackend<DB> {
    pub fn new(pool: sqlx::Pool<DB>, session_id: Uuid, fences: Arc<super::Fences>) -> Self {
        DeviceBackend {
            pool,
            session_id,
            fences,
        }
    }

    pub fn session_id(&self) -> Uuid {
        self.session_id
    }
}

/// Implements every trait of whatsapp-rust's `Backend` for `DeviceBackend<$db>`, and
/// [`DeviceStoreFactory`] for the store type `$store` (which has a `pool` of `$db`).
macro_rules! impl_device_store {
    ($store:ty, $db:ty) => {
        mod wa_device_common {
            use $crate::store::device::codec::{WaResult, db, fenced};

            impl $crate::store::device::DeviceBackend<$db> {
                /// A transaction that writes this session's device state, fenced.
                pub(crate) async fn begin_write(&self) -> WaResult<sqlx::Transaction<'static, $db>> {
                    super::begin_fenced(&self.pool, &self.fences, self.session_id)
                        .await
                        .map_err(fenced)
                }

                /// Runs one write statement: fenced in a transaction when fencing is enforced,
                /// on the pool otherwise. Answers the rows it touched.
                pub(crate) async fn write<'q, E>(&self, stmt: E) -> WaResult<u64>
                where
                    E: 'q + sqlx::Execute<'q, $db>,
                {
                    if !self.fences.enforced() {
                        let done = sqlx::Executor::execute(&self.pool, stmt).await;
                        return Ok(done.map_err(db)?.rows_affected());
                    }
                    let mut tx = self.begin_write().await?;
                    let rows = sqlx::Executor::execute(&mut *tx, stmt).await.map_err(db)?.rows_affected();
                    tx.commit().await.map_err(db)?;
                    Ok(rows)
                }

                /// Runs the statements of one write, in a transaction when there are several
                /// (always, fenced, when fencing is enforced). Answers the rows they touched.
                pub(crate) async fn exec_all(
                    &self,
                    mut stmts: Vec<sqlx::QueryBuilder<$db>>,
                ) -> WaResult<u64> {
                    match stmts.as_mut_slice() {
                        [] => Ok(0),
                        [one] => self.write(one.build()).await,
                        many => {
                            let mut tx = self.begin_write().await?;
                            let mut rows = 0;
                            for stmt in many {
                                rows += stmt.build().execute(&mut *tx).await.map_err(db)?.rows_affected();
                            }
                            tx.commit().await.map_err(db)?;
                            Ok(rows)
                        }
                    }
                }
            }
        }

        $crate::store::device::signal::impl_signal_store!($db);
        $crate::store::device::appsync::impl_appsync_store!($db);
        $crate::store::device::protocol::impl_protocol_store!($db);
        $crate::store::device::messages::impl_message_rows!($db);
        $crate::store::device::secrets::impl_msg_secret_store!($db);
        $crate::store::device::devices::impl_device_row_store!($db);

        #[async_trait::async_trait]
        impl $crate::store::device::DeviceStoreFactory for $store {
            fn device_backend(
                &self,
                session_id: uuid::Uuid,
            ) -> std::sync::Arc<dyn $crate::store::device::Backend> {
                std::sync::Arc::new($crate::store::device::DeviceBackend::<$db>::new(
                    self.pool.clone(),
                    session_id,
                    self.fences.clone(),
                ))
            }

            async fn delete_device_store(
                &self,
                session_id: uuid::Uuid,
            ) -> $crate::store::StoreResult<()> {
                let q = |e| $crate::store::StoreError::from_sqlx(e, || "conflict".to_string());
                let mut tx = self.begin_write(session_id).await?;
                for table in $crate::store::device::TABLES {
                    sqlx::query::<$db>(sqlx::AssertSqlSafe(format!(
                        "DELETE FROM {table} WHERE session_id = $1"
                    )))
                    .bind(session_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(q)?;
                }
                tx.commit().await.map_err(q)?;
                tracing::debug!(%session_id, "device store deleted");
                Ok(())
            }
        }
    };
}

pub(crate) use impl_device_store;
