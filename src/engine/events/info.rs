//! The keys OnWapp's message events carry (wire-facts 9.3): `Info` (whatsmeow's MessageInfo),
//! `Message` (the protobuf) and the `Is*` flags, for `message.received`, `message.sent`,
//! `message.reaction`, `message.edited` and `message.deleted` alike.

use serde_json::{Value, json};
use whatsapp_rust::{wacore::proto_helpers::MessageExt, waproto::whatsapp as wa};

use super::Envelope;
use super::payload::{opt_jid, proto, time};

/// `Info`, `Message` and the flags of one message.
pub fn message_fields(message: &wa::Message, e: &Envelope<'_>) -> Value {
    let base = message.get_base_message();
    let unwrapped = message
        .device_sent_message
        .as_option()
        .and_then(|d| d.message.as_option())
        .unwrap_or(message);
    let inner = unwrapped
        .ephemeral_message
        .as_option()
        .and_then(|w| w.message.as_option())
        .unwrap_or(unwrapped);
    json!({
        "Info": info_of(e, Some(message)),
        "Message": proto(base),
        "IsEphemeral": message.is_ephemeral(),
        "IsViewOnce": inner.view_once_message.is_set()
            || inner.view_once_message_v2.is_set()
            || inner.view_once_message_v2_extension.is_set(),
        "IsViewOnceV2": inner.view_once_message_v2.is_set(),
        "IsViewOnceV2Extension": inner.view_once_message_v2_extension.is_set(),
        "IsDocumentWithCaption": inner.document_with_caption_message.is_set(),
        "IsLottieSticker": base.lottie_sticker_message.is_set(),
        "IsBotInvoke": inner.bot_invoke_message.is_set(),
        "IsEdit": edit_attr(base) == "1",
        "UnavailableRequestID": "",
        "RetryCount": 0,
    })
}

/// whatsmeow's MessageInfo of a message: its source flattened, then its own fields.
pub fn info(e: &Envelope<'_>) -> Value {
    info_of(e, None)
}

fn info_of(e: &Envelope<'_>, message: Option<&wa::Message>) -> Value {
    let base = message.map(|m| m.get_base_message());
    let (kind, media) = base.map_or(("text", ""), wire_type);
    json!({
        "Chat": e.chat.to_string(),
        "Sender": e.sender.to_string(),
        "IsFromMe": e.from_me,
        "IsGroup": e.is_group,
        "AddressingMode": if e.sender.is_lid() { "lid" } else if e.is_group { "pn" } else { "" },
        "SenderAlt": opt_jid(e.sender_pn),
        "RecipientAlt": "",
        "BroadcastListOwner": "",
        "ID": e.id,
        "ServerID": 0,
        "Type": kind,
        "PushName": e.push_name,
        "Timestamp": chrono::DateTime::from_timestamp(e.timestamp, 0)
            .map_or_else(String::new, |t| time(&t)),
        "Category": "",
        "Multicast": false,
        "MediaType": media,
        "Edit": base.map_or("", edit_attr),
    })
}

/// The stanza `type` (`text`, `media`, `reaction`, `poll`) and `mediatype` WhatsApp gives a
/// message, as whatsmeow reports them.
fn wire_type(m: &wa::Message) -> (&'static str, &'static str) {
    let media = [
        (m.image_message.is_set(), "image"),
        (m.video_message.is_set(), "video"),
        (m.audio_message.is_set(), "audio"),
        (m.document_message.is_set(), "document"),
        (m.sticker_message.is_set(), "sticker"),
        (m.location_message.is_set(), "location"),
        (m.contact_message.is_set(), "vcard"),
        (m.contacts_array_message.is_set(), "contact_array"),
    ];
    if let Some((_, k)) = media.iter().find(|(set, _)| *set) {
        return ("media", k);
    }
    if m.reaction_message.is_set() {
        ("reaction", "")
    } else if m.poll_creation_message.is_set() || m.poll_creation_message_v3.is_set() {
        ("poll", "")
    } else {
        ("text", "")
    }
}

/// The stanza `edit` attribute: `1` an edit, `7` a revoke by its sender, `8` by an admin.
fn edit_attr(m: &wa::Message) -> &'static str {
    use wa::message::protocol_message::Type;
    match m.protocol_message.as_option() {
        Some(p) if p.r#type == Some(Type::MESSAGE_EDIT) => "1",
        Some(p) if p.r#type == Some(Type::REVOKE) => {
            if p.key
                .as_option()
                .is_some_and(|k| k.participant.is_some() && k.from_me != Some(true))
            {
                "8"
            } else {
                "7"
            }
        }
        _ => "",
    }
}

impl<'a> Envelope<'a> {
    /// The envelope of a message whatsapp-rust received (or saw sent from another device).
    pub fn received(info: &'a whatsapp_rust::types::message::MessageInfo) -> Self {
        Envelope {
            id: &info.id,
            chat: &info.source.chat,
            sender: &info.source.sender,
            sender_pn: info.source.sender_alt.as_ref().filter(|j| j.is_pn()),
            from_me: info.source.is_from_me,
            is_group: info.source.is_group,
            push_name: &info.push_name,
            timestamp: info.timestamp.timestamp(),
        }
    }
}
