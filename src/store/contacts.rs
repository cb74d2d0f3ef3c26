//! The contacts a session knows (push names, address-book and business names), as the
//! event and history paths wrote them to the `contacts` table.

use async_trait::async_trait;
use uuid::Uuid;

use super::{StoreResult, cache::CachedStore, events::ContactRow};

#[async_trait]
pub trait ContactStore: Send + Sync {
    /// Every contact of the session, by JID.
    async fn list_contacts(&self, session_id: Uuid) -> StoreResult<Vec<ContactRow>>;
}

macro_rules! impl_contact_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::contacts::ContactStore for $store {
            async fn list_contacts(
                &self,
                session_id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Vec<$crate::store::events::ContactRow>> {
                sqlx::query_as::<$db, $crate::store::events::ContactRow>(
                    "SELECT jid, push_name, full_name, first_name, business_name, about, \
                     picture_id, updated_at FROM contacts WHERE session_id = $1 ORDER BY jid",
                )
                .bind(session_id)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| $crate::store::StoreError::from_sqlx(e, String::new))
            }
        }
    };
}

pub(crate) use impl_contact_store;

#[async_trait]
impl ContactStore for CachedStore {
    async fn list_contacts(&self, session_id: Uuid) -> StoreResult<Vec<ContactRow>> {
        self.inner().list_contacts(session_id).await
    }
}
