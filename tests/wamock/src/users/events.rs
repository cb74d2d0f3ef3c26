//! Records what a simulated user's client emits: the messages it decrypted (media
//! downloaded and hashed as they arrive) and the receipts it got.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use wacore::types::events::{Event, EventHandler};
use waproto::whatsapp as wa;
use whatsapp_rust::client::Client;

use super::inbox::{self, InboxEntry, ReceiptEntry};
use super::media;
use super::presence::{self, ChatstateEntry, PresenceEntry};

#[derive(Default)]
pub struct Recorder {
    inbox: Arc<Mutex<Vec<InboxEntry>>>,
    receipts: Mutex<Vec<ReceiptEntry>>,
    presences: Mutex<Vec<PresenceEntry>>,
    chatstates: Mutex<Vec<ChatstateEntry>>,
    /// The user's client, for media downloads (set once it is built).
    client: OnceLock<Weak<Client>>,
    /// The polls the user sent, to decrypt the votes on them.
    pub polls: super::rich::PollBook,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Recorder {
    pub fn set_client(&self, client: &Arc<Client>) {
        let _ = self.client.set(Arc::downgrade(client));
    }

    pub fn inbox(&self) -> Vec<InboxEntry> {
        lock(&self.inbox).clone()
    }

    pub fn receipts(&self) -> Vec<ReceiptEntry> {
        lock(&self.receipts).clone()
    }

    pub fn presences(&self) -> Vec<PresenceEntry> {
        lock(&self.presences).clone()
    }

    pub fn chatstates(&self) -> Vec<ChatstateEntry> {
        lock(&self.chatstates).clone()
    }

    /// Downloads a received message's media and fills in its inbox entry.
    fn fetch_media(&self, id: String, message: Arc<wa::Message>) {
        if media::downloadable(&message).is_none() {
            return;
        }
        let (Some(client), Ok(runtime)) = (
            self.client.get().and_then(Weak::upgrade),
            tokio::runtime::Handle::try_current(),
        ) else {
            return;
        };
        let inbox = self.inbox.clone();
        runtime.spawn(async move {
            let Some(result) = media::fetch_hash(&client, &message).await else {
                return;
            };
            if let Some(e) = lock(&inbox).iter_mut().find(|e| e.id == id) {
                match result {
                    Ok((sha256, len)) => {
                        e.sha256 = Some(sha256);
                        e.file_length = Some(len);
                    }
                    Err(err) => {
                        tracing::info!(id = %e.id, error = %err, "simulated user could not download media");
                        e.media_error = Some(err);
                    }
                }
            }
        });
    }
}

impl EventHandler for Recorder {
    fn handle_event(&self, event: Arc<Event>) {
        match &*event {
            Event::Messages(batch) => {
                for m in batch {
                    let entry = inbox::entry(&m.message, &m.info, &self.polls);
                    let id = entry.id.clone();
                    lock(&self.inbox).push(entry);
                    // A header file of an interactive message or template is downloaded too.
                    let media = super::rich::header_file_message(&m.message)
                        .map_or_else(|| m.message.clone(), Arc::new);
                    self.fetch_media(id, media);
                }
            }
            Event::Receipt(r) => {
                let from = inbox::account_of(&r.source.sender, r.source.sender_alt.as_ref());
                let mut receipts = lock(&self.receipts);
                for id in &r.message_ids {
                    receipts.push(ReceiptEntry {
                        id: id.to_string(),
                        from: from.clone(),
                        kind: r.r#type.as_wire_str().to_string(),
                    });
                }
            }
            Event::Presence(p) => lock(&self.presences).push(presence::presence_entry(p)),
            Event::ChatPresence(c) => lock(&self.chatstates).push(presence::chatstate_entry(c)),
            _ => {}
        }
    }
}
