//! The session's own profile: about text, push name and picture (whatsapp-rust's
//! `client.profile()`), and reading them back.

use super::{Engine, EngineError};

fn failed(what: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Action(format!("failed to {what}: {e}"))
}

/// What a connected session knows of itself.
#[derive(Debug, Clone)]
pub struct OwnProfile {
    /// The account's JID (phone number, no device).
    pub jid: String,
    pub push_name: String,
    /// The picture's URL as WhatsApp answers it, when one is set.
    pub picture_url: Option<String>,
    /// The about text WhatsApp holds (usync `status`), when one is set.
    pub status: Option<String>,
}

impl Engine {
    /// The own JID, push name (device store), picture URL (a `w:profile:picture` get) and
    /// about text (a usync `status` query).
    pub async fn own_profile(&self, name: &str) -> Result<OwnProfile, EngineError> {
        let client = self.connected(name)?.client().clone();
        let pn = client
            .pn()
            .ok_or_else(|| EngineError::Action("session not authenticated".into()))?;
        let own = pn.to_non_ad();
        let picture = client
            .contacts()
            .get_profile_picture(&own, false)
            .await
            .map_err(|e| failed("get the profile picture", e))?;
        let info = client
            .contacts()
            .get_user_info(std::slice::from_ref(&own))
            .await
            .map_err(|e| failed("get the status", e))?;
        let status = info
            .into_values()
            .find(|u| u.jid.user == own.user)
            .and_then(|u| u.status)
            .filter(|s| !s.is_empty());
        Ok(OwnProfile {
            jid: own.to_string(),
            push_name: client.push_name(),
            picture_url: picture.map(|p| p.url),
            status,
        })
    }

    /// Sets the about text (`<iq xmlns="status">`).
    pub async fn set_status_text(&self, name: &str, text: &str) -> Result<(), EngineError> {
        self.connected(name)?
            .client()
            .profile()
            .set_status_text(text)
            .await
            .map_err(|e| failed("set status", e))
    }

    /// Sets the push name: `<presence name>`, the `setting_pushName` app-state mutation and
    /// the device store.
    pub async fn set_push_name(&self, name: &str, push_name: &str) -> Result<(), EngineError> {
        self.connected(name)?
            .client()
            .profile()
            .set_push_name(push_name)
            .await
            .map_err(|e| failed("set push name", e))
    }

    /// Sets the profile picture (JPEG bytes); the server's picture id.
    pub async fn set_profile_picture(
        &self,
        name: &str,
        image: Vec<u8>,
    ) -> Result<String, EngineError> {
        if image.is_empty() {
            return Err(EngineError::Action(
                "failed to set profile picture: empty image".into(),
            ));
        }
        self.connected(name)?
            .client()
            .profile()
            .set_profile_picture(image)
            .await
            .map(|r| r.id)
            .map_err(|e| failed("set profile picture", e))
    }

    /// Removes the profile picture.
    pub async fn remove_profile_picture(&self, name: &str) -> Result<(), EngineError> {
        self.connected(name)?
            .client()
            .profile()
            .remove_profile_picture()
            .await
            .map(|_| ())
            .map_err(|e| failed("delete profile picture", e))
    }
}
