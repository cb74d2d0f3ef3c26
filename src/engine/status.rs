//! Status stories through a connected session's client: text, image and video posts to
//! `status@broadcast` (`client.status()`, sender-key encrypted to the recipients' devices),
//! and the account's status privacy from the privacy IQ.

use whatsapp_rust::wacore::iq::privacy::{PrivacyCategory, PrivacyValue};
use whatsapp_rust::waproto::{buffa::MessageField, whatsapp as wa};
use whatsapp_rust::{Jid, upload::UploadOptions};

use super::{
    Engine, EngineError,
    media::{OutgoingMedia, media_message},
};

/// Background of a text story when none is given (WhatsApp's default green).
pub const DEFAULT_BACKGROUND: u32 = 0xFF1E_6E4F;

/// What a story carries.
pub enum Story {
    Text(String),
    Media(OutgoingMedia),
}

/// The account's status privacy as whatsmeow's `StatusPrivacy` serialises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusPrivacy {
    /// `contacts`, `blacklist` or `whitelist`.
    pub kind: &'static str,
    pub is_default: bool,
}

impl Engine {
    /// Posts a story to `recipients` (user JIDs); the message id.
    pub async fn send_status(
        &self,
        name: &str,
        story: Story,
        recipients: &[Jid],
    ) -> Result<String, EngineError> {
        let client = self.connected(name)?.client().clone();
        let message = match story {
            Story::Text(text) => wa::Message {
                extended_text_message: MessageField::some(wa::message::ExtendedTextMessage {
                    text: Some(text),
                    background_argb: Some(DEFAULT_BACKGROUND),
                    font: Some(wa::message::extended_text_message::FontType::SYSTEM),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Story::Media(media) => {
                let up = client
                    .upload(
                        media.bytes.clone(),
                        media.kind.wa_type(),
                        UploadOptions::new(),
                    )
                    .await
                    .map_err(|e| EngineError::Send(format!("upload failed: {e:#}")))?;
                media_message(&media, up)
            }
        };
        client
            .status()
            .send_raw(message, recipients, Default::default())
            .await
            .map(|r| r.message_id)
            .map_err(|e| EngineError::Send(e.to_string()))
    }

    /// Who sees the account's status, from the `status` category of the privacy IQ.
    pub async fn status_privacy(&self, name: &str) -> Result<StatusPrivacy, EngineError> {
        let client = self.connected(name)?.client().clone();
        let settings = client
            .fetch_privacy_settings()
            .await
            .map_err(|e| EngineError::Action(format!("failed to get the privacy settings: {e}")))?;
        let kind = match settings.get_value(&PrivacyCategory::Status) {
            Some(PrivacyValue::ContactBlacklist) => "blacklist",
            Some(PrivacyValue::None) => "whitelist",
            _ => "contacts",
        };
        Ok(StatusPrivacy {
            kind,
            is_default: true,
        })
    }
}
