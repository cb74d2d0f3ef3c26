//! Votes others cast on a poll this session knows (stored by `rich::remember_poll`): the
//! `pollUpdateMessage` is decrypted with the poll's secret and its option hashes mapped back to
//! the option names.

use serde_json::{Value, json};
use whatsapp_rust::{
    Client, Jid,
    wacore::{poll::PollVoteCiphertext, proto_helpers::MessageExt},
    waproto::whatsapp as wa,
};

use super::Envelope;
use crate::store::{
    Store, StoreResult,
    poll::{PollRow, PollVoteRow},
};

/// A decrypted vote: the poll it is on, who cast it and the chosen option names.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PollVote {
    pub chat_jid: String,
    pub poll_msg_id: String,
    pub voter: String,
    pub options: Vec<String>,
}

impl PollVote {
    /// The `pollVote` field of `message.received`.
    pub fn payload(&self) -> Value {
        json!({
            "pollMessageId": self.poll_msg_id,
            "voter": self.voter,
            "selectedOptions": self.options,
        })
    }

    /// Readable content of the stored message: the option names, comma separated.
    pub fn content(&self) -> String {
        self.options.join(", ")
    }

    pub fn row(&self, vote_msg_id: &str, voted_at: i64) -> PollVoteRow {
        PollVoteRow {
            chat_jid: self.chat_jid.clone(),
            poll_msg_id: self.poll_msg_id.clone(),
            voter_jid: self.voter.clone(),
            options: serde_json::to_string(&self.options).unwrap_or_else(|_| "[]".into()),
            vote_msg_id: vote_msg_id.to_string(),
            voted_at,
        }
    }
}

/// Whether the message is a poll vote.
pub fn is_vote(message: &wa::Message) -> bool {
    message.get_base_message().poll_update_message.is_set()
}

/// Finds the poll a vote names: in the vote's chat, the chat the vote's key names, or (1:1
/// chats addressed by LID) the voter's phone chat.
async fn find_poll(
    store: &dyn Store,
    session_id: uuid::Uuid,
    e: &Envelope<'_>,
    key: &wa::MessageKey,
    poll_id: &str,
) -> StoreResult<Option<PollRow>> {
    let mut chats = vec![e.chat.to_non_ad().to_string()];
    if let Some(remote) = key
        .remote_jid
        .as_deref()
        .and_then(|j| j.parse::<Jid>().ok())
    {
        chats.push(remote.to_non_ad().to_string());
    }
    if !e.is_group
        && let Some(pn) = e.sender_pn
    {
        chats.push(pn.to_non_ad().to_string());
    }
    chats.dedup();
    for chat in chats {
        if let Some(poll) = store.get_poll(session_id, &chat, poll_id).await? {
            return Ok(Some(poll));
        }
    }
    Ok(None)
}

/// Decrypts a vote on a poll the session knows; `None` (with a warning) for an unknown poll or
/// a vote that does not open. A store that cannot be read is an error: the vote is not
/// recorded as undecryptable, its message stays unacknowledged and comes again.
pub async fn decrypt(
    client: &Client,
    store: &dyn Store,
    session_id: uuid::Uuid,
    message: &wa::Message,
    e: &Envelope<'_>,
) -> StoreResult<Option<PollVote>> {
    let Some(update) = message.get_base_message().poll_update_message.as_option() else {
        return Ok(None);
    };
    let key = update.poll_creation_message_key.as_option();
    let Some((key, poll_id)) = key.and_then(|k| Some((k, k.id.as_deref()?))) else {
        tracing::warn!(id = %e.id, "poll vote without the poll's key");
        return Ok(None);
    };
    let Some(poll) = find_poll(store, session_id, e, key, poll_id).await? else {
        tracing::warn!(id = %e.id, poll = poll_id, "vote on a poll this session does not know");
        return Ok(None);
    };
    let Some(vote) = update.vote.as_option() else {
        tracing::warn!(id = %e.id, poll = poll_id, "poll vote without an encrypted vote");
        return Ok(None);
    };
    let creator: Jid = match poll.creator_jid.parse() {
        Ok(j) => j,
        Err(err) => {
            tracing::warn!(poll = poll_id, error = %err, "stored poll creator unreadable");
            return Ok(None);
        }
    };
    let cipher = PollVoteCiphertext {
        enc_payload: vote.enc_payload.as_deref().unwrap_or_default(),
        enc_iv: vote.enc_iv.as_deref().unwrap_or_default(),
    };
    let hashes = match client
        .polls()
        .decrypt_vote(cipher, &poll.secret, poll_id, &creator, e.sender)
        .await
    {
        Ok(h) => h,
        Err(err) => {
            tracing::warn!(id = %e.id, poll = poll_id, error = %err, "poll vote does not decrypt");
            return Ok(None);
        }
    };
    let names = poll.option_names();
    let options = hashes
        .iter()
        .filter_map(|h| {
            let name = names
                .iter()
                .find(|n| whatsapp_rust::wacore::poll::compute_option_hash(n).as_slice() == h);
            if name.is_none() {
                tracing::warn!(
                    poll = poll_id,
                    "vote names an option the poll does not have"
                );
            }
            name.cloned()
        })
        .collect();
    Ok(Some(PollVote {
        chat_jid: poll.chat_jid,
        poll_msg_id: poll.msg_id,
        voter: e.sender_pn.unwrap_or(e.sender).to_non_ad().to_string(),
        options,
    }))
}
