//! What a simulated user does to messages already sent: react to one, edit or delete (for
//! everyone) its own, mark the session's messages read. Each goes through the user's own
//! whatsapp-rust client, so the session receives what a real phone would send.

use serde::Deserialize;
use waproto::whatsapp as wa;
use whatsapp_rust::RevokeType;

use super::{SEND_TIMEOUT, SimUser, UserError, user_jid};

/// `{"to", "id", "emoji", "fromMe"?}`: react in the chat with `to` to the message `id`
/// (`fromMe`: the user sent that message itself). An empty emoji removes the reaction.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReactRequest {
    pub to: String,
    pub id: String,
    pub emoji: String,
    #[serde(default)]
    pub from_me: bool,
}

/// `{"to", "id", "text"}`: replace the text of the user's own message `id`.
#[derive(Debug, Deserialize)]
pub struct EditRequest {
    pub to: String,
    pub id: String,
    pub text: String,
}

/// `{"to", "id"}`: delete the user's own message `id` for everyone.
#[derive(Debug, Deserialize)]
pub struct RevokeRequest {
    pub to: String,
    pub id: String,
}

/// `{"to", "pollId", "options"}`: vote `options` (names; `[]` withdraws the vote) on the poll
/// `pollId` the user sent or received in the chat with `to`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VoteRequest {
    pub to: String,
    pub poll_id: String,
    pub options: Vec<String>,
}

/// `{"to", "ids"}`: send read receipts for the messages `ids` the user got from `to`.
#[derive(Debug, Deserialize)]
pub struct ReadRequest {
    pub to: String,
    pub ids: Vec<String>,
}

fn required<'a>(field: &str, value: &'a str) -> Result<&'a str, UserError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(UserError::BadRequest(format!("{field} is required")));
    }
    Ok(v)
}

async fn timed<T, E: std::fmt::Display>(
    what: &'static str,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, UserError> {
    tokio::time::timeout(SEND_TIMEOUT, f)
        .await
        .map_err(|_| UserError::Timeout(what))?
        .map_err(|e| UserError::Client(e.to_string()))
}

impl SimUser {
    /// Reacts to a message; returns the reaction's message id.
    pub async fn react(&self, r: &ReactRequest) -> Result<String, UserError> {
        let chat = user_jid(&r.to)?;
        let key = wa::MessageKey {
            remote_jid: Some(chat.to_string()),
            from_me: Some(r.from_me),
            id: Some(required("id", &r.id)?.to_string()),
            participant: None,
        };
        let sent = timed(
            "sending the reaction",
            self.client.send_reaction(chat, key, &r.emoji),
        )
        .await?;
        Ok(sent.message_id)
    }

    /// Edits the user's own message; returns the edited message's id.
    pub async fn edit(&self, r: &EditRequest) -> Result<String, UserError> {
        let chat = user_jid(&r.to)?;
        let id = required("id", &r.id)?.to_string();
        let content = wa::Message {
            conversation: Some(r.text.clone()),
            ..Default::default()
        };
        timed(
            "sending the edit",
            self.client.edit_message(chat, id, content),
        )
        .await
    }

    /// Deletes the user's own message for everyone.
    pub async fn revoke(&self, r: &RevokeRequest) -> Result<(), UserError> {
        let chat = user_jid(&r.to)?;
        let id = required("id", &r.id)?.to_string();
        timed(
            "sending the revoke",
            self.client.revoke_message(chat, id, RevokeType::Sender),
        )
        .await
    }

    /// Votes on a poll the user sent or received (its secret is in the user's poll book);
    /// returns the vote's message id.
    pub async fn vote(&self, r: &VoteRequest) -> Result<String, UserError> {
        let chat = user_jid(&r.to)?;
        let id = required("pollId", &r.poll_id)?;
        let poll = self
            .recorder
            .polls
            .get(id)
            .ok_or_else(|| UserError::BadRequest("a poll this user never saw".into()))?;
        if let Some(bad) = r.options.iter().find(|o| !poll.options.contains(o)) {
            return Err(UserError::BadRequest(format!("{bad:?} is not an option")));
        }
        let creator = if poll.creator_pn.is_empty() {
            poll.creator_lid.clone().unwrap_or_default()
        } else {
            poll.creator_pn.clone()
        };
        let creator = user_jid(&creator)?;
        let sent = timed(
            "sending the vote",
            self.client
                .polls()
                .vote(chat, id, &creator, &poll.secret, &r.options),
        )
        .await?;
        Ok(sent.message_id)
    }

    /// Marks messages from `to` read (blue ticks on the sender's side).
    pub async fn read(&self, r: &ReadRequest) -> Result<(), UserError> {
        let chat = user_jid(&r.to)?;
        if r.ids.is_empty() {
            return Err(UserError::BadRequest("ids is required".into()));
        }
        let ids: Vec<&str> = r.ids.iter().map(String::as_str).collect();
        timed(
            "sending the read receipt",
            self.client.mark_as_read(&chat, None, &ids),
        )
        .await
    }
}
