//! Call shapes (`/:session/call/...`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Body of `POST /:session/call/reject`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RejectCallRequest {
    /// Caller phone number or JID.
    pub call_from: String,
    /// Id of the call to reject.
    pub call_id: String,
}
