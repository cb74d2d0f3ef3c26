//! What a simulated user's client received, as the admin API shows it.

use serde::Serialize;
use wacore::proto_helpers::MessageExt;
use wacore::types::message::MessageInfo;
use wacore_binary::{Jid, JidExt as _, Server};
use waproto::whatsapp as wa;

/// One received message (`GET /admin/users/{phone}/inbox`).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InboxEntry {
    pub id: String,
    /// The sender's account, `PHONE@s.whatsapp.net`.
    pub from: String,
    /// The group chat (`ID@g.us`) a group message came in; `from` is then the member
    /// who sent it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mimetype: Option<String>,
    /// Audio: sent as a voice note.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ptt: Option<bool>,
    /// Document: the file name shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    /// The id of the message this one replies to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quoted_id: Option<String>,
    /// Hex SHA-256 of the media bytes the user's client downloaded and decrypted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Size of those bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_length: Option<u64>,
    /// Why the media could not be downloaded, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_error: Option<String>,
    pub timestamp: i64,
    /// The content of rich kinds (poll, poll_vote, buttons, list, template, interactive,
    /// protocol), flattened into the entry; see [`super::rich`].
    #[serde(flatten)]
    pub details: serde_json::Map<String, serde_json::Value>,
}

/// One received receipt (`GET /admin/users/{phone}/receipts`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReceiptEntry {
    pub id: String,
    pub from: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// The sender's account as a PN JID when known (LID senders map through `alt`).
pub fn account_of(sender: &Jid, alt: Option<&Jid>) -> String {
    let pn = match (sender.server, alt) {
        (Server::Lid | Server::HostedLid, Some(alt)) if alt.is_pn() => alt,
        _ => sender,
    };
    pn.to_non_ad().to_string()
}

/// The inbox row for a message (media fields without the download's hash); votes on the
/// user's own polls are decrypted with the secrets in `polls`.
pub fn entry(
    message: &wa::Message,
    info: &MessageInfo,
    polls: &super::rich::PollBook,
) -> InboxEntry {
    let base = message.get_base_message();
    let (kind, mimetype) = kind_of(base);
    let mut details = super::rich::details(message, base, info, polls);
    if info.source.chat.is_status_broadcast() {
        // A status story: say so, with the text story's background colour.
        details.insert("chat".into(), info.source.chat.to_string().into());
        if let Some(argb) = base
            .extended_text_message
            .as_option()
            .and_then(|t| t.background_argb)
        {
            details.insert("backgroundArgb".into(), argb.into());
        }
    }
    InboxEntry {
        id: info.id.to_string(),
        from: account_of(&info.source.sender, info.source.sender_alt.as_ref()),
        group: info
            .source
            .is_group
            .then(|| info.source.chat.to_non_ad().to_string()),
        kind: kind.to_string(),
        text: message
            .text_content()
            .map(str::to_owned)
            .or_else(|| reaction_text(base)),
        caption: message.get_caption().map(str::to_owned),
        mimetype,
        ptt: base.audio_message.as_option().and_then(|a| a.ptt),
        file_name: base
            .document_message
            .as_option()
            .and_then(|d| d.file_name.clone()),
        quoted_id: quoted_id(base),
        sha256: None,
        file_length: None,
        media_error: None,
        timestamp: info.timestamp.timestamp(),
        details,
    }
}

/// `stanza_id` of the reply context of any message kind that carries one.
fn quoted_id(m: &wa::Message) -> Option<String> {
    let contexts = [
        m.extended_text_message
            .as_option()
            .and_then(|x| x.context_info.as_option()),
        m.image_message
            .as_option()
            .and_then(|x| x.context_info.as_option()),
        m.video_message
            .as_option()
            .and_then(|x| x.context_info.as_option()),
        m.audio_message
            .as_option()
            .and_then(|x| x.context_info.as_option()),
        m.document_message
            .as_option()
            .and_then(|x| x.context_info.as_option()),
        m.sticker_message
            .as_option()
            .and_then(|x| x.context_info.as_option()),
        m.location_message
            .as_option()
            .and_then(|x| x.context_info.as_option()),
        m.contact_message
            .as_option()
            .and_then(|x| x.context_info.as_option()),
    ];
    contexts
        .into_iter()
        .flatten()
        .find_map(|c| c.stanza_id.clone())
        .or_else(|| super::rich::quoted_id(m))
}

fn reaction_text(base: &wa::Message) -> Option<String> {
    base.reaction_message.as_option()?.text.clone()
}

fn kind_of(m: &wa::Message) -> (&'static str, Option<String>) {
    if let Some(x) = m.image_message.as_option() {
        return ("image", x.mimetype.clone());
    }
    if let Some(x) = m.video_message.as_option() {
        return ("video", x.mimetype.clone());
    }
    if let Some(x) = m.audio_message.as_option() {
        return ("audio", x.mimetype.clone());
    }
    if let Some(x) = m.document_message.as_option() {
        return ("document", x.mimetype.clone());
    }
    if let Some(x) = m.sticker_message.as_option() {
        return ("sticker", x.mimetype.clone());
    }
    if let Some(kind) = super::rich::kind(m) {
        return (kind, None);
    }
    let kind = if m.conversation.is_some() || m.extended_text_message.is_set() {
        "text"
    } else if m.reaction_message.is_set() {
        "reaction"
    } else if m.location_message.is_set() {
        "location"
    } else if m.contact_message.is_set() {
        "contact"
    } else if m.protocol_message.is_set() {
        "protocol"
    } else {
        "unknown"
    };
    (kind, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lid_senders_are_shown_by_phone_number() {
        let lid: Jid = "123456789012345:1@lid".parse().expect("jid");
        let pn: Jid = "5511999990001:1@s.whatsapp.net".parse().expect("jid");
        assert_eq!(account_of(&lid, Some(&pn)), "5511999990001@s.whatsapp.net");
        assert_eq!(account_of(&pn, None), "5511999990001@s.whatsapp.net");
        assert_eq!(account_of(&lid, None), "123456789012345@lid");
    }

    #[test]
    fn kinds() {
        let text = wa::Message {
            conversation: Some("hi".into()),
            ..Default::default()
        };
        assert_eq!(kind_of(&text).0, "text");
        let image = wa::Message {
            image_message: waproto::buffa::MessageField::some(wa::message::ImageMessage {
                mimetype: Some("image/png".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(kind_of(&image), ("image", Some("image/png".into())));
    }
}
