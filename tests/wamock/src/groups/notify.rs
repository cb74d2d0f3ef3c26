//! `<notification type="w:gp2">` (and `picture`) to the members' devices when a group
//! changes; whatsapp-rust turns them into `Event::GroupUpdate`.

use std::sync::atomic::{AtomicU64, Ordering};

use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Jid, Node};

use super::Group;
use crate::nodes::unix_now;
use crate::state::State;

static NEXT: AtomicU64 = AtomicU64::new(1);

fn id() -> String {
    format!("wamock-gp2-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// `<ACTION><participant jid/>...</ACTION>`.
pub fn participants_node(action: &str, jids: &[Jid]) -> Node {
    NodeBuilder::new_dynamic(action.to_string())
        .children(jids.iter().map(|j| {
            NodeBuilder::new("participant")
                .attr("jid", j.clone())
                .build()
        }))
        .build()
}

fn notification(kind: &'static str, group: &Group, actor: &str, action: Node) -> Node {
    NodeBuilder::new("notification")
        .attr("type", kind)
        .attr("id", id())
        .attr("from", group.jid())
        .attr("participant", Jid::pn(actor))
        .attr("t", unix_now().to_string())
        .children([action])
        .build()
}

/// Sends one `w:gp2` action to every device of every member (and of `extra`).
pub fn send(state: &State, group: &Group, actor: &str, action: Node, extra: Option<&[Jid]>) {
    let mut phones = group.phones();
    for j in extra.unwrap_or_default() {
        if !phones.contains(&j.user.to_string()) {
            phones.push(j.user.to_string());
        }
    }
    send_to(state, group, actor, action, &phones);
}

/// Sends one `w:gp2` action to every device of these accounts.
pub fn send_to(state: &State, group: &Group, actor: &str, action: Node, phones: &[String]) {
    let node = notification("w:gp2", group, actor, action);
    for phone in phones {
        for device in state.account_devices(&Jid::pn(phone.clone())) {
            state.deliver(&device, node.clone());
        }
    }
}

/// `<notification type="picture">` with `<set|delete jid id?/>`.
pub fn send_picture(state: &State, group: &Group, actor: &str, action: Node) {
    let node = notification("picture", group, actor, action);
    for phone in group.phones() {
        for device in state.account_devices(&Jid::pn(phone)) {
            state.deliver(&device, node.clone());
        }
    }
}
