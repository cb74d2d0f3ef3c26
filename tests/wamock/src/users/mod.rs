//! Simulated users: each is a real whatsapp-rust client (in-memory store) playing the
//! phone (device 0) of its own account, logged in to this same wamock. wamock stays a
//! relay: the users' Signal sessions, encryption and decryption are the library's.

pub mod actions;
pub mod events;
pub mod groups;
pub mod inbox;
pub mod media;
pub mod presence;
pub mod profile;
pub mod register;
pub mod rich;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use wacore::store::InMemoryBackend;
use wacore::store::traits::{DeviceStore, LidPnMappingEntry, ProtocolStore};
use wacore_binary::{Jid, Server};
use waproto::whatsapp as wa;
use whatsapp_rust::bot::{Bot, BotHandle};
use whatsapp_rust::client::Client;
use whatsapp_rust::transport::TokioWebSocketTransportFactory;

use crate::nodes::unix_now;
use crate::pairing::valid_phone;
use crate::state::State;
use events::Recorder;
use inbox::{InboxEntry, ReceiptEntry};

/// How long a new user's client may take to log in.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a user's send may take (device lists, pre-keys, encryption).
const SEND_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Error)]
pub enum UserError {
    #[error("{0}")]
    BadRequest(String),
    #[error("no simulated user with this phone number")]
    NotFound,
    #[error("timed out: {0}")]
    Timeout(&'static str),
    #[error("the user's client failed: {0}")]
    Client(String),
}

/// One simulated user.
pub struct SimUser {
    pub phone: String,
    pub jid: String,
    client: Arc<Client>,
    handle: tokio::sync::Mutex<Option<BotHandle>>,
    recorder: Arc<Recorder>,
}

impl SimUser {
    pub fn client(&self) -> &Arc<Client> {
        &self.client
    }

    pub fn inbox(&self) -> Vec<InboxEntry> {
        self.recorder.inbox()
    }

    pub fn receipts(&self) -> Vec<ReceiptEntry> {
        self.recorder.receipts()
    }

    /// The presences the user's client saw, oldest first.
    pub fn presences(&self) -> Vec<presence::PresenceEntry> {
        self.recorder.presences()
    }

    /// The chat states (typing, recording, paused) the user's client saw, oldest first.
    pub fn chatstates(&self) -> Vec<presence::ChatstateEntry> {
        self.recorder.chatstates()
    }

    /// Sends a text; returns the message id once the stanza is on the wire.
    pub async fn send_text(&self, to: &str, text: &str) -> Result<String, UserError> {
        let message = wa::Message {
            conversation: Some(text.to_string()),
            ..Default::default()
        };
        self.send(to, message).await
    }

    /// Sends a poll (whatsapp-rust's own poll builder: v3 for one choice, a fresh message
    /// secret); keeps the secret so the votes on it show decrypted in the inbox.
    pub async fn send_poll(&self, to: &str, poll: &PollRequest) -> Result<String, UserError> {
        let to = user_jid(to)?;
        let count = poll.selectable_count.unwrap_or(1);
        let created = tokio::time::timeout(
            SEND_TIMEOUT,
            self.client
                .polls()
                .create(to, &poll.name, &poll.options, count),
        )
        .await
        .map_err(|_| UserError::Timeout("sending the poll"))?;
        let (sent, secret) = created.map_err(|e| match e {
            whatsapp_rust::PollError::InvalidPoll(why) => UserError::BadRequest(why),
            other => UserError::Client(other.to_string()),
        })?;
        self.recorder.polls.insert(
            sent.message_id.clone(),
            rich::SentPoll {
                secret,
                options: poll.options.clone(),
                creator_pn: self.jid.clone(),
                creator_lid: self.client.lid().map(|j| j.to_non_ad().to_string()),
            },
        );
        Ok(sent.message_id)
    }

    /// Uploads a file and sends it; returns the message id.
    pub async fn send_media(
        &self,
        to: &str,
        request: &media::MediaRequest,
    ) -> Result<String, UserError> {
        let message = tokio::time::timeout(SEND_TIMEOUT, media::message(&self.client, request))
            .await
            .map_err(|_| UserError::Timeout("uploading the media"))??;
        self.send(to, message).await
    }

    async fn send(&self, to: &str, message: wa::Message) -> Result<String, UserError> {
        let to = user_jid(to)?;
        let sent = tokio::time::timeout(SEND_TIMEOUT, self.client.send_message(to, message))
            .await
            .map_err(|_| UserError::Timeout("sending the message"))?
            .map_err(|e| UserError::Client(e.to_string()))?;
        Ok(sent.message_id)
    }

    async fn shutdown(&self) {
        if let Some(handle) = self.handle.lock().await.take()
            && tokio::time::timeout(Duration::from_secs(5), handle.shutdown())
                .await
                .is_err()
        {
            tracing::warn!(phone = %self.phone, "simulated user did not shut down within 5 s");
        }
    }
}

/// `"poll": {"name", "options": [...], "selectableCount"?}` of an admin send.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PollRequest {
    pub name: String,
    pub options: Vec<String>,
    #[serde(default)]
    pub selectable_count: Option<u32>,
}

/// A `to` the admin API accepts: a user JID (`PHONE@s.whatsapp.net`, `LID@lid`) or
/// bare digits.
pub fn user_jid(to: &str) -> Result<Jid, UserError> {
    let to = to.trim();
    let jid: Jid = if !to.is_empty() && to.bytes().all(|b| b.is_ascii_digit()) {
        Jid::pn(to)
    } else {
        to.parse()
            .map_err(|e| UserError::BadRequest(format!("invalid jid {to:?}: {e}")))?
    };
    if !matches!(jid.server, Server::Pn | Server::Lid | Server::Group) {
        return Err(UserError::BadRequest(format!(
            "{to} is not a user or group JID (status and newsletters are not modelled yet)"
        )));
    }
    Ok(jid)
}

#[derive(Default)]
pub struct Users {
    map: tokio::sync::Mutex<HashMap<String, Arc<SimUser>>>,
}

impl Users {
    pub async fn get(&self, phone: &str) -> Result<Arc<SimUser>, UserError> {
        self.map
            .lock()
            .await
            .get(phone)
            .cloned()
            .ok_or(UserError::NotFound)
    }

    /// Stops every user's client (before the server stops, or they would reconnect).
    pub async fn shutdown_all(&self) {
        let users: Vec<Arc<SimUser>> = self.map.lock().await.drain().map(|(_, u)| u).collect();
        for u in users {
            u.shutdown().await;
        }
    }
}

/// Creates the user (its account if needed, its phone as device 0, its client) and
/// waits until the client is logged in. Idempotent: an existing user is returned.
pub async fn create(
    state: &Arc<State>,
    phone: &str,
    push_name: Option<String>,
) -> Result<Arc<SimUser>, UserError> {
    if !valid_phone(phone) {
        return Err(UserError::BadRequest(
            "phone must be 5-20 digits without a leading 0".into(),
        ));
    }
    let mut map = state.users.map.lock().await;
    if let Some(user) = map.get(phone) {
        return Ok(user.clone());
    }
    let (key, raw_id, lid, registration_id) = state.ensure_account(phone, push_name.clone());
    let keys = register::AccountKeys {
        phone,
        lid: &lid,
        key: &key,
        raw_id,
        registration_id,
    };
    let name = push_name.unwrap_or_else(|| phone.to_string());
    let (client_device, record) =
        register::primary(&keys, &name).map_err(|e| UserError::Client(e.to_string()))?;
    state.register_primary(phone, record);

    let user = start_client(state, phone, &lid, client_device)
        .await
        .map_err(|e| UserError::Client(format!("{e:#}")))?;
    if let Err(e) = user.client.wait_for_connected(LOGIN_TIMEOUT).await {
        user.shutdown().await;
        return Err(UserError::Client(format!("did not log in: {e}")));
    }
    tracing::info!(jid = %user.jid, "simulated user logged in");
    map.insert(phone.to_string(), user.clone());
    Ok(user)
}

async fn start_client(
    state: &State,
    phone: &str,
    lid: &str,
    device: wacore::store::Device,
) -> anyhow::Result<Arc<SimUser>> {
    let backend = Arc::new(InMemoryBackend::new());
    backend.save(&device).await?;
    let now = i64::try_from(unix_now()).unwrap_or(0);
    backend
        .put_lid_mapping(&LidPnMappingEntry {
            lid: lid.to_string(),
            phone_number: phone.to_string(),
            created_at: now,
            updated_at: now,
            learning_source: "pairing".into(),
        })
        .await?;
    let bot = Bot::builder()
        .with_backend_arc(backend)
        .with_transport_factory(
            TokioWebSocketTransportFactory::new().with_url(format!("ws://{}/ws/chat", state.addr)),
        )
        .with_http_client(crate::http_client::RoutingHttpClient::new(state.addr))
        .with_runtime(whatsapp_rust::TokioRuntime)
        .with_version((2, 3000, 1))
        .build()
        .await?;
    let client = bot.client();
    // A phone in use: delivery receipts are plain (not `inactive`).
    client.set_force_active_delivery_receipts(true);
    let recorder = Arc::new(Recorder::default());
    recorder.set_client(&client);
    client.subscribe_handler(recorder.clone()).detach();
    let handle = bot.spawn();
    Ok(Arc::new(SimUser {
        phone: phone.to_string(),
        jid: format!("{phone}@s.whatsapp.net"),
        client,
        handle: tokio::sync::Mutex::new(Some(handle)),
        recorder,
    }))
}
