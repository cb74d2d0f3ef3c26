//! Calls: rejecting an incoming call offer with whatsapp-rust's `client.voip().reject_call`
//! (its stanza builder needs none of the voip features), by hand (`POST /:session/call/reject`)
//! or on every offer when `autoRejectCalls` is set.

use std::collections::VecDeque;
use std::sync::Mutex;

use whatsapp_rust::Client;
use whatsapp_rust::Jid;
use whatsapp_rust::wacore::types::call::{CallAction, IncomingCall};

use super::{Engine, EngineError};

/// How many recent offers a session remembers (enough to reject any that still rings).
const REMEMBERED: usize = 256;

/// An offer the session's client received.
#[derive(Debug, Clone)]
pub struct Offer {
    pub call_id: String,
    /// The calling device (the reject goes there).
    pub from: Jid,
    pub creator: Jid,
    /// The caller's phone JID when the offer came from a LID.
    pub caller_pn: Option<Jid>,
}

impl Offer {
    /// The offer an incoming `<call>` carries, if it is a live (not replayed) offer.
    pub fn of(call: &IncomingCall) -> Option<Offer> {
        match &call.action {
            CallAction::Offer {
                call_id,
                call_creator,
                caller_pn,
                ..
            } if !call.offline => Some(Offer {
                call_id: call_id.clone(),
                from: call.from.clone(),
                creator: call_creator.clone(),
                caller_pn: caller_pn.clone(),
            }),
            _ => None,
        }
    }

    /// Whether `who` (a phone or LID JID, any device) is this offer's caller.
    fn is_from(&self, who: &Jid) -> bool {
        [
            Some(&self.from),
            Some(&self.creator),
            self.caller_pn.as_ref(),
        ]
        .into_iter()
        .flatten()
        .any(|j| j.user == who.user)
    }

    /// Sends the reject for this offer.
    pub async fn reject(&self, client: &Client) -> Result<(), EngineError> {
        client
            .voip()
            .reject_call(&self.call_id, &self.from, &self.creator)
            .await
            .map_err(|e| EngineError::Action(format!("failed to reject call: {e}")))
    }
}

/// The recent offers of one session.
#[derive(Debug, Default)]
pub struct Offers(Mutex<VecDeque<Offer>>);

impl Offers {
    pub fn remember(&self, offer: Offer) {
        if let Ok(mut q) = self.0.lock() {
            if q.len() >= REMEMBERED {
                q.pop_front();
            }
            q.push_back(offer);
        }
    }

    fn find(&self, call_id: &str) -> Option<Offer> {
        self.0
            .lock()
            .ok()?
            .iter()
            .rev()
            .find(|o| o.call_id == call_id)
            .cloned()
    }
}

impl Engine {
    /// Rejects the call `call_id` from `from`; 404 when the session never got that offer.
    pub async fn reject_call(
        &self,
        name: &str,
        from: &Jid,
        call_id: &str,
    ) -> Result<(), EngineError> {
        let live = self.connected(name)?;
        let offer = live
            .offers()
            .find(call_id)
            .filter(|o| o.is_from(from))
            .ok_or_else(|| {
                EngineError::NotFound(format!("call {call_id} from {} not found", from.user))
            })?;
        offer.reject(live.client()).await
    }
}
