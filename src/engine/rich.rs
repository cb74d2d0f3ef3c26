//! Rich sends and the actions around them: messages that need extra stanza nodes (legacy
//! buttons and lists announce themselves in a `<biz>` node), poll votes, and asking the phone
//! for a message this device could not decrypt.

use std::sync::Arc;

use whatsapp_rust::{
    Jid, NodeBuilder, NodeFilter,
    send::SendOptions,
    wacore::{
        proto_helpers::MessageExt,
        types::message::{MessageInfo, MessageSource},
    },
    wacore_binary::{JidExt, Node},
    waproto::whatsapp as wa,
};

use super::{
    Engine, EngineError,
    events::{Envelope, poll_vote::PollVote},
};
use crate::{
    media::{MediaKind, input::MediaFile},
    store::{Store, poll::PollRow},
};

/// An uploaded header file of an interactive, template or carousel message.
#[derive(Debug, Clone)]
pub enum HeaderMedia {
    Image(wa::message::ImageMessage),
    Video(wa::message::VideoMessage),
    Document(wa::message::DocumentMessage),
}

/// The poll creation content of a message, whichever version carries it.
pub fn poll_of(m: &wa::Message) -> Option<&wa::message::PollCreationMessage> {
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

/// The stored form of a poll message (`None` for other messages and polls without a secret,
/// on which no vote could be encrypted).
pub fn poll_row(message: &wa::Message, e: &Envelope<'_>) -> Option<PollRow> {
    let base = message.get_base_message();
    let poll = poll_of(base)?;
    let secret = [message, base]
        .into_iter()
        .find_map(|m| m.message_context_info.as_option()?.message_secret.clone())?;
    let options: Vec<&str> = poll
        .options
        .iter()
        .filter_map(|o| o.option_name.as_deref())
        .collect();
    Some(PollRow {
        chat_jid: e.chat.to_non_ad().to_string(),
        msg_id: e.id.to_string(),
        creator_jid: e.sender.to_non_ad().to_string(),
        name: poll.name.clone().unwrap_or_default(),
        options: serde_json::to_string(&options).unwrap_or_else(|_| "[]".into()),
        selectable_count: poll
            .selectable_options_count
            .and_then(|c| i32::try_from(c).ok())
            .unwrap_or(0),
        secret,
    })
}

/// Keeps a poll (sent or received) so the session can vote on it later.
pub(super) async fn remember_poll(
    store: &dyn Store,
    session_id: uuid::Uuid,
    message: &wa::Message,
    e: &Envelope<'_>,
) -> crate::store::StoreResult<()> {
    match poll_row(message, e) {
        Some(row) => store.save_poll(session_id, &row).await,
        None => Ok(()),
    }
}

/// The stored and announced form of a vote the session cast: the poll's key, without the
/// encrypted vote (whatsapp-rust builds and encrypts that one; its content is the names).
fn vote_summary(chat: &Jid, poll: &PollRow, creator: &Jid, me: &Jid) -> wa::Message {
    use whatsapp_rust::waproto::buffa::MessageField;
    let update = wa::message::PollUpdateMessage {
        poll_creation_message_key: MessageField::some(wa::MessageKey {
            remote_jid: Some(chat.to_string()),
            from_me: Some(me.is_same_user_as(creator)),
            id: Some(poll.msg_id.clone()),
            participant: chat.is_group().then(|| creator.to_string()),
        }),
        sender_timestamp_ms: Some(chrono::Utc::now().timestamp_millis()),
        ..Default::default()
    };
    wa::Message {
        poll_update_message: MessageField::some(update),
        ..Default::default()
    }
}

/// `<biz>` for legacy interactive messages, as whatsmeow announces them: `<buttons/>` for
/// buttons, `<list v="2" type="single_select"/>` for lists. whatsapp-rust adds the native
/// flow one for interactive messages by itself.
pub fn biz_node(kind: &str) -> Option<Node> {
    let inner = match kind {
        "buttons" => NodeBuilder::new("buttons").build(),
        "list" => NodeBuilder::new("list")
            .attr("v", "2")
            .attr("type", "single_select")
            .build(),
        _ => return None,
    };
    Some(NodeBuilder::new("biz").children([inner]).build())
}

impl Engine {
    /// Encrypts and uploads a header file (image, video or document) and describes it as the
    /// message part that carries it. Nothing is stored beyond the message itself.
    pub async fn upload_header(
        &self,
        name: &str,
        kind: MediaKind,
        file: MediaFile,
        file_name: Option<String>,
    ) -> Result<HeaderMedia, EngineError> {
        let up = self.upload_media(name, kind, file.bytes).await?;
        // The same message parts a media send builds, without caption; the header keeps one.
        let described = super::media::OutgoingMedia {
            kind,
            bytes: Vec::new(),
            mimetype: file.mimetype,
            caption: None,
            file_name,
            ptt: false,
        };
        let mut m = super::media::media_message(&described, up);
        let header = match kind {
            MediaKind::Video => m.video_message.take().map(HeaderMedia::Video),
            MediaKind::Document => m.document_message.take().map(HeaderMedia::Document),
            _ => m.image_message.take().map(HeaderMedia::Image),
        };
        header.ok_or_else(|| EngineError::Send(format!("{kind:?} cannot be a header file")))
    }

    /// Sends `message` with extra stanza children and records it like [`Engine::send`].
    pub async fn send_with_nodes(
        &self,
        name: &str,
        to: Jid,
        message: wa::Message,
        nodes: Vec<Node>,
    ) -> Result<String, EngineError> {
        let live = self.connected(name)?;
        let options = SendOptions::default().with_extra_stanza_nodes(nodes);
        let client = live.client().clone();
        live.send_recorded(&to, &message, None, || async {
            client
                .send_message_with_options(to.clone(), message.clone(), options)
                .await
                .map(|r| r.message_id)
                .map_err(|e| EngineError::Send(e.to_string()))
        })
        .await
    }

    /// Votes `options` (names, already checked against the poll) on a stored poll, then records
    /// the vote as others' votes are: a `poll_vote` message with the names, announced as
    /// `message.sent` with `pollVote`, and the session's latest vote in `poll_votes` (an empty
    /// selection is kept as the withdrawn vote).
    pub async fn vote_poll(
        &self,
        name: &str,
        chat: Jid,
        poll: &PollRow,
        options: &[String],
    ) -> Result<String, EngineError> {
        let live = self.connected(name)?;
        let creator: Jid = poll
            .creator_jid
            .parse()
            .map_err(|e| EngineError::Send(format!("failed to build poll vote: {e}")))?;
        let client = live.client().clone();
        let me = client
            .pn()
            .ok_or_else(|| EngineError::NotConnected(name.into()))?;
        let vote = PollVote {
            chat_jid: poll.chat_jid.clone(),
            poll_msg_id: poll.msg_id.clone(),
            voter: me.to_non_ad().to_string(),
            options: options.to_vec(),
        };
        let summary = vote_summary(&chat, poll, &creator, &me);
        live.send_recorded(&chat, &summary, Some(vote), || async {
            client
                .polls()
                .vote(chat.clone(), &poll.msg_id, &creator, &poll.secret, options)
                .await
                .map(|r| r.message_id)
                .map_err(|e| EngineError::Send(e.to_string()))
        })
        .await
    }

    /// Asks the account's phone to resend a message this device could not decrypt (a peer
    /// `PLACEHOLDER_MESSAGE_RESEND` request). `sender` is the author in groups; in a direct
    /// chat the author is the chat unless it is our own account. Returns the id of the peer
    /// message, or `None` when nothing was sent: whatsapp-rust asks once per message.
    pub async fn request_unavailable(
        &self,
        name: &str,
        chat: Jid,
        sender: Option<Jid>,
        message_id: &str,
    ) -> Result<Option<String>, EngineError> {
        let live = self.connected(name)?;
        let client = live.client();
        let sender = sender.unwrap_or_else(|| chat.clone());
        let own = [client.pn(), client.lid()];
        let is_from_me = own.iter().flatten().any(|me| me.is_same_user_as(&sender));
        let info = MessageInfo {
            source: MessageSource {
                is_group: chat.is_group(),
                chat,
                sender,
                is_from_me,
                ..Default::default()
            },
            id: message_id.into(),
            ..Default::default()
        };
        // whatsapp-rust does not return the request's id; its stanza does. The waiter is
        // resolved as the stanza is built, so it is ready once the send returns.
        let mut stanza = client.wait_for_sent_node(
            NodeFilter::tag("message")
                .attr("category", "peer")
                .attr("push_priority", "high_force"),
        );
        client
            .send_pdo_placeholder_resend_request(&Arc::new(info))
            .await
            .map_err(|e| EngineError::Send(e.to_string()))?;
        Ok(stanza
            .try_recv()
            .ok()
            .flatten()
            .and_then(|node| node.attrs().optional_string("id").map(|id| id.to_string())))
    }
}
