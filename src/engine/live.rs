//! One running whatsapp-rust client and the task that turns its events into session state.

use std::{
    sync::{Arc, Mutex, Weak},
    time::Duration,
};

use tokio::sync::Mutex as AsyncMutex;
use whatsapp_rust::{Client, async_channel::Receiver, bot::BotHandle, types::events::Event};

use super::{
    Engine,
    events::{Envelope, notify, poll_vote::PollVote, session},
    recorder::Recorder,
};
use crate::store::{DeviceUpdate, SessionRecord, Store, StoreResult};
use whatsapp_rust::{Jid, wacore_binary::JidExt, waproto::whatsapp as wa};

/// The states the API reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Disconnected,
    Connecting,
    Connected,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Disconnected => "disconnected",
            State::Connecting => "connecting",
            State::Connected => "connected",
        }
    }
}

pub struct Live {
    name: String,
    id: uuid::Uuid,
    client: Arc<Client>,
    state: Mutex<State>,
    qr: Mutex<Option<String>>,
    /// Draw each QR in the log (`EngineConfig::qr_in_log`).
    qr_in_log: bool,
    handle: AsyncMutex<Option<BotHandle>>,
    /// What the session keeps of its messages (also the inbound durability hook's); its
    /// store serves work started from events too (the settings sync at connect).
    recorder: Arc<Recorder>,
    /// Call offers received lately (`POST /:session/call/reject` names one).
    offers: super::calls::Offers,
    /// The event task, and the word that tells it to finish: the client stopped, record what
    /// it already handed us and end (see [`Live::stop`]).
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    wind_down: tokio::sync::watch::Sender<bool>,
}

/// A QR drawn with Unicode half blocks, two modules per character cell, for a terminal.
fn terminal_qr(code: &str) -> String {
    match qrcode::QrCode::new(code.as_bytes()) {
        Ok(qr) => qr
            .render::<qrcode::render::unicode::Dense1x2>()
            .dark_color(qrcode::render::unicode::Dense1x2::Light)
            .light_color(qrcode::render::unicode::Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
        Err(e) => format!("(cannot draw the QR: {e}; GET /<session>/qr?format=image serves it)"),
    }
}

/// How often the send journal is swept (`engine::outgoing`).
const SWEEP_SENDS_EVERY: Duration = Duration::from_secs(60);

/// How often `alwaysOnline` re-sends presence `available` while connected (OnWapp: 4 min).
const ALWAYS_ONLINE_EVERY: Duration = Duration::from_secs(240);

impl Live {
    pub(super) fn new(
        rec: &SessionRecord,
        client: Arc<Client>,
        recorder: Arc<Recorder>,
        qr_in_log: bool,
    ) -> Self {
        Live {
            qr_in_log,
            name: rec.name.clone(),
            id: rec.id,
            client,
            state: Mutex::new(State::Connecting),
            qr: Mutex::new(None),
            handle: AsyncMutex::new(None),
            recorder,
            offers: Default::default(),
            task: Mutex::new(None),
            wind_down: tokio::sync::watch::channel(false).0,
        }
    }

    pub fn offers(&self) -> &super::calls::Offers {
        &self.offers
    }

    pub fn client(&self) -> &Arc<Client> {
        &self.client
    }

    pub fn state(&self) -> State {
        self.state.lock().map_or(State::Disconnected, |s| *s)
    }

    fn set_state(&self, s: State) {
        if let Ok(mut g) = self.state.lock() {
            *g = s;
        }
    }

    pub fn qr(&self) -> Option<String> {
        self.qr.lock().ok()?.clone()
    }

    fn set_qr(&self, q: Option<String>) {
        if let Ok(mut g) = self.qr.lock() {
            *g = q;
        }
    }

    /// Keeps the handle and follows the client's events until it ends.
    pub fn start(
        self: &Arc<Self>,
        handle: BotHandle,
        events: Receiver<Arc<Event>>,
        engine: Weak<Engine>,
        store: Arc<dyn Store>,
    ) {
        if let Ok(mut h) = self.handle.try_lock() {
            *h = Some(handle);
        }
        let this = Arc::clone(self);
        // A write of this session refused by the fence: another node owns it now.
        let mut fenced = store.fences().subscribe_fenced();
        let mut wind_down = self.wind_down.subscribe();
        let task = tokio::spawn(async move {
            let mut watch_fences = true;
            let mut lost = false;
            this.persist_as(&*store, this.state()).await;
            // whatsapp-rust reconnects after a 515 without any event: its <stream:error> is
            // watched here, ahead of the events, to report the drop.
            let stream_errors = || {
                this.client
                    .wait_for_node(whatsapp_rust::NodeFilter::tag("stream:error"))
            };
            let mut stream_error = stream_errors();
            let mut online = tokio::time::interval_at(
                tokio::time::Instant::now() + ALWAYS_ONLINE_EVERY,
                ALWAYS_ONLINE_EVERY,
            );
            // The send journal (`engine::outgoing`): at start, then every minute.
            let mut sweep = tokio::time::interval(SWEEP_SENDS_EVERY);
            loop {
                tokio::select! {
                    biased;
                    refused = fenced.recv(), if watch_fences => match refused {
                        Ok(id) if id == this.id => {
                            lost = true;
                            break;
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => watch_fences = false,
                        _ => {}
                    },
                    node = &mut stream_error => {
                        if let Ok(node) = node {
                            this.on_stream_error(&node, &*store).await;
                        }
                        stream_error = stream_errors();
                    }
                    _ = online.tick() => this.keep_online(&*store).await,
                    _ = sweep.tick() => this.sweep_sends().await,
                    event = events.recv() => match event {
                        Ok(event) if !this.on_event(&event, &*store).await => {}
                        _ => break,
                    },
                    // The client stopped (`stop`): what it handed us before is recorded, in
                    // order, before the task ends, so a handoff lets go of the shard's fence
                    // only after every event this node acknowledged is written.
                    Ok(()) = wind_down.changed() => {
                        while let Ok(event) = events.try_recv() {
                            if this.on_event(&event, &*store).await {
                                break;
                            }
                        }
                        break;
                    }
                }
            }
            if lost {
                // Stopped without announcing nor storing anything (the owner does that), and
                // without logging out: the keys belong to the session, wherever it runs.
                tracing::warn!(session = %this.name, "write fenced: another node owns the session; client stopped");
                drop(events);
                this.stop_client(Duration::from_secs(10)).await;
            }
            if let Some(engine) = engine.upgrade() {
                engine.ended(&this.name, &this);
            }
        });
        if let Ok(mut t) = self.task.lock() {
            *t = Some(task);
        }
    }

    /// Applies one event; `true` when the client is over.
    async fn on_event(&self, event: &Event, store: &dyn Store) -> bool {
        // `syncHistory` off: history sync chunks are not decoded into chats, messages and
        // contacts, and no `history.sync` is announced.
        if matches!(event, Event::HistorySync(_))
            && !self.settings(store).await.is_none_or(|s| s.sync_history)
        {
            tracing::info!(session = %self.name, "history sync skipped: syncHistory is off");
            return false;
        }
        let mut over = false;
        match event {
            // Recorded by the inbound durability hook before WhatsApp got its ack
            // (`engine::inbound`); a batch it did not commit is recorded here.
            Event::Messages(batch) => {
                if !batch.hook_committed {
                    for m in batch.iter() {
                        let e = Envelope::received(&m.info);
                        if let Err(err) = self
                            .recorder
                            .record(&self.client, &m.message, &e, None)
                            .await
                        {
                            tracing::error!(session = %self.name, id = %m.info.id, error = %err, "storing message");
                        }
                    }
                }
                return false;
            }
            Event::PairingQrCode(q) => {
                if self.qr_in_log {
                    tracing::info!(
                        session = %self.name,
                        "scan with WhatsApp on the phone (Settings > Linked devices > Link a device):\n{}",
                        terminal_qr(&q.code)
                    );
                }
                self.set_qr(Some(q.code.clone()));
                self.set_state(State::Connecting);
            }
            Event::PairSuccess(p) => {
                tracing::info!(session = %self.name, jid = %p.id, "paired");
                self.set_qr(None);
            }
            Event::Connected(_) => {
                tracing::info!(session = %self.name, "connected");
                super::metrics::connection(super::metrics::Connection::Connected);
                self.set_qr(None);
                // Stored first, so whoever sees `connected` also sees the device's JID.
                self.persist_as(store, State::Connected).await;
                self.set_state(State::Connected);
                tokio::spawn(super::settings::on_connected(
                    self.client.clone(),
                    self.recorder.store.clone(),
                    self.id,
                    self.name.clone(),
                ));
            }
            // The client reconnects by itself (with backoff) unless it was told to stop.
            Event::Disconnected(d) => {
                tracing::info!(session = %self.name, reason = %d.reason, "disconnected");
                super::metrics::connection(super::metrics::Connection::Disconnected);
                if self.state() == State::Connected {
                    self.set_state(State::Connecting);
                    self.persist_as(store, State::Connecting).await;
                }
            }
            Event::LoggedOut(l) => {
                tracing::warn!(session = %self.name, reason = ?l.reason, "logged out");
                super::metrics::connection(super::metrics::Connection::LoggedOut);
                self.finish(store, true).await;
                if let Err(e) = store.delete_device_store(self.id).await {
                    tracing::error!(session = %self.name, error = %e, "deleting device keys");
                }
                over = true;
            }
            Event::PairingQrCodesExhausted(_) => {
                tracing::info!(session = %self.name, "QR codes ran out; session disconnected");
                super::metrics::connection(super::metrics::Connection::QrExhausted);
                self.finish(store, false).await;
                if let Some(h) = self.handle.lock().await.take() {
                    h.abort();
                }
                over = true;
            }
            Event::StreamReplaced(_) | Event::TemporaryBan(_) | Event::ClientOutdated(_) => {
                tracing::warn!(session = %self.name, ?event, "session stopped by WhatsApp");
                super::metrics::connection(super::metrics::Connection::Stopped);
                self.finish(store, false).await;
                over = true;
            }
            other => {
                let me = notify::Me {
                    pn: self.client.pn(),
                    lid: self.client.lid(),
                };
                if let Some(m) = notify::map(&self.name, other, &me)
                    && let Err(e) = notify::apply(store, self.id, &m).await
                {
                    tracing::error!(session = %self.name, ?event, error = %e, "storing event");
                }
                if let Event::IncomingCall(call) = other
                    && let Some(offer) = super::calls::Offer::of(call)
                {
                    self.on_offer(store, offer).await;
                }
            }
        }
        if let Some(e) = session::lifecycle(&self.name, event) {
            self.emit(store, e).await;
        }
        over
    }

    async fn settings(&self, store: &dyn Store) -> Option<crate::store::SettingsRecord> {
        match store.get_settings(self.id).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(session = %self.name, error = %e, "reading settings");
                None
            }
        }
    }

    /// A call offer: remembered for `call/reject`, rejected at once with `autoRejectCalls`
    /// (its `call.offer` event is recorded all the same).
    async fn on_offer(&self, store: &dyn Store, offer: super::calls::Offer) {
        self.offers.remember(offer.clone());
        if !self
            .settings(store)
            .await
            .is_some_and(|s| s.auto_reject_calls)
        {
            return;
        }
        match offer.reject(&self.client).await {
            Ok(()) => {
                tracing::info!(session = %self.name, call = %offer.call_id, "call rejected: autoRejectCalls")
            }
            Err(e) => {
                tracing::warn!(session = %self.name, call = %offer.call_id, error = %e, "auto-reject failed")
            }
        }
    }

    /// `alwaysOnline`: presence `available` again while connected.
    async fn keep_online(&self, store: &dyn Store) {
        if self.state() == State::Connected
            && self.settings(store).await.is_some_and(|s| s.always_online)
        {
            super::settings::keep_online(&self.client, &self.name).await;
        }
    }

    /// A `<stream:error>` from the server: a 515 drops the connection and whatsapp-rust
    /// reconnects at once, without a `Disconnected` event of its own. (Conflicts, 401 and 516
    /// arrive as `StreamReplaced`/`LoggedOut`.)
    async fn on_stream_error(
        &self,
        node: &whatsapp_rust::wacore_binary::OwnedNodeRef,
        store: &dyn Store,
    ) {
        let node = node.get();
        let code = node.attrs().optional_string("code").map(|c| c.to_string());
        if code.as_deref() != Some("515")
            || node.get_optional_child("conflict").is_some()
            || self.state() != State::Connected
        {
            return;
        }
        tracing::info!(session = %self.name, "stream error 515: reconnecting");
        self.set_state(State::Connecting);
        self.persist_as(store, State::Connecting).await;
        self.emit(store, session::disconnected(&self.name, "stream error 515"))
            .await;
    }

    /// Records a `session.*` event of a transition the engine made (disconnect, logout).
    pub(super) async fn announce(&self, store: &dyn Store, event: crate::store::events::NewEvent) {
        self.emit(store, event).await;
    }

    async fn emit(&self, store: &dyn Store, event: crate::store::events::NewEvent) {
        if let Err(e) = store
            .record_events(self.id, std::slice::from_ref(&event))
            .await
        {
            tracing::error!(session = %self.name, event = event.name, error = %e, "storing event");
        }
    }

    async fn finish(&self, store: &dyn Store, logged_out: bool) {
        self.set_qr(None);
        self.set_state(State::Disconnected);
        let update = if logged_out {
            DeviceUpdate {
                status: State::Disconnected.as_str().into(),
                ..Default::default()
            }
        } else {
            self.device_update(State::Disconnected)
        };
        if let Err(e) = store.update_session_device(&self.name, &update).await {
            tracing::error!(session = %self.name, error = %e, "storing session state");
        }
    }

    fn device_update(&self, state: State) -> DeviceUpdate {
        let pn = self.client.pn();
        let push = self.client.push_name();
        DeviceUpdate {
            status: state.as_str().into(),
            device_jid: pn.as_ref().map(|j| j.to_string()),
            phone: pn.as_ref().map(|j| j.user.to_string()),
            push_name: (!push.is_empty()).then_some(push),
        }
    }

    async fn persist_as(&self, store: &dyn Store, state: State) {
        if let Err(e) = store
            .update_session_device(&self.name, &self.device_update(state))
            .await
        {
            tracing::error!(session = %self.name, error = %e, "storing session state");
        }
    }

    pub(super) fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    pub(super) fn session_id(&self) -> uuid::Uuid {
        self.id
    }

    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// Records a message this session sent as `id` in `to` (with the vote it casts, its own
    /// vote not being decrypted back). See `engine::outgoing` for the path of a send.
    pub(super) async fn record_sent_as(
        &self,
        id: &str,
        to: &Jid,
        message: &wa::Message,
        vote: Option<PollVote>,
    ) -> StoreResult<()> {
        let Some(me) = self.client.pn() else {
            return Ok(());
        };
        let push = self.client.push_name();
        let envelope = Envelope {
            id,
            chat: to,
            sender: &me,
            sender_pn: None,
            from_me: true,
            is_group: to.is_group(),
            push_name: &push,
            timestamp: chrono::Utc::now().timestamp(),
        };
        self.recorder
            .record(&self.client, message, &envelope, vote)
            .await
    }

    pub async fn pair_with_code(
        &self,
        phone: &str,
    ) -> Result<String, whatsapp_rust::pair_code::PairError> {
        let options = whatsapp_rust::wacore::pair_code::PairCodeOptions {
            phone_number: phone.to_string(),
            ..Default::default()
        };
        self.client.pair_with_code(options).await
    }

    /// Graceful stop, aborted after `grace`: the client disconnects, then the event task
    /// records what the client handed over before it stopped, and ends.
    pub async fn stop(&self, grace: Duration) {
        let started = tokio::time::Instant::now();
        self.stop_client(grace).await;
        self.wind_down.send_replace(true);
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let left = grace
                .saturating_sub(started.elapsed())
                .max(Duration::from_secs(1));
            if tokio::time::timeout(left, task).await.is_err() {
                tracing::warn!(session = %self.name, "events still being recorded after the stop's grace");
            }
        }
    }

    /// Disconnects the client, aborted after `grace`.
    async fn stop_client(&self, grace: Duration) {
        self.set_qr(None);
        self.set_state(State::Disconnected);
        if let Some(mut h) = self.handle.lock().await.take() {
            let stopped = tokio::time::timeout(grace, async {
                self.client.disconnect().await;
                (&mut h).await;
            })
            .await;
            if stopped.is_err() {
                tracing::warn!(session = %self.name, "client did not stop in time; aborted");
                h.abort();
            }
        }
    }

    pub async fn logout(&self, grace: Duration) {
        self.client.logout().await;
        self.stop(grace).await;
    }
}
