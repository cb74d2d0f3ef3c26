//! What the server does with the `<message>` and `<receipt>` stanzas a logged-in
//! device sends: fan the encrypted payloads out to the devices they are for (now, or
//! when they next log in), and ack the sender.

use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Jid, JidExt as _, Node, NodeContent, Server};

use crate::accounts::{DeviceAddr, is_lid};
use crate::nodes::{attr, child, jid_attr, unix_now};
use crate::state::{Delivery, Peer, State};

/// Stanza-level children that travel with every copy of a message.
const MESSAGE_CHILDREN_KEPT: [&str; 4] = ["device-identity", "meta", "reporting", "biz"];

/// The server's `<ack>` for a stanza a client sent: `class` is the stanza's tag, `from`
/// its `to`. `None` when the stanza has no id (presence, chatstate): nothing to ack.
pub fn ack(node: &Node, error: Option<u16>) -> Option<Node> {
    let id = attr(node, "id")?;
    let mut b = NodeBuilder::new("ack")
        .attr("class", node.tag.to_string())
        .attr("id", id);
    if let Some(to) = node.attrs.get("to") {
        b = b.attr("from", to.clone());
    }
    if node.tag == "message" {
        b = b.attr("t", unix_now().to_string());
    }
    for key in ["type", "participant", "recipient"] {
        if node.tag != "message"
            && let Some(v) = node.attrs.get(key)
        {
            b = b.attr(key, v.clone());
        }
    }
    if let Some(code) = error {
        b = b.attr("error", code.to_string());
    }
    Some(b.build())
}

/// One device's share of a message: where it goes and its `<enc>`.
struct Share<'a> {
    to: Jid,
    enc: &'a Node,
}

fn shares(message: &Node) -> Vec<Share<'_>> {
    let mut out = Vec::new();
    if let Some(participants) = child(message, "participants") {
        for to in participants.children().unwrap_or_default() {
            if to.tag != "to" {
                continue;
            }
            let (Some(jid), Some(enc)) = (jid_attr(to, "jid"), child(to, "enc")) else {
                continue;
            };
            out.push(Share { to: jid, enc });
        }
    } else if let (Some(to), Some(enc)) = (jid_attr(message, "to"), child(message, "enc")) {
        // A bare <enc> is for exactly the device `to` names (peer messages, or the
        // phone of a single-device account).
        out.push(Share { to, enc });
    }
    out
}

/// Relays a `<message>` from `sender` and returns the ack for it.
pub fn message(state: &State, sender: &DeviceAddr, node: &Node) -> Option<Node> {
    if let Some(id) = attr(node, "id") {
        state.message_arrived(&id, sender);
    }
    let Some(to) = jid_attr(node, "to") else {
        return ack(node, Some(400));
    };
    if to.server == Server::Newsletter {
        return crate::newsletters::message(state, sender, node, &to);
    }
    if to.is_status_broadcast() {
        return crate::status::message(state, sender, node);
    }
    if to.server == Server::Group {
        return crate::groups::relay::message(state, sender, node, &to);
    }
    if !matches!(to.server, Server::Pn | Server::Lid) {
        tracing::info!(to = %to, "message to a chat wamock does not model yet (broadcast lists)");
        return ack(node, Some(501));
    }
    let Some(from) = state.peer(sender) else {
        return ack(node, Some(401));
    };
    let Some(recipient) = state.resolve(&to) else {
        return ack(node, Some(404));
    };
    let lid = is_lid(&to);
    let peer = attr(node, "category").as_deref() == Some("peer");
    let kept: Vec<Node> = node
        .children()
        .unwrap_or_default()
        .iter()
        .filter(|c| MESSAGE_CHILDREN_KEPT.contains(&c.tag.as_ref()))
        .cloned()
        .collect();
    let mut delivered = 0;
    for share in shares(node) {
        let Some(target) = state.resolve(&share.to) else {
            continue;
        };
        if target == *sender {
            continue;
        }
        let own_copy = target.phone == from.addr.phone && !peer;
        let copy = delivered_message(node, &from, lid, own_copy.then_some(&to), share.enc, &kept);
        match state.deliver(&target, copy) {
            Delivery::Live | Delivery::Queued => delivered += 1,
            Delivery::NoDevice => {
                tracing::debug!(to = %target.jid(), "no such device; share dropped")
            }
        }
    }
    tracing::debug!(id = ?attr(node, "id"), from = %sender.jid(), to = %recipient.phone, delivered, "message relayed");
    ack(node, None)
}

/// The copy of a message one device receives.
fn delivered_message(
    original: &Node,
    from: &Peer,
    lid: bool,
    recipient: Option<&Jid>,
    enc: &Node,
    kept: &[Node],
) -> Node {
    let mut b = NodeBuilder::new("message")
        .attr("from", from.jid(lid))
        .attr("id", attr(original, "id").unwrap_or_default())
        .attr(
            "type",
            attr(original, "type").unwrap_or_else(|| "text".into()),
        )
        .attr("t", unix_now().to_string());
    if let Some(name) = &from.push_name {
        b = b.attr("notify", name.clone());
    }
    for key in ["category", "edit", "push_priority"] {
        if let Some(v) = original.attrs.get(key) {
            b = b.attr(key, v.clone());
        }
    }
    if let Some(r) = recipient {
        b = b.attr("recipient", r.to_non_ad());
    }
    if lid {
        b = b.attr("sender_pn", from.jid(false));
    } else {
        b = b.attr("sender_lid", from.jid(true));
    }
    let mut children = vec![enc.clone()];
    children.extend(kept.iter().cloned());
    b.children(children).build()
}

/// The message ids a receipt is for: its `id` and any `<list><item id/>`.
pub fn receipt_ids(node: &Node) -> Vec<String> {
    let mut ids: Vec<String> = attr(node, "id").into_iter().collect();
    if let Some(list) = child(node, "list") {
        ids.extend(
            list.children()
                .unwrap_or_default()
                .iter()
                .filter_map(|item| attr(item, "id")),
        );
    }
    ids
}

/// Relays a `<receipt>` from `sender` to every device of the account it is for, and
/// returns the ack for it.
pub fn receipt(state: &State, sender: &DeviceAddr, node: &Node) -> Option<Node> {
    let Some(to) = jid_attr(node, "to") else {
        return ack(node, Some(400));
    };
    if crate::newsletters::receipt(state, sender, node, &to) {
        return ack(node, None);
    }
    if to.server == Server::Group {
        crate::groups::relay::receipt(state, sender, node, &to);
        return ack(node, None);
    }
    if !matches!(to.server, Server::Pn | Server::Lid) {
        tracing::debug!(to = %to, "receipt for a chat wamock does not model yet");
        return ack(node, None);
    }
    let Some(from) = state.peer(sender) else {
        return ack(node, Some(401));
    };
    let lid = is_lid(&to);
    let mut b = NodeBuilder::new("receipt")
        .attr("from", from.jid(lid))
        .attr("id", attr(node, "id").unwrap_or_default())
        .attr("t", unix_now().to_string());
    for key in ["type", "recipient", "participant"] {
        if let Some(v) = node.attrs.get(key) {
            b = b.attr(key, v.clone());
        }
    }
    if let Some(NodeContent::Nodes(children)) = &node.content {
        b = b.children(children.iter().cloned());
    }
    let copy = b.build();
    for target in state.account_devices(&to) {
        if target != *sender {
            state.deliver(&target, copy.clone());
        }
    }
    ack(node, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_name_class_id_and_recipient() {
        let message = NodeBuilder::new("message")
            .attr("to", "5511999990001@s.whatsapp.net")
            .attr("id", "ABC")
            .attr("type", "text")
            .build();
        let a = ack(&message, None).expect("ack");
        assert_eq!(attr(&a, "class").as_deref(), Some("message"));
        assert_eq!(attr(&a, "id").as_deref(), Some("ABC"));
        assert_eq!(
            attr(&a, "from").as_deref(),
            Some("5511999990001@s.whatsapp.net")
        );
        assert!(attr(&a, "t").is_some());
        assert!(attr(&a, "type").is_none(), "message acks carry no type");

        let read = NodeBuilder::new("receipt")
            .attr("to", "5511999990001:1@s.whatsapp.net")
            .attr("id", "XYZ")
            .attr("type", "read")
            .build();
        let a = ack(&read, Some(404)).expect("ack");
        assert_eq!(attr(&a, "class").as_deref(), Some("receipt"));
        assert_eq!(attr(&a, "type").as_deref(), Some("read"));
        assert_eq!(attr(&a, "error").as_deref(), Some("404"));

        let presence = NodeBuilder::new("presence")
            .attr("type", "available")
            .build();
        assert!(ack(&presence, None).is_none());
    }
}
