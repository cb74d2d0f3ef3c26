//! What a simulated user's inbox shows of rich messages (polls, buttons, lists, templates,
//! interactive messages and carousels, peer requests) and of votes on the polls it sent,
//! decrypted with the poll's secret.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{Map, Value, json};
use wacore::poll::{self, PollVoteAddressing, PollVoteCiphertext};
use wacore::proto_helpers::MessageExt;
use wacore::types::message::MessageInfo;
use waproto::whatsapp as wa;

/// A poll this user sent or received: what decrypting a vote on it takes.
#[derive(Debug, Clone)]
pub struct SentPoll {
    pub secret: Vec<u8>,
    pub options: Vec<String>,
    /// The creator's JIDs (non-AD), PN and LID, as a voter may have addressed the creator.
    pub creator_pn: String,
    pub creator_lid: Option<String>,
}

/// The polls a user sent or received, by message id.
#[derive(Debug, Default)]
pub struct PollBook(Mutex<HashMap<String, SentPoll>>);

impl PollBook {
    pub fn insert(&self, id: String, poll: SentPoll) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, poll);
    }

    pub(crate) fn get(&self, id: &str) -> Option<SentPoll> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }
}

/// `type` of the rich kinds (`None` for every other message).
pub fn kind(m: &wa::Message) -> Option<&'static str> {
    Some(if poll_of(m).is_some() {
        "poll"
    } else if m.poll_update_message.is_set() {
        "poll_vote"
    } else if m.buttons_message.is_set() {
        "buttons"
    } else if m.list_message.is_set() {
        "list"
    } else if m.template_message.is_set() {
        "template"
    } else if m.interactive_message.is_set() {
        "interactive"
    } else {
        return None;
    })
}

/// `stanza_id` of the reply context of a rich message.
pub fn quoted_id(m: &wa::Message) -> Option<String> {
    let contexts = [
        poll_of(m).and_then(|p| p.context_info.as_option()),
        m.buttons_message
            .as_option()
            .and_then(|x| x.context_info.as_option()),
        m.list_message
            .as_option()
            .and_then(|x| x.context_info.as_option()),
        m.template_message
            .as_option()
            .and_then(|x| x.context_info.as_option()),
        m.interactive_message
            .as_option()
            .and_then(|x| x.context_info.as_option()),
    ];
    contexts
        .into_iter()
        .flatten()
        .find_map(|c| c.stanza_id.clone())
}

fn poll_of(m: &wa::Message) -> Option<&wa::message::PollCreationMessage> {
    [
        &m.poll_creation_message_v3,
        &m.poll_creation_message,
        &m.poll_creation_message_v2,
        &m.poll_creation_message_v5,
        &m.poll_creation_message_v6,
    ]
    .into_iter()
    .find_map(|p| p.as_option())
}

/// The fields the inbox shows for a rich message (`message` is the whole message, `base`
/// the content inside its wrappers).
pub fn details(
    message: &wa::Message,
    base: &wa::Message,
    info: &MessageInfo,
    polls: &PollBook,
) -> Map<String, Value> {
    let mut out = match () {
        _ if poll_of(base).is_some() => {
            remember_received(message, base, info, polls);
            poll_details(base)
        }
        _ if base.poll_update_message.is_set() => vote_details(base, info, polls),
        _ if base.buttons_message.is_set() => buttons_details(base),
        _ if base.list_message.is_set() => list_details(base),
        _ if base.template_message.is_set() => template_details(base),
        _ if base.interactive_message.is_set() => interactive_details(base),
        _ if base.protocol_message.is_set() => protocol_details(base),
        _ => Map::new(),
    };
    if message.view_once_message.is_set() {
        out.insert("viewOnce".into(), Value::Bool(true));
    }
    out
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m.into_iter().filter(|(_, v)| !v.is_null()).collect(),
        _ => Map::new(),
    }
}

/// A poll someone sent this user: kept too, so votes on it (the sender's own included) show
/// decrypted.
fn remember_received(
    message: &wa::Message,
    base: &wa::Message,
    info: &MessageInfo,
    polls: &PollBook,
) {
    let Some(p) = poll_of(base) else { return };
    let Some(secret) = [message, base]
        .into_iter()
        .find_map(|m| m.message_context_info.as_option()?.message_secret.clone())
    else {
        return;
    };
    let sender = info.source.sender.to_non_ad().to_string();
    let alt = info
        .source
        .sender_alt
        .as_ref()
        .map(|j| j.to_non_ad().to_string());
    let (creator_pn, creator_lid) = if info.source.sender.is_lid() {
        (alt.unwrap_or_default(), Some(sender))
    } else {
        (sender, alt)
    };
    polls.insert(
        info.id.clone(),
        SentPoll {
            secret,
            options: p
                .options
                .iter()
                .filter_map(|o| o.option_name.clone())
                .collect(),
            creator_pn,
            creator_lid,
        },
    );
}

fn poll_details(m: &wa::Message) -> Map<String, Value> {
    let Some(p) = poll_of(m) else {
        return Map::new();
    };
    let options: Vec<&str> = p
        .options
        .iter()
        .filter_map(|o| o.option_name.as_deref())
        .collect();
    let version = if m.poll_creation_message_v3.is_set() {
        3
    } else {
        1
    };
    object(json!({
        "name": p.name,
        "options": options,
        "selectableCount": p.selectable_options_count,
        "pollVersion": version,
        "hasSecret": m.message_context_info.as_option().and_then(|c| c.message_secret.as_ref()).is_some_and(|s| s.len() == 32),
    }))
}

/// Decrypts a vote on one of this user's polls: `pollId`, `options` (names), or `voteError`.
fn vote_details(m: &wa::Message, info: &MessageInfo, polls: &PollBook) -> Map<String, Value> {
    let Some(update) = m.poll_update_message.as_option() else {
        return Map::new();
    };
    let poll_id = update
        .poll_creation_message_key
        .as_option()
        .and_then(|k| k.id.clone())
        .unwrap_or_default();
    let mut out = object(json!({ "pollId": poll_id }));
    let Some(poll) = polls.get(&poll_id) else {
        out.insert("voteError".into(), "a poll this user never saw".into());
        return out;
    };
    let Some(vote) = update.vote.as_option() else {
        out.insert("voteError".into(), "no encrypted vote".into());
        return out;
    };
    let cipher = PollVoteCiphertext {
        enc_payload: vote.enc_payload.as_deref().unwrap_or_default(),
        enc_iv: vote.enc_iv.as_deref().unwrap_or_default(),
    };
    let voter = info.source.sender.to_non_ad().to_string();
    let voter_alt = info
        .source
        .sender_alt
        .as_ref()
        .map(|j| j.to_non_ad().to_string());
    // The voter keys the vote in the namespace it addressed the creator in.
    let (creator, creator_alt) = if info.source.sender.is_lid() {
        (
            poll.creator_lid.clone().unwrap_or_default(),
            Some(poll.creator_pn.clone()),
        )
    } else {
        (poll.creator_pn.clone(), poll.creator_lid.clone())
    };
    let fallback = match (&creator_alt, &voter_alt) {
        (Some(c), Some(v)) => Some(PollVoteAddressing {
            poll_creator_jid: c,
            voter_jid: v,
        }),
        _ => None,
    };
    let primary = PollVoteAddressing {
        poll_creator_jid: &creator,
        voter_jid: &voter,
    };
    match poll::decrypt_poll_vote_with_fallback(cipher, &poll.secret, &poll_id, primary, fallback) {
        Ok(hashes) => {
            let chosen: Vec<&str> = hashes
                .iter()
                .filter_map(|h| {
                    poll.options
                        .iter()
                        .find(|o| poll::compute_option_hash(o).as_slice() == h.as_slice())
                        .map(String::as_str)
                })
                .collect();
            out.insert("options".into(), json!(chosen));
        }
        Err(e) => {
            out.insert("voteError".into(), e.to_string().into());
        }
    }
    out
}

fn buttons_details(m: &wa::Message) -> Map<String, Value> {
    use wa::message::buttons_message::Header;
    let Some(b) = m.buttons_message.as_option() else {
        return Map::new();
    };
    let header = match &b.header {
        Some(Header::Text(t)) => Some(t.clone()),
        _ => None,
    };
    let buttons: Vec<Value> = b
        .buttons
        .iter()
        .map(|x| {
            json!({
                "buttonId": x.button_id,
                "displayText": x.button_text.as_option().and_then(|t| t.display_text.clone()),
            })
        })
        .collect();
    object(json!({
        "contentText": b.content_text,
        "headerText": header,
        "footerText": b.footer_text,
        "buttons": buttons,
    }))
}

fn list_details(m: &wa::Message) -> Map<String, Value> {
    let Some(l) = m.list_message.as_option() else {
        return Map::new();
    };
    let sections: Vec<Value> = l
        .sections
        .iter()
        .map(|s| {
            let rows: Vec<Value> = s
                .rows
                .iter()
                .map(|r| {
                    object(
                        json!({"title": r.title, "description": r.description, "rowId": r.row_id}),
                    )
                    .into()
                })
                .collect();
            object(json!({"title": s.title, "rows": rows})).into()
        })
        .collect();
    object(json!({
        "title": l.title,
        "description": l.description,
        "buttonText": l.button_text,
        "footerText": l.footer_text,
        "sections": sections,
    }))
}

fn template_details(m: &wa::Message) -> Map<String, Value> {
    use wa::hydrated_template_button::HydratedButton;
    use wa::message::template_message::{Format, hydrated_four_row_template::Title};
    let Some(t) = m.template_message.as_option() else {
        return Map::new();
    };
    let hydrated = match &t.format {
        Some(Format::HydratedFourRowTemplate(h)) => Some(&**h),
        _ => t.hydrated_template.as_option(),
    };
    let Some(h) = hydrated else {
        return Map::new();
    };
    let title = match &h.title {
        Some(Title::HydratedTitleText(s)) => Some(s.clone()),
        _ => None,
    };
    let file = match &h.title {
        Some(Title::ImageMessage(x)) => Some(file_fields(
            "image",
            &x.mimetype,
            &x.file_sha256,
            x.file_length,
            None,
        )),
        Some(Title::VideoMessage(x)) => Some(file_fields(
            "video",
            &x.mimetype,
            &x.file_sha256,
            x.file_length,
            None,
        )),
        Some(Title::DocumentMessage(x)) => Some(file_fields(
            "document",
            &x.mimetype,
            &x.file_sha256,
            x.file_length,
            x.file_name.as_ref(),
        )),
        _ => None,
    };
    let buttons: Vec<Value> = h
        .hydrated_buttons
        .iter()
        .map(|b| {
            let kind = match &b.hydrated_button {
                Some(HydratedButton::QuickReplyButton(q)) => {
                    json!({"quickReply": {"displayText": q.display_text, "id": q.id}})
                }
                Some(HydratedButton::UrlButton(u)) => {
                    json!({"urlButton": {"displayText": u.display_text, "url": u.url}})
                }
                Some(HydratedButton::CallButton(c)) => {
                    json!({"callButton": {"displayText": c.display_text, "phoneNumber": c.phone_number}})
                }
                None => json!({}),
            };
            let mut o = object(kind);
            o.insert("index".into(), json!(b.index));
            Value::Object(o)
        })
        .collect();
    object(json!({
        "title": title,
        "headerFile": file,
        "content": h.hydrated_content_text,
        "footer": h.hydrated_footer_text,
        "buttons": buttons,
    }))
}

/// `{"type", "mimetype", "fileSha256" (hex, as the sender declared it), "fileLength",
/// "fileName"?}` of a header file.
fn file_fields(
    kind: &str,
    mimetype: &Option<String>,
    sha256: &Option<Vec<u8>>,
    length: Option<u64>,
    file_name: Option<&String>,
) -> Value {
    let hex: Option<String> = sha256
        .as_ref()
        .map(|h| h.iter().map(|b| format!("{b:02x}")).collect());
    Value::Object(object(json!({
        "type": kind,
        "mimetype": mimetype,
        "fileSha256": hex,
        "fileLength": length,
        "fileName": file_name,
    })))
}

fn interactive_header_file(h: &wa::message::interactive_message::Header) -> Option<Value> {
    use wa::message::interactive_message::header::Media;
    Some(match h.media.as_ref()? {
        Media::ImageMessage(x) => {
            file_fields("image", &x.mimetype, &x.file_sha256, x.file_length, None)
        }
        Media::VideoMessage(x) => {
            file_fields("video", &x.mimetype, &x.file_sha256, x.file_length, None)
        }
        Media::DocumentMessage(x) => file_fields(
            "document",
            &x.mimetype,
            &x.file_sha256,
            x.file_length,
            x.file_name.as_ref(),
        ),
        _ => return None,
    })
}

/// The header file of an interactive message or template as a plain media message, so the
/// user's client can download it like any other (`None` when there is none).
pub fn header_file_message(message: &wa::Message) -> Option<wa::Message> {
    use wa::message::interactive_message::header::Media;
    use wa::message::template_message::{Format, hydrated_four_row_template::Title};
    use waproto::buffa::MessageField;
    let m = message.get_base_message();
    let mut out = wa::Message::default();
    if let Some(h) = m
        .interactive_message
        .as_option()
        .and_then(|i| i.header.as_option())
    {
        match h.media.as_ref()? {
            Media::ImageMessage(x) => out.image_message = MessageField::some((**x).clone()),
            Media::VideoMessage(x) => out.video_message = MessageField::some((**x).clone()),
            Media::DocumentMessage(x) => out.document_message = MessageField::some((**x).clone()),
            _ => return None,
        }
        return Some(out);
    }
    let t = m.template_message.as_option()?;
    let h = match &t.format {
        Some(Format::HydratedFourRowTemplate(h)) => Some(&**h),
        _ => t.hydrated_template.as_option(),
    }?;
    match h.title.as_ref()? {
        Title::ImageMessage(x) => out.image_message = MessageField::some((**x).clone()),
        Title::VideoMessage(x) => out.video_message = MessageField::some((**x).clone()),
        Title::DocumentMessage(x) => out.document_message = MessageField::some((**x).clone()),
        _ => return None,
    }
    Some(out)
}

/// Header title, body, footer and native flow buttons of an interactive message or card;
/// `cards` for a carousel; `headerFile` for a header image, video or document.
fn interactive_fields(i: &wa::message::InteractiveMessage) -> Map<String, Value> {
    use wa::message::interactive_message::InteractiveMessage as Payload;
    let mut out = object(json!({
        "title": i.header.as_option().and_then(|h| h.title.clone()),
        "headerFile": i.header.as_option().and_then(interactive_header_file),
        "body": i.body.as_option().and_then(|b| b.text.clone()),
        "footer": i.footer.as_option().and_then(|f| f.text.clone()),
    }));
    match &i.interactive_message {
        Some(Payload::NativeFlowMessage(nf)) => {
            let buttons: Vec<Value> = nf
                .buttons
                .iter()
                .map(|b| {
                    let params = b
                        .button_params_json
                        .as_deref()
                        .and_then(|p| serde_json::from_str::<Value>(p).ok());
                    object(json!({"name": b.name, "params": params})).into()
                })
                .collect();
            out.insert("buttons".into(), Value::Array(buttons));
        }
        Some(Payload::CarouselMessage(c)) => {
            let cards: Vec<Value> = c
                .cards
                .iter()
                .map(|card| Value::Object(interactive_fields(card)))
                .collect();
            out.insert("cards".into(), Value::Array(cards));
        }
        _ => {}
    }
    out
}

fn interactive_details(m: &wa::Message) -> Map<String, Value> {
    m.interactive_message
        .as_option()
        .map(interactive_fields)
        .unwrap_or_default()
}

/// Protocol messages: their type, and for a peer data request the keys it asks about.
fn protocol_details(m: &wa::Message) -> Map<String, Value> {
    let Some(p) = m.protocol_message.as_option() else {
        return Map::new();
    };
    let mut out = Map::new();
    if let Some(t) = p.r#type {
        out.insert("protocolType".into(), format!("{t:?}").into());
    }
    // EPHEMERAL_SETTING: the chat's new disappearing timer, in seconds (0: off).
    if let Some(seconds) = p.ephemeral_expiration {
        out.insert("ephemeralExpiration".into(), seconds.into());
    }
    if let Some(pdo) = p.peer_data_operation_request_message.as_option() {
        let keys: Vec<Value> = pdo
            .placeholder_message_resend_request
            .iter()
            .filter_map(|r| r.message_key.as_option())
            .map(|k| {
                object(json!({
                    "remoteJid": k.remote_jid,
                    "fromMe": k.from_me,
                    "id": k.id,
                    "participant": k.participant,
                }))
                .into()
            })
            .collect();
        if let Some(t) = pdo.peer_data_operation_request_type {
            out.insert("peerRequestType".into(), format!("{t:?}").into());
        }
        out.insert("placeholderResend".into(), Value::Array(keys));
    }
    out
}
