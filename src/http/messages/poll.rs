//! Polls: creating one, and voting on one this session sent or received.

use std::collections::HashSet;

use axum::{Json, extract::State};
use rand::RngCore;
use whatsapp_rust::waproto::whatsapp as wa;

use super::{quote, recipient, required, sent};
use crate::{
    app::AppState,
    error::{ApiError, ApiResult},
    http::{
        dto::{PollVoteRequest, SendPollRequest, SendResponse},
        extract::{JsonBody, SessionCtx},
    },
};

/// WhatsApp's bounds on the number of poll options.
const MIN_OPTIONS: usize = 2;
const MAX_OPTIONS: usize = 12;

/// Checks the options: 2 to 12, none blank, no two alike (votes name options by hash).
fn checked_options(options: &[String]) -> Result<(), ApiError> {
    if !(MIN_OPTIONS..=MAX_OPTIONS).contains(&options.len()) {
        return Err(ApiError::bad_request(format!(
            "options must have between {MIN_OPTIONS} and {MAX_OPTIONS} entries (got {})",
            options.len()
        )));
    }
    let mut seen = HashSet::new();
    for (i, o) in options.iter().enumerate() {
        required(&format!("options[{i}]"), o)?;
        if !seen.insert(o.as_str()) {
            return Err(ApiError::bad_request(format!(
                "options must be unique: {o:?} appears more than once"
            )));
        }
    }
    Ok(())
}

/// The poll message as WhatsApp clients build it: `pollCreationMessageV3` for a single choice,
/// `pollCreationMessage` otherwise, with a fresh 32-byte `messageSecret` that keys the votes.
fn poll_message(
    name: &str,
    options: &[String],
    selectable: u32,
    context: Option<wa::ContextInfo>,
) -> wa::Message {
    let poll = wa::message::PollCreationMessage {
        name: Some(name.to_string()),
        options: options
            .iter()
            .map(|o| wa::message::poll_creation_message::Option {
                option_name: Some(o.clone()),
                option_hash: None,
            })
            .collect(),
        selectable_options_count: Some(selectable),
        poll_content_type: Some(wa::message::PollContentType::TEXT),
        context_info: context.into(),
        ..Default::default()
    };
    let mut secret = vec![0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let mut message = wa::Message {
        message_context_info: wa::MessageContextInfo {
            message_secret: Some(secret),
            ..Default::default()
        }
        .into(),
        ..Default::default()
    };
    if selectable == 1 {
        message.poll_creation_message_v3 = poll.into();
    } else {
        message.poll_creation_message = poll.into();
    }
    message
}

pub(super) async fn send(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<SendPollRequest>,
) -> ApiResult<Json<SendResponse>> {
    let to = recipient("phone", &req.phone)?;
    let name = required("name", &req.name)?;
    checked_options(&req.options)?;
    // OnWapp: anything below 1 means a single choice.
    let selectable = req.selectable_count.unwrap_or(1).max(1);
    if selectable > req.options.len() as i64 {
        return Err(ApiError::bad_request(format!(
            "selectableCount must be between 1 and the number of options ({})",
            req.options.len()
        )));
    }
    let context = req.quoted.as_ref().map(|q| quote(q, &to)).transpose()?;
    let message = poll_message(name, &req.options, selectable as u32, context);
    Ok(sent(s.engine.send(&rec.name, to, message).await?))
}

/// Votes on a poll of the chat with `phone` that this session sent or received. An empty
/// `selectedOptions` withdraws the vote, as WhatsApp clients do.
pub(super) async fn vote(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<PollVoteRequest>,
) -> ApiResult<Json<SendResponse>> {
    let chat = recipient("phone", &req.phone)?;
    let id = required("pollMessageId", &req.poll_message_id)?;
    let poll = s
        .store
        .get_poll(rec.id, &chat.to_non_ad().to_string(), id)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "pollMessageId: no poll {id} is known in the chat with {}",
                req.phone
            ))
        })?;
    let options = poll.option_names();
    let mut seen = HashSet::new();
    for o in &req.selected_options {
        if !options.contains(o) {
            return Err(ApiError::bad_request(format!(
                "selectedOptions: {o:?} is not an option of this poll (options: {options:?})"
            )));
        }
        if !seen.insert(o.as_str()) {
            return Err(ApiError::bad_request(format!(
                "selectedOptions: {o:?} appears more than once"
            )));
        }
    }
    let most = usize::try_from(poll.selectable_count).unwrap_or(0);
    if most > 0 && req.selected_options.len() > most {
        return Err(ApiError::bad_request(format!(
            "selectedOptions: this poll allows at most {most} choice(s)"
        )));
    }
    let vote_id = s
        .engine
        .vote_poll(&rec.name, chat, &poll, &req.selected_options)
        .await?;
    Ok(sent(vote_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn option_rules() {
        assert!(checked_options(&opts(&["a", "b"])).is_ok());
        assert!(checked_options(&opts(&["a"])).is_err());
        assert!(checked_options(&opts(&["a", "a"])).is_err());
        assert!(checked_options(&opts(&["a", " "])).is_err());
        let thirteen: Vec<String> = (0..13).map(|i| i.to_string()).collect();
        assert!(checked_options(&thirteen).is_err());
    }

    #[test]
    fn single_choice_polls_are_v3_with_a_secret() {
        let m = poll_message("Q", &opts(&["a", "b"]), 1, None);
        assert!(m.poll_creation_message_v3.is_set());
        assert!(!m.poll_creation_message.is_set());
        let secret = m
            .message_context_info
            .as_option()
            .unwrap()
            .message_secret
            .clone();
        assert_eq!(secret.map(|s| s.len()), Some(32));
        let m = poll_message("Q", &opts(&["a", "b"]), 2, None);
        assert!(m.poll_creation_message.is_set());
    }
}
