//! Message send and message action shapes (`/:session/message/...`).
//!
//! Every send accepts an optional `quoted` object to reply to a message.

use super::bounded;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::common::Quoted;

/// Body of `POST /:session/message/send/text`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendTextRequest {
    /// Recipient phone number (with country code) or JID.
    pub phone: String,
    /// Message text.
    pub text: String,
    /// Message to reply to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quoted: Option<Quoted>,
}

/// Body of `POST /:session/message/send/image`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendImageRequest {
    /// Recipient phone number or JID.
    pub phone: String,
    /// Image as base64 or an http(s) URL.
    pub image: String,
    /// Image caption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    /// MIME type; detected when absent.
    #[serde(default, alias = "mimeType", skip_serializing_if = "Option::is_none")]
    pub mimetype: Option<String>,
    /// Message to reply to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quoted: Option<Quoted>,
}

/// Body of `POST /:session/message/send/audio`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendAudioRequest {
    /// Recipient phone number or JID.
    pub phone: String,
    /// Audio as base64 or an http(s) URL.
    pub audio: String,
    /// Send as a push-to-talk voice note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ptt: Option<bool>,
    /// MIME type; `audio/ogg; codecs=opus` when absent.
    #[serde(default, alias = "mimeType", skip_serializing_if = "Option::is_none")]
    pub mimetype: Option<String>,
    /// Message to reply to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quoted: Option<Quoted>,
}

/// Body of `POST /:session/message/send/video`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendVideoRequest {
    /// Recipient phone number or JID.
    pub phone: String,
    /// Video as base64 or an http(s) URL.
    pub video: String,
    /// Video caption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    /// MIME type; `video/mp4` when absent.
    #[serde(default, alias = "mimeType", skip_serializing_if = "Option::is_none")]
    pub mimetype: Option<String>,
    /// Message to reply to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quoted: Option<Quoted>,
}

/// Body of `POST /:session/message/send/document`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendDocumentRequest {
    /// Recipient phone number or JID.
    pub phone: String,
    /// Document as base64 or an http(s) URL.
    pub document: String,
    /// File name shown to the recipient (`fileName` is accepted too).
    #[serde(alias = "fileName")]
    pub filename: String,
    /// MIME type; `application/octet-stream` when absent.
    #[serde(default, alias = "mimeType", skip_serializing_if = "Option::is_none")]
    pub mimetype: Option<String>,
    /// Message to reply to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quoted: Option<Quoted>,
}

/// Body of `POST /:session/message/send/sticker`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendStickerRequest {
    /// Recipient phone number or JID.
    pub phone: String,
    /// WebP sticker as base64 or an http(s) URL.
    pub sticker: String,
    /// MIME type; `image/webp` when absent.
    #[serde(default, alias = "mimeType", skip_serializing_if = "Option::is_none")]
    pub mimetype: Option<String>,
    /// Message to reply to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quoted: Option<Quoted>,
}

/// Body of `POST /:session/message/send/location`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendLocationRequest {
    /// Recipient phone number or JID.
    pub phone: String,
    /// Latitude in degrees (0 is valid).
    pub latitude: f64,
    /// Longitude in degrees (0 is valid).
    pub longitude: f64,
    /// Location name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Message to reply to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quoted: Option<Quoted>,
}

/// Body of `POST /:session/message/send/contact`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendContactRequest {
    /// Recipient phone number or JID.
    pub phone: String,
    /// Name of the shared contact.
    pub contact_name: String,
    /// Phone number of the shared contact.
    pub contact_phone: String,
    /// Message to reply to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quoted: Option<Quoted>,
}

/// Body of `POST /:session/message/send/poll`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendPollRequest {
    /// Recipient phone number or JID.
    pub phone: String,
    /// Poll question.
    pub name: String,
    /// Poll options.
    #[serde(deserialize_with = "bounded::vec::<_, _, { bounded::MESSAGE_PARTS }>")]
    pub options: Vec<String>,
    /// Max selectable options (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selectable_count: Option<i64>,
    /// Message to reply to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quoted: Option<Quoted>,
}

/// One reply button of a buttons message.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ButtonItem {
    /// Id returned when the button is pressed.
    pub button_id: String,
    /// Button label.
    pub display_text: String,
}

/// Body of `POST /:session/message/send/buttons`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendButtonsRequest {
    /// Recipient phone number or JID.
    pub phone: String,
    /// Message body.
    pub content_text: String,
    /// Buttons (1 to 3).
    #[serde(deserialize_with = "bounded::vec::<_, _, { bounded::MESSAGE_PARTS }>")]
    pub buttons: Vec<ButtonItem>,
    /// Header text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_text: Option<String>,
    /// Footer text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub footer_text: Option<String>,
    /// Message to reply to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quoted: Option<Quoted>,
}

/// One selectable row of a list section.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListRow {
    /// Row title.
    pub title: String,
    /// Row description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Id returned when the row is selected.
    pub row_id: String,
}

/// One section of a list message.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListSection {
    /// Section title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Rows of the section.
    #[serde(deserialize_with = "bounded::vec::<_, _, { bounded::MESSAGE_PARTS }>")]
    pub rows: Vec<ListRow>,
}

/// Body of `POST /:session/message/send/list`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendListRequest {
    /// Recipient phone number or JID.
    pub phone: String,
    /// List title.
    pub title: String,
    /// List description.
    pub description: String,
    /// Label of the button opening the list.
    pub button_text: String,
    /// Sections with rows (at least one).
    #[serde(deserialize_with = "bounded::vec::<_, _, { bounded::MESSAGE_PARTS }>")]
    pub sections: Vec<ListSection>,
    /// Footer text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub footer_text: Option<String>,
    /// Message to reply to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quoted: Option<Quoted>,
}

/// One native flow button, e.g. `{"name":"quick_reply","params":{"display_text":"Buy","id":"buy"}}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NativeFlowButton {
    /// Button kind: `quick_reply`, `cta_url`, `cta_call`, `cta_copy`, ...
    pub name: String,
    /// Button parameters, depending on the kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub params: Option<Box<serde_json::value::RawValue>>,
}

/// Body of `POST /:session/message/send/interactive`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendInteractiveRequest {
    /// Recipient phone number or JID.
    pub phone: String,
    /// Header title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Message body.
    pub body: String,
    /// Footer text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub footer: Option<String>,
    /// Native flow buttons (at least one).
    #[serde(deserialize_with = "bounded::vec::<_, _, { bounded::MESSAGE_PARTS }>")]
    pub buttons: Vec<NativeFlowButton>,
    /// Header image as base64 or an http(s) URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Header video as base64 or an http(s) URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<String>,
    /// MIME type of the header media.
    #[serde(default, alias = "mimeType", skip_serializing_if = "Option::is_none")]
    pub mimetype: Option<String>,
    /// Message to reply to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quoted: Option<Quoted>,
}

/// Quick reply part of a template button.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateQuickReply {
    /// Button label.
    pub display_text: String,
    /// Id returned when pressed.
    pub id: String,
}

/// URL part of a template button.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateUrlButton {
    /// Button label.
    pub display_text: String,
    /// URL opened when pressed.
    pub url: String,
}

/// Call part of a template button.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateCallButton {
    /// Button label.
    pub display_text: String,
    /// Phone number called when pressed.
    pub phone_number: String,
}

/// One template button; set exactly one of `quickReply`, `urlButton`, `callButton`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateButton {
    /// Position of the button.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// Quick reply button.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quick_reply: Option<TemplateQuickReply>,
    /// URL button.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_button: Option<TemplateUrlButton>,
    /// Call button.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_button: Option<TemplateCallButton>,
}

/// Body of `POST /:session/message/send/template`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendTemplateRequest {
    /// Recipient phone number or JID.
    pub phone: String,
    /// Header title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Message body.
    pub content: String,
    /// Footer text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub footer: Option<String>,
    /// Template buttons (at least one).
    #[serde(deserialize_with = "bounded::vec::<_, _, { bounded::MESSAGE_PARTS }>")]
    pub buttons: Vec<TemplateButton>,
    /// Header image as base64 or an http(s) URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Header video as base64 or an http(s) URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<String>,
    /// Header document as base64 or an http(s) URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<String>,
    /// MIME type of the header media.
    #[serde(default, alias = "mimeType", skip_serializing_if = "Option::is_none")]
    pub mimetype: Option<String>,
    /// File name of the header document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// Message to reply to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quoted: Option<Quoted>,
}

/// Header of a carousel card.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CarouselCardHeader {
    /// Card title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Card image as base64 or an http(s) URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Card video as base64 or an http(s) URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<String>,
    /// MIME type of the card media.
    #[serde(default, alias = "mimeType", skip_serializing_if = "Option::is_none")]
    pub mimetype: Option<String>,
}

/// One card of a carousel message.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CarouselCard {
    /// Card header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<CarouselCardHeader>,
    /// Card body text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Card footer text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub footer: Option<String>,
    /// Card buttons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "bounded::opt_vec::<_, _, { bounded::MESSAGE_PARTS }>")]
    pub buttons: Option<Vec<NativeFlowButton>>,
}

/// Body of `POST /:session/message/send/carousel`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendCarouselRequest {
    /// Recipient phone number or JID.
    pub phone: String,
    /// Message title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Message body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Footer text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub footer: Option<String>,
    /// Cards (at least one).
    #[serde(deserialize_with = "bounded::vec::<_, _, { bounded::MESSAGE_PARTS }>")]
    pub cards: Vec<CarouselCard>,
    /// Message to reply to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quoted: Option<Quoted>,
}

/// Body of `POST /:session/message/react`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendReactionRequest {
    /// Chat phone number or JID.
    pub phone: String,
    /// Id of the message to react to.
    pub message_id: String,
    /// Emoji; empty removes the reaction.
    pub emoji: String,
}

/// Body of `POST /:session/message/delete`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeleteMessageRequest {
    /// Chat phone number or JID.
    pub phone: String,
    /// Id of the message to delete.
    pub message_id: String,
    /// `true` deletes for me only; otherwise for everyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_me: Option<bool>,
}

/// Body of `POST /:session/message/edit`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EditMessageRequest {
    /// Chat phone number or JID.
    pub phone: String,
    /// Id of the message to edit.
    pub message_id: String,
    /// Replacement text.
    pub new_text: String,
}

/// Body of `POST /:session/message/poll/vote`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PollVoteRequest {
    /// Chat phone number or JID.
    pub phone: String,
    /// Id of the poll message.
    pub poll_message_id: String,
    /// Names of the chosen options.
    #[serde(deserialize_with = "bounded::vec::<_, _, { bounded::MESSAGE_PARTS }>")]
    pub selected_options: Vec<String>,
}

/// Body of `POST /:session/message/request-unavailable`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestUnavailableRequest {
    /// Chat JID (0.2.8 spelling: `chatId`).
    #[serde(alias = "chatId")]
    pub chat_jid: String,
    /// Id of the missing message.
    pub message_id: String,
    /// Sender JID (groups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_jid: Option<String>,
}

/// Result of `POST /:session/message/request-unavailable`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestUnavailableResponse {
    /// Outcome message.
    pub message: String,
    /// Id of the request sent to the phone.
    pub id: String,
}
