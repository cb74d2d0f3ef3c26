//! Records what a simulated user's client emits: the messages it decrypted and the
//! receipts it got.

use std::sync::{Mutex, MutexGuard};

use wacore::types::events::{Event, EventHandler};

use super::inbox::{self, InboxEntry, ReceiptEntry};

#[derive(Default)]
pub struct Recorder {
    inbox: Mutex<Vec<InboxEntry>>,
    receipts: Mutex<Vec<ReceiptEntry>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Recorder {
    pub fn inbox(&self) -> Vec<InboxEntry> {
        lock(&self.inbox).clone()
    }

    pub fn receipts(&self) -> Vec<ReceiptEntry> {
        lock(&self.receipts).clone()
    }

    /// Updates the entry with this id (media details arrive after the download).
    pub fn update(&self, id: &str, f: impl FnOnce(&mut InboxEntry)) {
        if let Some(e) = lock(&self.inbox).iter_mut().find(|e| e.id == id) {
            f(e);
        }
    }

    fn push(&self, entry: InboxEntry) {
        lock(&self.inbox).push(entry);
    }
}

impl EventHandler for Recorder {
    fn handle_event(&self, event: std::sync::Arc<Event>) {
        match &*event {
            Event::Messages(batch) => {
                for m in batch {
                    self.push(inbox::entry(&m.message, &m.info));
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
            _ => {}
        }
    }
}
