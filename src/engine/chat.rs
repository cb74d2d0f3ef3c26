//! Chat actions and presence through a connected session's client: typing indicators, read
//! receipts, app-state chat actions (archive, read/unread, delete for me), disappearing
//! timers, the session's own presence and presence subscriptions.

use std::sync::Arc;

use whatsapp_rust::{ChatStateType, Client, Jid, wacore_binary::JidExt};

use super::{Engine, EngineError};

/// What the other side sees in a chat (`POST /:session/chat/presence`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Typing {
    Composing,
    Recording,
    Paused,
}

/// A message to delete on this device only.
#[derive(Debug, Clone)]
pub struct OwnCopy {
    pub chat: Jid,
    pub id: String,
    pub from_me: bool,
    /// The sender of someone else's message in a group.
    pub participant: Option<Jid>,
    /// When it was sent (unix seconds), if known.
    pub timestamp: Option<i64>,
}

fn failed(what: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Action(format!("failed to {what}: {e}"))
}

impl Engine {
    fn client_of(&self, name: &str) -> Result<Arc<Client>, EngineError> {
        Ok(self.connected(name)?.client().clone())
    }

    /// The running client of a connected session (tests watch its events).
    #[doc(hidden)]
    pub fn connected_client(&self, name: &str) -> Option<Arc<Client>> {
        self.client_of(name).ok()
    }

    /// Shows typing, recording or nothing to `chat`.
    pub async fn chat_presence(
        &self,
        name: &str,
        chat: &Jid,
        typing: Typing,
    ) -> Result<(), EngineError> {
        let state = match typing {
            Typing::Composing => ChatStateType::Composing,
            Typing::Recording => ChatStateType::Recording,
            Typing::Paused => ChatStateType::Paused,
        };
        self.client_of(name)?
            .chatstate()
            .send(chat, state)
            .await
            .map_err(|e| failed("send the chat presence", e))
    }

    /// Sends read receipts for these messages of `chat` (`sender`: their author in a group).
    pub async fn mark_read(
        &self,
        name: &str,
        chat: &Jid,
        sender: Option<&Jid>,
        ids: &[&str],
    ) -> Result<(), EngineError> {
        self.client_of(name)?
            .mark_as_read(chat, sender, ids)
            .await
            .map_err(|e| failed("send read receipts", e))
    }

    /// Marks a whole chat read or unread on every device of the account (app state).
    pub async fn mark_chat_read(
        &self,
        name: &str,
        chat: &Jid,
        read: bool,
    ) -> Result<(), EngineError> {
        self.client_of(name)?
            .chat_actions()
            .mark_chat_as_read(chat, read, None)
            .await
            .map_err(|e| failed("mark the chat", e))
    }

    /// Archives or unarchives a chat on every device of the account (app state).
    pub async fn archive_chat(
        &self,
        name: &str,
        chat: &Jid,
        archive: bool,
    ) -> Result<(), EngineError> {
        let client = self.client_of(name)?;
        let actions = client.chat_actions();
        let done = if archive {
            actions.archive_chat(chat, None).await
        } else {
            actions.unarchive_chat(chat, None).await
        };
        done.map_err(|e| failed("archive the chat", e))
    }

    /// Sets the disappearing-messages timer of a chat (`seconds` 0 turns it off): a 1:1
    /// chat gets the `EPHEMERAL_SETTING` protocol message, a group the group setting.
    pub async fn set_disappearing(
        &self,
        name: &str,
        chat: &Jid,
        seconds: u32,
    ) -> Result<(), EngineError> {
        let client = self.client_of(name)?;
        if chat.is_group() {
            return client
                .groups()
                .set_ephemeral(chat.clone(), seconds)
                .await
                .map_err(|e| failed("set the group's disappearing timer", e));
        }
        client
            .set_chat_disappearing_timer(chat.clone(), seconds)
            .await
            .map(|_| ())
            .map_err(|e| failed("set the disappearing timer", e))
    }

    /// Announces the session available (online) or unavailable.
    pub async fn set_presence(&self, name: &str, available: bool) -> Result<(), EngineError> {
        let client = self.client_of(name)?;
        let presence = client.presence();
        let done = if available {
            presence.set_available().await
        } else {
            presence.set_unavailable().await
        };
        done.map_err(|e| failed("set the presence", e))
    }

    /// Asks WhatsApp for `who`'s presence updates (they arrive as presence events).
    pub async fn subscribe_presence(&self, name: &str, who: &Jid) -> Result<(), EngineError> {
        self.client_of(name)?
            .presence()
            .subscribe(who.clone())
            .await
            .map_err(|e| failed("subscribe to the presence", e))
    }

    /// Deletes a message on this account's devices only (app state `deleteMessageForMe`).
    pub async fn delete_for_me(&self, name: &str, m: &OwnCopy) -> Result<(), EngineError> {
        self.client_of(name)?
            .chat_actions()
            .delete_message_for_me(
                &m.chat,
                m.participant.as_ref(),
                &m.id,
                m.from_me,
                true,
                m.timestamp,
            )
            .await
            .map_err(|e| failed("delete the message for me", e))
    }
}
