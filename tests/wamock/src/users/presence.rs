//! The presences and chat states a simulated user's client saw (`GET
//! /admin/users/{phone}/presence` and `/chatstates`).

use serde::Serialize;
use wacore::types::events::{ChatPresenceUpdate, PresenceUpdate};
use wacore::types::presence::{ChatPresence, ChatPresenceMedia};

use super::inbox::account_of;

/// One `Event::Presence`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PresenceEntry {
    /// The account, `PHONE@s.whatsapp.net` (or `LID@lid`).
    pub from: String,
    pub available: bool,
    /// Unix seconds, when the server said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<i64>,
}

/// One `Event::ChatPresence`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ChatstateEntry {
    /// The chat, `PHONE@s.whatsapp.net` for a direct chat.
    pub chat: String,
    /// Who types.
    pub from: String,
    /// `composing`, `recording` or `paused`.
    pub state: String,
}

pub fn presence_entry(p: &PresenceUpdate) -> PresenceEntry {
    PresenceEntry {
        from: account_of(&p.from, None),
        available: !p.unavailable,
        last_seen: p.last_seen.map(|t| t.timestamp()),
    }
}

pub fn chatstate_entry(c: &ChatPresenceUpdate) -> ChatstateEntry {
    let state = match (&c.state, &c.media) {
        (ChatPresence::Composing, ChatPresenceMedia::Audio) => "recording",
        (ChatPresence::Composing, _) => "composing",
        (ChatPresence::Paused, _) => "paused",
    };
    ChatstateEntry {
        chat: account_of(&c.source.chat, None),
        from: account_of(&c.source.sender, None),
        state: state.to_string(),
    }
}

impl super::SimUser {
    /// Subscribes the user's client to an account's presence (`<presence type="subscribe">`).
    pub async fn subscribe_presence(&self, to: &str) -> Result<(), super::UserError> {
        let to = super::user_jid(to)?;
        self.client
            .presence()
            .subscribe(to)
            .await
            .map_err(|e| super::UserError::Client(e.to_string()))
    }

    /// Announces the user available or unavailable.
    pub async fn set_presence(&self, available: bool) -> Result<(), super::UserError> {
        let presence = self.client.presence();
        let sent = if available {
            presence.set_available().await
        } else {
            presence.set_unavailable().await
        };
        sent.map_err(|e| super::UserError::Client(e.to_string()))
    }

    /// Shows `composing`, `recording` or `paused` in the chat with `to`.
    pub async fn send_chatstate(&self, to: &str, state: &str) -> Result<(), super::UserError> {
        use whatsapp_rust::ChatStateType;
        let to = super::user_jid(to)?;
        let state = match state {
            "composing" => ChatStateType::Composing,
            "recording" => ChatStateType::Recording,
            "paused" => ChatStateType::Paused,
            other => {
                return Err(super::UserError::BadRequest(format!(
                    "state must be composing, recording or paused, not {other:?}"
                )));
            }
        };
        self.client
            .chatstate()
            .send(&to, state)
            .await
            .map_err(|e| super::UserError::Client(e.to_string()))
    }
}
