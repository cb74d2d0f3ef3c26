//! The WhatsApp side: one whatsapp-rust client per connected session, held here on the node
//! that owns the session (design section 6).
//!
//! [`Engine`] starts, stops and inspects sessions; [`live::Live`] is one running client and the
//! task that turns its events into our session state.

pub mod calls;
pub mod chat;
pub mod contacts;
pub mod events;
mod gate;
pub mod groups;
mod http_client;
mod inbound;
pub mod jid;
mod live;
pub mod media;
pub mod metrics;
pub mod newsletters;
mod outgoing;
pub mod profile;
pub mod qr;
mod recorder;
pub mod rich;
pub mod settings;
pub mod status;

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use whatsapp_rust::wacore::store::traits::Backend;
use whatsapp_rust::{
    TokioRuntime, bot::Bot, transport::TokioWebSocketTransportFactory,
    types::events::ChannelEventHandler,
};

pub use live::{Live, State};

use crate::store::{SessionRecord, Store};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("session {0} is not connected")]
    NotConnected(String),
    #[error("session {0} is already paired")]
    AlreadyPaired(String),
    #[error("failed to start the WhatsApp client: {0}")]
    Start(String),
    /// The session's device store refused a write: this node does not hold the session's
    /// shard (any more), another node owns it.
    #[error("{0}")]
    Fenced(String),
    #[error("failed to pair phone: {0}")]
    Pair(String),
    /// The client runs but WhatsApp has not answered it yet: nothing can be asked of it.
    #[error("{0}")]
    NotReady(String),
    #[error("failed to send message: {0}")]
    Send(String),
    /// A chat, presence or app-state action WhatsApp (or the client) refused; the text
    /// says which.
    #[error("{0}")]
    Action(String),
    /// What the request names does not exist (an unknown group, invite, call id, ...).
    #[error("{0}")]
    NotFound(String),
    /// WhatsApp refused: the account may not do this (not a member, not an admin).
    #[error("{0}")]
    Forbidden(String),
    /// Input WhatsApp's own rules reject (a name too long); the text names the field.
    #[error("{0}")]
    Invalid(String),
    /// A send could not be journaled before the wire (`engine::outgoing`): nothing was sent.
    #[error("the message was not sent: {0}")]
    NotJournaled(String),
    /// WhatsApp took the message but it could not be recorded in history and the outbox;
    /// the client must not send it again (`id` is its id).
    #[error("message {id} was sent, but recording it failed: {why}")]
    NotRecorded { id: String, why: String },
}

/// Why a client did not start: [`EngineError::Fenced`] when somewhere down the error's sources
/// the store refused a write (the device row is created at the first start), else `Start`.
fn start_error(e: &(dyn std::error::Error + 'static)) -> EngineError {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(crate::store::StoreError::Fenced(msg)) =
            c.downcast_ref::<crate::store::StoreError>()
        {
            return EngineError::Fenced(msg.clone());
        }
        cause = c.source();
    }
    EngineError::Start(e.to_string())
}

/// Where a session's device keys live.
pub type BackendSource = Arc<dyn Fn(&SessionRecord) -> Arc<dyn Backend> + Send + Sync>;

/// How the engine reaches WhatsApp.
#[derive(Clone, Debug, Default)]
pub struct EngineConfig {
    /// `ws://...` of a test server (wamock builds only); `None`: WhatsApp itself.
    pub server_url: Option<String>,
    /// Where media files are kept (`app::media_blobs`); `None`: no media rows nor files.
    pub media: Option<MediaBlobs>,
    /// Largest media file sent or kept (0: the 100 MiB default).
    pub media_max_bytes: u64,
    /// Benchmarks only (`BENCH_ACK_BEFORE_STORE`, `wamock` builds): no inbound durability
    /// hook, messages acknowledged before they are stored.
    pub ack_before_store: bool,
    /// Each pairing QR is also drawn in the log (`LOG_FORMAT=console`), to scan from the
    /// terminal.
    pub qr_in_log: bool,
}

/// The blob store of media files, as the engine's configuration holds it.
#[derive(Clone)]
pub struct MediaBlobs(pub Arc<dyn crate::media::BlobStore>);

impl std::fmt::Debug for MediaBlobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.describe())
    }
}

/// What `connect` found or started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectOutcome {
    pub state: State,
    /// The device has no credentials yet: a QR (or a pairing code) is coming.
    pub needs_pairing: bool,
}

pub struct Engine {
    live: Mutex<HashMap<String, Arc<Live>>>,
    /// One connect, stop or release of a session at a time (`engine::gate`).
    gates: gate::Gates,
    backends: BackendSource,
    store: Arc<dyn Store>,
    config: EngineConfig,
    media: Option<Arc<media::MediaCtx>>,
    /// Deletes the journal rows of finished sends (`engine::outgoing`).
    journal: Arc<outgoing::Journal>,
}

/// How long `pairphone` waits for a client it just started to reach WhatsApp.
const PAIR_READY: Duration = Duration::from_secs(15);

/// How long a graceful client shutdown may take before it is aborted.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A failed resume is tried again after this, then twice as long each time, up to the last.
const RESUME_FIRST_RETRY: Duration = Duration::from_millis(500);
const RESUME_LAST_RETRY: Duration = Duration::from_secs(30);

impl Engine {
    pub fn new(store: Arc<dyn Store>, backends: BackendSource, config: EngineConfig) -> Self {
        Engine {
            live: Mutex::new(HashMap::new()),
            gates: gate::Gates::default(),
            backends,
            media: config.media.as_ref().map(|blobs| {
                Arc::new(media::MediaCtx::new(
                    store.clone(),
                    blobs.0.clone(),
                    config.max_media_bytes(),
                ))
            }),
            journal: Arc::new(outgoing::Journal::new(store.clone())),
            store,
            config,
        }
    }

    fn get(&self, name: &str) -> Option<Arc<Live>> {
        self.live.lock().ok()?.get(name).cloned()
    }

    fn forget(&self, name: &str) -> Option<Arc<Live>> {
        self.live.lock().ok()?.remove(name)
    }

    /// The live state of a session (`Disconnected` when no client runs).
    pub fn state(&self, name: &str) -> State {
        self.get(name).map_or(State::Disconnected, |l| l.state())
    }

    /// Why a connecting session is not connected yet, once its client has failed to reach
    /// WhatsApp (it keeps trying, with WhatsApp Web's backoff up to 15 minutes).
    pub fn connect_trouble(&self, name: &str) -> Option<String> {
        let live = self.get(name)?;
        if live.state() != State::Connecting {
            return None;
        }
        let failed = live.client().stats().reconnect_errors;
        (failed > 0).then(|| {
            format!(
                "cannot reach WhatsApp: {failed} connection attempt{} failed, still trying \
                 (check this node's network and DNS to web.whatsapp.com)",
                if failed == 1 { "" } else { "s" }
            )
        })
    }

    /// How many sessions run a client here, by state (`connecting`, `connected`,
    /// `disconnected`).
    pub fn state_counts(&self) -> [(State, usize); 3] {
        let mut out = [
            (State::Connecting, 0),
            (State::Connected, 0),
            (State::Disconnected, 0),
        ];
        if let Ok(live) = self.live.lock() {
            for l in live.values() {
                let st = l.state();
                if let Some(slot) = out.iter_mut().find(|(s, _)| *s == st) {
                    slot.1 += 1;
                }
            }
        }
        out
    }

    /// The QR text currently offered for pairing, if any.
    pub fn qr(&self, name: &str) -> Option<String> {
        self.get(name).and_then(|l| l.qr())
    }

    /// Whether this node may run the client of session `name`: it holds the session's shard
    /// (always, while fences are not enforced) and is not handing it off.
    fn may_run(&self, name: &str) -> bool {
        let shard = crate::store::fence::shard_of(name);
        let fences = self.store.fences();
        (!fences.enforced() || fences.held(shard).is_some()) && !self.gates.is_leaving(shard)
    }

    /// Starts the session's client unless one runs already. Single-flight: a connect that
    /// comes while another is starting waits for it and answers its client.
    pub async fn connect(
        self: &Arc<Self>,
        rec: &SessionRecord,
    ) -> Result<ConnectOutcome, EngineError> {
        let gate = self.gates.of(&rec.name);
        let _one = gate.lock().await;
        if !self.may_run(&rec.name) {
            return Err(EngineError::Fenced(format!(
                "session {}: this node does not hold its shard",
                rec.name
            )));
        }
        if let Some(l) = self.get(&rec.name)
            && l.state() != State::Disconnected
        {
            return Ok(ConnectOutcome {
                state: l.state(),
                needs_pairing: !l.client().is_logged_in() && l.client().pn().is_none(),
            });
        }
        let backend = (self.backends)(rec);
        let recorder = Arc::new(recorder::Recorder {
            name: rec.name.clone(),
            id: rec.id,
            store: self.store.clone(),
            media: self.media.clone(),
            journal: self.journal.clone(),
        });
        let transport = match &self.config.server_url {
            Some(url) => TokioWebSocketTransportFactory::new().with_url(url),
            None => TokioWebSocketTransportFactory::new(),
        };
        let mut builder = Bot::builder()
            .with_backend_arc(backend)
            .with_transport_factory(transport)
            .with_http_client(http_client::EngineHttp::new(
                self.config.server_url.as_deref(),
                // Ciphertext: the file, up to 16 bytes of padding and a 10-byte MAC.
                self.config.max_media_bytes() + 64 * 1024,
            ))
            .with_runtime(TokioRuntime);
        // Nothing is acknowledged to WhatsApp before it is stored (`engine::inbound`).
        if !self.config.ack_before_store {
            builder = builder.with_inbound_durability_hook(inbound::Durable {
                recorder: recorder.clone(),
            });
        }
        if self.config.server_url.is_some() {
            // A test server: never ask web.whatsapp.com for the current version.
            builder = builder.with_version((2, 3000, 1));
        }
        let bot = builder.build().await.map_err(|e| start_error(&e))?;
        let client = bot.client();
        let needs_pairing = client.pn().is_none();
        let (handler, events) = ChannelEventHandler::new();
        client.subscribe_handler(handler).detach();
        let live = Arc::new(Live::new(rec, client, recorder, self.config.qr_in_log));
        if let Ok(mut m) = self.live.lock() {
            m.insert(rec.name.clone(), live.clone());
        }
        live.start(
            bot.spawn(),
            events,
            Arc::downgrade(self),
            self.store.clone(),
        );
        Ok(ConnectOutcome {
            state: live.state(),
            needs_pairing,
        })
    }

    /// Asks WhatsApp for a code to type on the phone (the client must be connecting).
    pub async fn pair_phone(&self, name: &str, phone: &str) -> Result<String, EngineError> {
        let live = self
            .get(name)
            .ok_or_else(|| EngineError::NotConnected(name.into()))?;
        if live.client().pn().is_some() {
            return Err(EngineError::AlreadyPaired(name.into()));
        }
        // A client started just now (`pairphone` connects a disconnected session) takes a
        // pairing request once WhatsApp has answered it, which its first QR shows.
        let ready = tokio::time::Instant::now() + PAIR_READY;
        while live.qr().is_none() {
            if tokio::time::Instant::now() >= ready || live.state() == State::Disconnected {
                return Err(EngineError::NotReady(format!(
                    "session {name} has not reached WhatsApp yet (still connecting after {} s); \
                     ask for a pairing code again once GET /{name}/qr shows a QR code",
                    PAIR_READY.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        live.pair_with_code(phone)
            .await
            .map_err(|e| EngineError::Pair(e.to_string()))
    }

    /// Sends `message` to `to` from a connected session.
    pub async fn send(
        &self,
        name: &str,
        to: whatsapp_rust::Jid,
        message: whatsapp_rust::waproto::whatsapp::Message,
    ) -> Result<String, EngineError> {
        let live = self.connected(name)?;
        let client = live.client().clone();
        live.send_recorded(&to, &message, None, || async {
            client
                .send_message(to.clone(), message.clone())
                .await
                .map(|r| r.message_id)
                .map_err(|e| EngineError::Send(e.to_string()))
        })
        .await
    }

    /// Replaces the content of a message this session sent.
    pub async fn edit(
        &self,
        name: &str,
        to: whatsapp_rust::Jid,
        message_id: String,
        content: whatsapp_rust::waproto::whatsapp::Message,
    ) -> Result<String, EngineError> {
        let live = self.connected(name)?;
        let done =
            events::updates::own_change_message(&to, &message_id, None, Some(content.clone()));
        let client = live.client().clone();
        live.send_recorded(&to, &done, None, || async {
            client
                .edit_message(to.clone(), message_id, content)
                .await
                .map_err(|e| EngineError::Send(e.to_string()))
        })
        .await
    }

    /// Reacts to the message `key` in `chat`; an empty emoji removes the reaction.
    pub async fn react(
        &self,
        name: &str,
        chat: whatsapp_rust::Jid,
        key: whatsapp_rust::waproto::whatsapp::MessageKey,
        emoji: &str,
    ) -> Result<String, EngineError> {
        let live = self.connected(name)?;
        let done = events::updates::reaction_message(key.clone(), emoji);
        let client = live.client().clone();
        live.send_recorded(&chat, &done, None, || async {
            client
                .send_reaction(chat.clone(), key, emoji)
                .await
                .map(|r| r.message_id)
                .map_err(|e| EngineError::Send(e.to_string()))
        })
        .await
    }

    /// Deletes a message for everyone in `chat`.
    pub async fn revoke(
        &self,
        name: &str,
        chat: whatsapp_rust::Jid,
        message_id: &str,
        how: whatsapp_rust::RevokeType,
    ) -> Result<(), EngineError> {
        let live = self.connected(name)?;
        let original = match &how {
            whatsapp_rust::RevokeType::Admin { original_sender } => Some(original_sender.clone()),
            _ => None,
        };
        let done = events::updates::own_change_message(&chat, message_id, original.as_ref(), None);
        let client = live.client().clone();
        // Recorded under the id of the message it deletes.
        live.send_recorded(&chat, &done, None, || async {
            client
                .revoke_message(chat.clone(), message_id, how)
                .await
                .map(|()| message_id.to_string())
                .map_err(|e| EngineError::Send(e.to_string()))
        })
        .await
        .map(|_| ())
    }

    fn connected(&self, name: &str) -> Result<Arc<Live>, EngineError> {
        self.get(name)
            .filter(|l| l.state() == State::Connected)
            .ok_or_else(|| EngineError::NotConnected(name.into()))
    }

    /// Closes the client, keeping its credentials.
    pub async fn disconnect(&self, name: &str) {
        let gate = self.gates.of(name);
        let _one = gate.lock().await;
        if let Some(l) = self.forget(name) {
            let was = l.state();
            l.stop(SHUTDOWN_GRACE).await;
            if was != State::Disconnected {
                l.announce(
                    &*self.store,
                    events::session::disconnected(name, "disconnect requested"),
                )
                .await;
            }
        }
    }

    /// Logs the device out of WhatsApp (if connected), stops the client and deletes the
    /// device's keys: the next connect needs a new QR.
    pub async fn logout(&self, rec: &SessionRecord) {
        let gate = self.gates.of(&rec.name);
        let _one = gate.lock().await;
        let live = self.forget(&rec.name);
        let paired =
            rec.device_jid.is_some() || live.as_ref().is_some_and(|l| l.client().pn().is_some());
        if let Some(l) = live {
            l.logout(SHUTDOWN_GRACE).await;
            // whatsapp-rust's background saver writes dirty device state whenever it is
            // woken; flush it now, so no write of the old device lands after the wipe (a
            // connect would then find its credentials instead of asking for a QR).
            if let Err(e) = l.client().persistence_manager().flush().await {
                tracing::warn!(session = %rec.name, error = %e, "flushing the device before the wipe");
            }
        }
        self.wipe(rec).await;
        if paired {
            let event = events::session::logged_out_by_request(&rec.name);
            if let Err(e) = self.store.record_events(rec.id, &[event]).await {
                tracing::error!(session = %rec.name, error = %e, "storing session.logged_out");
            }
        }
    }

    /// Deletes the device keys and what the session row says about the device.
    pub(crate) async fn wipe(&self, rec: &SessionRecord) {
        if let Err(e) = self.store.delete_device_store(rec.id).await {
            tracing::error!(session = %rec.name, error = %e, "deleting device keys");
        }
        let cleared = crate::store::DeviceUpdate {
            status: State::Disconnected.as_str().into(),
            ..Default::default()
        };
        if let Err(e) = self.store.update_session_device(&rec.name, &cleared).await {
            tracing::error!(session = %rec.name, error = %e, "clearing device fields");
        }
    }

    /// Connects every stored session that has a paired device.
    pub async fn resume_paired(self: &Arc<Self>) {
        self.resume_paired_where(|_| true).await;
    }

    /// Connects the stored sessions with a paired device that `wanted` selects by name (the
    /// sessions of shards this node just acquired: no QR, the keys are in the database). A
    /// session whose start fails (a database blip, its own error) is tried again with backoff
    /// in the background until it runs, or this node no longer holds its shard, or it is no
    /// longer paired. Returns once every session was tried once.
    pub async fn resume_paired_where(self: &Arc<Self>, wanted: impl Fn(&str) -> bool) {
        let mut wait = RESUME_FIRST_RETRY;
        let sessions = loop {
            match self.store.list_sessions().await {
                Ok(s) => break s,
                Err(e) => {
                    tracing::error!(error = %e, retry_in = ?wait, "listing sessions to resume");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(RESUME_LAST_RETRY);
                }
            }
        };
        let chosen: Vec<&SessionRecord> = sessions
            .iter()
            .filter(|r| r.device_jid.is_some() && wanted(&r.name))
            .collect();
        for rec in chosen {
            if let Err(e) = self.resume(rec).await {
                tracing::warn!(session = %rec.name, error = %e, "resume failed; retrying with backoff");
                let this = self.clone();
                let name = rec.name.clone();
                tokio::spawn(async move { this.resume_with_backoff(name).await });
            }
        }
    }

    async fn resume(self: &Arc<Self>, rec: &SessionRecord) -> Result<(), EngineError> {
        self.connect(rec).await?;
        tracing::info!(session = %rec.name, "resuming paired session");
        Ok(())
    }

    /// Tries a session's resume again, waiting twice as long each time (up to 30 s), until it
    /// runs or there is nothing to resume here any more.
    async fn resume_with_backoff(self: Arc<Self>, name: String) {
        let mut wait = RESUME_FIRST_RETRY;
        loop {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(RESUME_LAST_RETRY);
            if !self.may_run(&name) {
                return;
            }
            let rec = match self.store.get_session(&name).await {
                Ok(Some(rec)) if rec.device_jid.is_some() => rec,
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(session = %name, error = %e, "resume: reading the session");
                    continue;
                }
            };
            match self.resume(&rec).await {
                Ok(()) => return,
                Err(EngineError::Fenced(_)) if !self.may_run(&name) => return,
                Err(e) => {
                    tracing::warn!(session = %name, error = %e, retry_in = ?wait, "resume failed")
                }
            }
        }
    }

    /// Stops the clients of the sessions `which` selects by name, keeping their keys and
    /// saying nothing to the outbox: their shard moved, and the new owner connects them.
    /// Each stop records what its client already handed over first. A session whose connect
    /// is in flight is stopped once that connect is done. Returns how many were stopped.
    pub async fn release_where(&self, which: impl Fn(&str) -> bool) -> usize {
        let mut names: BTreeSet<String> = match self.live.lock() {
            Ok(m) => m.keys().filter(|n| which(n)).cloned().collect(),
            Err(_) => BTreeSet::new(),
        };
        names.extend(self.gates.busy().into_iter().filter(|n| which(n)));
        let stopped = futures_util::future::join_all(names.iter().map(|name| async move {
            let gate = self.gates.of(name);
            let _one = gate.lock().await;
            match self.forget(name) {
                Some(l) => {
                    l.stop(SHUTDOWN_GRACE).await;
                    1
                }
                None => 0,
            }
        }))
        .await;
        stopped.into_iter().sum()
    }

    /// [`Self::release_where`] for a planned handoff of `shards`: while it runs, no client of
    /// theirs starts here (a resume retrying, an API connect).
    pub async fn hand_off(&self, shards: &BTreeSet<u32>) -> usize {
        self.gates.set_leaving(shards, true);
        self.release_where(|n| shards.contains(&crate::store::fence::shard_of(n)))
            .await
    }

    /// The handoff of `shards` is over (their fences let go): they are no longer marked.
    pub fn handed_off(&self, shards: &BTreeSet<u32>) {
        self.gates.set_leaving(shards, false);
    }

    /// Called by a live session whose client ended by itself (logged out, codes ran out).
    pub(crate) fn ended(&self, name: &str, live: &Arc<Live>) {
        if let Ok(mut m) = self.live.lock()
            && m.get(name).is_some_and(|l| Arc::ptr_eq(l, live))
        {
            m.remove(name);
        }
    }

    /// Stops every client (graceful shutdown of the node).
    pub async fn shutdown(&self) {
        let all: Vec<_> = self
            .live
            .lock()
            .map(|mut m| m.drain().map(|(_, l)| l).collect())
            .unwrap_or_default();
        for l in all {
            l.stop(SHUTDOWN_GRACE).await;
        }
    }
}
