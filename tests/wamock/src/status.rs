//! Status stories: a `<message to="status@broadcast">` carries one sender-key `<enc
//! type="skmsg">` for everyone and, in `<participants>`, per-device shares (`<to
//! jid=DEVICE><enc type="pkmsg|msg"/></to>`, the sender-key distribution) plus bare `<to
//! jid=USER/>` for recipients whose devices already hold the key. Every device of every
//! recipient gets `<message from="status@broadcast" participant=SENDER_LID_DEVICE
//! participant_pn>` with its own share (if any) and the skmsg, so the recipient's client
//! decrypts the story itself.

use std::collections::HashSet;

use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Jid, Node};

use crate::accounts::DeviceAddr;
use crate::nodes::{attr, child, jid_attr, unix_now};
use crate::relay::ack;
use crate::state::{Delivery, Peer, State};

/// Stanza-level children that travel with every copy.
const KEPT: [&str; 3] = ["device-identity", "meta", "reporting"];

/// Relays a status post (or revoke) from `sender`; returns the ack.
pub fn message(state: &State, sender: &DeviceAddr, node: &Node) -> Option<Node> {
    let Some(from) = state.peer(sender) else {
        return ack(node, Some(401));
    };
    let Some(skmsg) = node
        .children()
        .unwrap_or_default()
        .iter()
        .find(|c| c.tag == "enc" && attr(c, "type").as_deref() == Some("skmsg"))
    else {
        tracing::info!(id = ?attr(node, "id"), "status message without an skmsg");
        return ack(node, Some(400));
    };
    let kept: Vec<Node> = node
        .children()
        .unwrap_or_default()
        .iter()
        .filter(|c| KEPT.contains(&c.tag.as_ref()))
        .cloned()
        .collect();
    let mut shares: Vec<(DeviceAddr, Option<&Node>)> = Vec::new();
    let mut seen: HashSet<DeviceAddr> = HashSet::new();
    let mut users: Vec<Jid> = Vec::new();
    if let Some(participants) = child(node, "participants") {
        for to in participants.children().unwrap_or_default() {
            let Some(jid) = (to.tag == "to").then(|| jid_attr(to, "jid")).flatten() else {
                continue;
            };
            match child(to, "enc") {
                Some(enc) => {
                    if let Some(target) = state.resolve(&jid)
                        && seen.insert(target.clone())
                    {
                        shares.push((target, Some(enc)));
                    }
                }
                None => users.push(jid),
            }
        }
    }
    // Recipients that already hold the sender key: every device, the skmsg alone.
    for user in &users {
        for target in state.account_devices(user) {
            if seen.insert(target.clone()) {
                shares.push((target, None));
            }
        }
    }
    let mut delivered = 0;
    for (target, enc) in shares {
        if target == *sender {
            continue;
        }
        let copy = story_copy(node, &from, enc, skmsg, &kept);
        match state.deliver(&target, copy) {
            Delivery::Live | Delivery::Queued => delivered += 1,
            Delivery::NoDevice => {
                tracing::debug!(to = %target.jid(), "no such device; story dropped")
            }
        }
    }
    tracing::debug!(id = ?attr(node, "id"), from = %sender.jid(), delivered, "status relayed");
    ack(node, None)
}

fn story_copy(
    original: &Node,
    from: &Peer,
    share: Option<&Node>,
    skmsg: &Node,
    kept: &[Node],
) -> Node {
    let mut b = NodeBuilder::new("message")
        .attr("from", Jid::status_broadcast())
        .attr("participant", from.jid(true))
        .attr("participant_pn", from.jid(false))
        .attr("addressing_mode", "lid")
        .attr("id", attr(original, "id").unwrap_or_default())
        .attr(
            "type",
            attr(original, "type").unwrap_or_else(|| "text".into()),
        )
        .attr("t", unix_now().to_string());
    if let Some(name) = &from.push_name {
        b = b.attr("notify", name.clone());
    }
    let mut children: Vec<Node> = share.into_iter().cloned().collect();
    children.push(skmsg.clone());
    children.extend(kept.iter().cloned());
    b.children(children).build()
}
