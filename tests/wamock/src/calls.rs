//! Voice and video calls, signalling only: wamock places a call from one account to
//! another as WhatsApp delivers it (`<call from id t notify platform version><offer call-id
//! call-creator caller_pn><audio enc rate/>…</offer></call>`, whatsapp-rust's
//! `parse_call_stanza` reads it), and records what the callee's devices answer: the offer
//! receipt (`<receipt><offer call-id/></receipt>`), `reject`, `terminate`, `accept`... Answers
//! go on to the caller's devices as `<call from=CALLEE_DEVICE>`. No media, no relays.

use serde::Serialize;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Jid, Node};

use crate::accounts::DeviceAddr;
use crate::nodes::{attr, child, unix_now};
use crate::state::{Delivery, State};

/// What one callee device did about a call.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    /// `receipt` (the device got the offer), or the `<call>` action: `reject`,
    /// `terminate`, `accept`, `preaccept`, ...
    pub action: String,
    /// The device (or, for the caller's hang-up, the caller) that sent it.
    pub from: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub t: u64,
}

/// A call placed to an account.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Call {
    pub call_id: String,
    /// The caller's JID (device 0).
    pub from: String,
    pub video: bool,
    /// The callee devices the offer went to.
    pub devices: Vec<String>,
    pub answers: Vec<Answer>,
    pub t: u64,
}

/// Calls an account received, oldest first.
#[derive(Debug, Clone, Default)]
pub struct CallLog(Vec<Call>);

impl CallLog {
    fn find(&mut self, call_id: &str) -> Option<&mut Call> {
        self.0.iter_mut().find(|c| c.call_id == call_id)
    }

    pub fn view(&self) -> Vec<Call> {
        self.0.clone()
    }
}

/// Why a call could not be placed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("no account with phone number {0}")]
    NoAccount(String),
    #[error("account {0} has no companion device to ring")]
    NoDevice(String),
    #[error("no call {0} to account {1}")]
    NoCall(String, String),
}

fn new_call_id() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn stanza_id() -> String {
    let bytes: [u8; 8] = rand::random();
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// `<call>` from the caller's phone with one action child.
fn call_node(from: &Jid, notify: Option<&str>, action: Node) -> Node {
    let mut b = NodeBuilder::new("call")
        .attr("from", from.clone())
        .attr("id", stanza_id())
        .attr("t", unix_now().to_string())
        .attr("platform", "android")
        .attr("version", "2.25.1.1");
    if let Some(n) = notify {
        b = b.attr("notify", n.to_string());
    }
    b.children([action]).build()
}

/// Rings every companion device of `to` from `from`'s phone; the call id and the devices.
pub fn place(state: &State, from: &str, to: &str, video: bool) -> Result<Call, CallError> {
    let push_name = state
        .with_account(from, false, |a| a.push_name.clone())
        .ok_or_else(|| CallError::NoAccount(from.into()))?;
    let devices: Vec<u16> = state
        .with_account(to, false, |a| a.devices.keys().copied().collect())
        .ok_or_else(|| CallError::NoAccount(to.into()))?;
    if devices.is_empty() {
        return Err(CallError::NoDevice(to.into()));
    }
    let caller = Jid::pn(from);
    let call_id = new_call_id();
    let mut media: Vec<Node> = [16000, 8000]
        .iter()
        .map(|rate| {
            NodeBuilder::new("audio")
                .attr("enc", "opus")
                .attr("rate", rate.to_string())
                .build()
        })
        .collect();
    if video {
        media.push(NodeBuilder::new("video").attr("enc", "vp8").build());
    }
    media.push(NodeBuilder::new("net").attr("medium", "3").build());
    let offer = NodeBuilder::new("offer")
        .attr("call-id", call_id.clone())
        .attr("call-creator", caller.clone())
        .attr("caller_pn", caller.clone())
        .attr("joinable", "0")
        .children(media)
        .build();
    let mut rung = Vec::new();
    for device in devices {
        let addr = DeviceAddr::new(to, device);
        let node = call_node(&caller, push_name.as_deref(), offer.clone());
        match state.deliver(&addr, node) {
            Delivery::Live | Delivery::Queued => rung.push(addr.jid()),
            Delivery::NoDevice => {}
        }
    }
    let call = Call {
        call_id,
        from: caller.to_string(),
        video,
        devices: rung,
        answers: Vec::new(),
        t: unix_now(),
    };
    state.with_account(to, false, |a| a.calls.0.push(call.clone()));
    tracing::debug!(from, to, call_id = %call.call_id, devices = ?call.devices, "call offered");
    Ok(call)
}

/// The caller hangs up: `<terminate>` to the devices the offer rang.
pub fn hang_up(state: &State, from: &str, to: &str, call_id: &str) -> Result<Call, CallError> {
    let caller = Jid::pn(from);
    let push_name = state
        .with_account(from, false, |a| a.push_name.clone())
        .ok_or_else(|| CallError::NoAccount(from.into()))?;
    let call = state
        .with_account(to, false, |a| {
            let call = a.calls.find(call_id)?;
            call.answers.push(Answer {
                action: "terminate".into(),
                from: caller.to_string(),
                reason: None,
                t: unix_now(),
            });
            Some(call.clone())
        })
        .flatten()
        .ok_or_else(|| CallError::NoCall(call_id.into(), to.into()))?;
    let terminate = NodeBuilder::new("terminate")
        .attr("call-id", call_id.to_string())
        .attr("call-creator", caller.clone())
        .build();
    for device in &call.devices {
        if let Some(addr) = device.parse::<Jid>().ok().and_then(|j| state.resolve(&j)) {
            state.deliver(
                &addr,
                call_node(&caller, push_name.as_deref(), terminate.clone()),
            );
        }
    }
    Ok(call)
}

/// The action child of a `<call>` a device sent, with its call id.
fn action(node: &Node) -> Option<(&Node, String)> {
    let action = node.children()?.first()?;
    Some((action, attr(action, "call-id")?))
}

/// A `<call>` a logged-in device sent (reject, terminate, accept...): recorded on the call
/// it names, then passed on to the caller's devices.
pub fn from_device(state: &State, sender: &DeviceAddr, node: &Node) {
    let Some((act, call_id)) = action(node) else {
        return;
    };
    let recorded = state
        .with_account(&sender.phone, false, |a| {
            let call = a.calls.find(&call_id)?;
            call.answers.push(Answer {
                action: act.tag.to_string(),
                from: sender.jid(),
                reason: attr(act, "reason"),
                t: unix_now(),
            });
            Some(call.from.clone())
        })
        .flatten();
    tracing::debug!(from = %sender.jid(), action = %act.tag, %call_id, known = recorded.is_some(), "call signalling from a device");
    let Some(to) = crate::nodes::jid_attr(node, "to") else {
        return;
    };
    let copy = NodeBuilder::new("call")
        .attr("from", Jid::pn_device(sender.phone.clone(), sender.device))
        .attr("id", attr(node, "id").unwrap_or_else(stanza_id))
        .attr("t", unix_now().to_string())
        .children([act.clone()])
        .build();
    for target in state.account_devices(&to) {
        if target != *sender {
            state.deliver(&target, copy.clone());
        }
    }
}

/// A `<receipt>` carrying `<offer call-id>`: the device rang.
pub fn receipt(state: &State, sender: &DeviceAddr, node: &Node) {
    let Some(call_id) = child(node, "offer").and_then(|o| attr(o, "call-id")) else {
        return;
    };
    state.with_account(&sender.phone, false, |a| {
        if let Some(call) = a.calls.find(&call_id) {
            call.answers.push(Answer {
                action: "receipt".into(),
                from: sender.jid(),
                reason: None,
                t: unix_now(),
            });
        }
    });
}

/// The calls an account received, as the admin API shows them.
pub fn view(state: &State, phone: &str) -> Option<Vec<Call>> {
    state.with_account(phone, false, |a| a.calls.view())
}
