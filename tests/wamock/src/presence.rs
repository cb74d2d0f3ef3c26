//! Presence and chat states: what a device announces reaches the devices that care, now
//! or never (neither is queued for offline devices, as on WhatsApp).
//!
//! - `<presence type="available|unavailable" name>`: the account's presence; every device
//!   subscribed to the account gets `<presence from=ACCOUNT type last?>`.
//! - `<presence type="subscribe" to=JID>`: the device subscribes to that account and gets
//!   its current presence at once (available while one of its devices is connected and
//!   last said available). `unsubscribe` stops it.
//! - `<chatstate to=JID><composing media?/>|<paused/></chatstate>`: every connected device
//!   of that account gets `<chatstate from=SENDER_ACCOUNT>` with the same child.

use std::collections::HashMap;

use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Jid, Node, NodeContent, Server};

use crate::accounts::is_lid;
use crate::nodes::{attr, jid_attr, unix_now};
use crate::relay;
use crate::state::{DeviceAddr, State};

/// An account's presence and its watchers.
#[derive(Debug, Default)]
pub struct Book {
    /// What the account's devices last announced (`None`: nothing yet).
    pub available: Option<bool>,
    /// When they last announced `unavailable` (unix seconds).
    pub last_seen: Option<u64>,
    /// Subscribed devices, with whether they named the account by LID.
    subscribers: HashMap<DeviceAddr, bool>,
}

/// Handles a `<presence>` from a logged-in device; returns its ack (none: no id).
pub fn presence(state: &State, sender: &DeviceAddr, node: &Node) -> Option<Node> {
    crate::profile::push_name(state, sender, node);
    match attr(node, "type").as_deref() {
        None | Some("available") => announce(state, sender, true),
        Some("unavailable") => announce(state, sender, false),
        Some("subscribe") => subscribe(state, sender, node),
        Some("unsubscribe") => unsubscribe(state, sender, node),
        Some(other) => tracing::debug!(kind = other, "presence type not modelled by wamock"),
    }
    relay::ack(node, None)
}

/// The account a JID names, by phone, if it exists.
fn account_phone(state: &State, jid: &Jid) -> Option<String> {
    state.resolve(jid).map(|a| a.phone)
}

fn account_jid(phone: &str, lid: Option<&str>) -> Jid {
    match lid {
        Some(lid) => Jid::lid(lid),
        None => Jid::pn(phone),
    }
}

fn presence_node(from: Jid, available: bool, last_seen: Option<u64>) -> Node {
    let mut b = NodeBuilder::new("presence").attr("from", from).attr(
        "type",
        if available {
            "available"
        } else {
            "unavailable"
        },
    );
    if let (false, Some(t)) = (available, last_seen) {
        b = b.attr("last", t.to_string());
    }
    b.build()
}

fn announce(state: &State, sender: &DeviceAddr, available: bool) {
    let watchers = state.with_account(&sender.phone, false, |account| {
        account.presence.available = Some(available);
        if !available {
            account.presence.last_seen = Some(unix_now());
        }
        let watchers: Vec<(DeviceAddr, bool)> = account
            .presence
            .subscribers
            .iter()
            .map(|(d, lid)| (d.clone(), *lid))
            .collect();
        (watchers, account.lid.clone(), account.presence.last_seen)
    });
    let Some((watchers, lid, last_seen)) = watchers else {
        return;
    };
    tracing::debug!(jid = %sender.jid(), available, watchers = watchers.len(), "presence");
    for (watcher, by_lid) in watchers {
        let from = account_jid(&sender.phone, by_lid.then_some(lid.as_str()));
        state.send_live(&watcher, presence_node(from, available, last_seen));
    }
}

fn subscribe(state: &State, sender: &DeviceAddr, node: &Node) {
    let Some(to) = jid_attr(node, "to") else {
        return;
    };
    let Some(phone) = account_phone(state, &to) else {
        tracing::debug!(to = %to, "presence subscription to an unknown account");
        return;
    };
    let by_lid = is_lid(&to);
    let known = state.with_account(&phone, false, |account| {
        account.presence.subscribers.insert(sender.clone(), by_lid);
        (
            account.presence.available,
            account.presence.last_seen,
            account.lid.clone(),
        )
    });
    let Some((said, last_seen, lid)) = known else {
        return;
    };
    let online = state
        .account_devices(&Jid::pn(&phone))
        .iter()
        .any(|d| state.is_live(d));
    let from = account_jid(&phone, by_lid.then_some(lid.as_str()));
    state.send_live(
        sender,
        presence_node(from, online && said == Some(true), last_seen),
    );
}

fn unsubscribe(state: &State, sender: &DeviceAddr, node: &Node) {
    let Some(phone) = jid_attr(node, "to").and_then(|to| account_phone(state, &to)) else {
        return;
    };
    state.with_account(&phone, false, |account| {
        account.presence.subscribers.remove(sender);
    });
}

/// Relays a `<chatstate>` to the connected devices of the account it names; returns its
/// ack (none: chat states carry no id).
pub fn chatstate(state: &State, sender: &DeviceAddr, node: &Node) -> Option<Node> {
    let Some(to) = jid_attr(node, "to") else {
        return relay::ack(node, Some(400));
    };
    if !matches!(to.server, Server::Pn | Server::Lid) {
        tracing::debug!(to = %to, "chatstate for a chat wamock does not model yet (groups)");
        return relay::ack(node, None);
    }
    let Some(peer) = state.peer(sender) else {
        return relay::ack(node, Some(401));
    };
    let from = account_jid(&sender.phone, is_lid(&to).then_some(peer.lid.as_str()));
    let mut b = NodeBuilder::new("chatstate").attr("from", from);
    if let Some(NodeContent::Nodes(children)) = &node.content {
        b = b.children(children.iter().cloned());
    }
    let copy = b.build();
    let mut reached = 0;
    for target in state.account_devices(&to) {
        if target != *sender && state.send_live(&target, copy.clone()) {
            reached += 1;
        }
    }
    tracing::debug!(from = %sender.jid(), to = %to, reached, "chatstate relayed");
    relay::ack(node, None)
}
