//! Group messages: `<message to="ID@g.us">` carries one `<enc type="skmsg">` for everyone
//! and, in `<participants><to jid><enc type="pkmsg|msg"/></to>`, the sender-key
//! distribution shares for the devices that do not have the sender's key yet. Every
//! other device of every member gets the skmsg, preceded by its own share when there is
//! one, as `<message from="ID@g.us" participant="SENDER_DEVICE" addressing_mode="pn">`.

use std::collections::HashMap;

use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Jid, Node};

use crate::accounts::DeviceAddr;
use crate::nodes::{attr, child, jid_attr, unix_now};
use crate::relay::ack;
use crate::state::{Delivery, State};

/// Stanza-level children that travel with every copy.
const KEPT: [&str; 3] = ["device-identity", "meta", "reporting"];

/// Relays a group message from `sender`; returns the ack (`error` 404 unknown group, 403
/// not a member or an announcement group and not an admin).
pub fn message(state: &State, sender: &DeviceAddr, node: &Node, to: &Jid) -> Option<Node> {
    let Some(group) = state.groups.get(&to.user) else {
        return ack(node, Some(404));
    };
    let Some(role) = group.role(&sender.phone) else {
        return ack(node, Some(403));
    };
    if group.announce && !role.is_admin() {
        return ack(node, Some(403));
    }
    let Some(from) = state.peer(sender) else {
        return ack(node, Some(401));
    };
    let mut shares: HashMap<DeviceAddr, &Node> = HashMap::new();
    if let Some(participants) = child(node, "participants") {
        for t in participants.children().unwrap_or_default() {
            if t.tag != "to" {
                continue;
            }
            if let (Some(jid), Some(enc)) = (jid_attr(t, "jid"), child(t, "enc"))
                && let Some(addr) = state.resolve(&jid)
            {
                shares.insert(addr, enc);
            }
        }
    }
    let skmsg = node
        .children()
        .unwrap_or_default()
        .iter()
        .find(|c| c.tag == "enc" && attr(c, "type").as_deref() == Some("skmsg"));
    let kept: Vec<Node> = node
        .children()
        .unwrap_or_default()
        .iter()
        .filter(|c| KEPT.contains(&c.tag.as_ref()))
        .cloned()
        .collect();
    let mut delivered = 0;
    for phone in group.phones() {
        for device in state.account_devices(&Jid::pn(phone)) {
            if device == *sender {
                continue;
            }
            let mut encs: Vec<Node> = shares
                .get(&device)
                .map(|e| (*e).clone())
                .into_iter()
                .collect();
            if let Some(sk) = skmsg {
                encs.push(sk.clone());
            }
            if encs.is_empty() {
                continue;
            }
            encs.extend(kept.iter().cloned());
            let mut b = NodeBuilder::new("message")
                .attr("from", to.clone())
                .attr("participant", from.jid(false))
                .attr("participant_lid", from.jid(true))
                .attr("addressing_mode", "pn")
                .attr("id", attr(node, "id").unwrap_or_default())
                .attr("type", attr(node, "type").unwrap_or_else(|| "text".into()))
                .attr("t", unix_now().to_string());
            if let Some(name) = &from.push_name {
                b = b.attr("notify", name.clone());
            }
            for key in ["edit", "push_priority"] {
                if let Some(v) = node.attrs.get(key) {
                    b = b.attr(key, v.clone());
                }
            }
            if matches!(
                state.deliver(&device, b.children(encs).build()),
                Delivery::Live | Delivery::Queued
            ) {
                delivered += 1;
            }
        }
    }
    tracing::debug!(id = ?attr(node, "id"), from = %sender.jid(), group = %to, delivered, "group message relayed");
    ack(node, None)
}

/// A receipt for a group message (`to="ID@g.us" participant="SENDER"`): to the sender's
/// devices, as `<receipt from="ID@g.us" participant="READER">`.
pub fn receipt(state: &State, sender: &DeviceAddr, node: &Node, to: &Jid) {
    let (Some(author), Some(from)) = (jid_attr(node, "participant"), state.peer(sender)) else {
        return;
    };
    let mut b = NodeBuilder::new("receipt")
        .attr("from", to.clone())
        .attr("participant", from.jid(false))
        .attr("id", attr(node, "id").unwrap_or_default())
        .attr("t", unix_now().to_string());
    if let Some(v) = node.attrs.get("type") {
        b = b.attr("type", v.clone());
    }
    if let Some(wacore_binary::NodeContent::Nodes(children)) = &node.content {
        b = b.children(children.iter().cloned());
    }
    let copy = b.build();
    for target in state.account_devices(&author) {
        if target != *sender {
            state.deliver(&target, copy.clone());
        }
    }
}
