//! What a simulated user sees of another account's profile (`GET
//! /admin/users/{phone}/picture?of=`): its client asks the server, as WhatsApp's would.

use serde::Serialize;

/// A picture another account set, as the user's client got it (`w:profile:picture` get).
#[derive(Debug, Clone, Serialize)]
pub struct SeenPicture {
    pub id: String,
    pub url: String,
}

impl super::SimUser {
    /// The picture of `of` (digits or a JID), `None` when it has none.
    pub async fn picture_of(&self, of: &str) -> Result<Option<SeenPicture>, super::UserError> {
        let jid = super::user_jid(of)?;
        self.client
            .contacts()
            .get_profile_picture(&jid, false)
            .await
            .map(|p| {
                p.map(|p| SeenPicture {
                    id: p.id,
                    url: p.url,
                })
            })
            .map_err(|e| super::UserError::Client(e.to_string()))
    }
}
