//! `usync` queries: device lists (with the account-signed key index list), LIDs and
//! contact presence on WhatsApp, for the accounts wamock knows.

use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Jid, Node, Server};
use waproto::buffa::Message;
use waproto::whatsapp as wa;

use crate::iq::{Answer, IqContext, Refusal};
use crate::nodes::{attr, child};
use crate::state::Account;

/// `[6, 2]`: the ADV prefix of an account signature over a key index list.
const ADV_PREFIX_KEY_INDEX_LIST: [u8; 2] = [6, 2];

pub fn answer(ctx: &IqContext<'_>, iq: &Node) -> Answer {
    let usync = child(iq, "usync").ok_or_else(|| Refusal::new(400, "bad-request"))?;
    let protocols: Vec<String> = child(usync, "query")
        .and_then(Node::children)
        .unwrap_or_default()
        .iter()
        .map(|p| p.tag.to_string())
        .collect();
    let users = child(usync, "list")
        .and_then(Node::children)
        .unwrap_or_default();

    let asker = ctx.device.map(|d| d.phone.clone());
    let mut out_users = Vec::new();
    for user in users.iter().filter(|u| u.tag == "user") {
        let Some(target) = target(user) else {
            continue;
        };
        let mut children = Vec::new();
        let found = ctx
            .state
            .with_account(&target.user, target.server == Server::Lid, |account| {
                let own = asker.as_deref() == Some(account.phone.as_str());
                for p in &protocols {
                    if let Some(node) = known_user_protocol(account, p, own) {
                        children.push(node);
                    }
                }
            })
            .is_some();
        if !found {
            for p in &protocols {
                if let Some(node) = unknown_user_protocol(p) {
                    children.push(node);
                }
            }
        }
        out_users.push(
            NodeBuilder::new("user")
                .attr("jid", target)
                .children(children)
                .build(),
        );
    }

    let mut usync_out = NodeBuilder::new("usync");
    for key in ["sid", "mode", "context"] {
        if let Some(v) = attr(usync, key) {
            usync_out = usync_out.attr(key, v);
        }
    }
    let result = NodeBuilder::new("result")
        .children(
            protocols
                .iter()
                .map(|p| NodeBuilder::new_dynamic(p.clone()).build()),
        )
        .build();
    let usync_out = usync_out
        .attr("index", "0")
        .attr("last", "true")
        .children([result, NodeBuilder::new("list").children(out_users).build()])
        .build();
    Ok(vec![usync_out])
}

/// The user a `<user>` entry asks about: its `jid`, or the number in `<contact>`.
fn target(user: &Node) -> Option<Jid> {
    if let Some(jid) = user.attrs.get("jid").and_then(|v| v.to_jid()) {
        return Some(jid.to_non_ad());
    }
    let contact = child(user, "contact")?.content_as_string()?;
    let digits: String = contact.chars().filter(char::is_ascii_digit).collect();
    (!digits.is_empty()).then(|| Jid::new(digits, Server::Pn))
}

/// `own`: the account asks about itself (privacy does not hide anything then).
fn known_user_protocol(account: &Account, protocol: &str, own: bool) -> Option<Node> {
    match protocol {
        "status" => Some(about(account, own)),
        "devices" => Some(devices(account)),
        "lid" => Some(
            NodeBuilder::new("lid")
                .attr("val", format!("{}@lid", account.lid))
                .build(),
        ),
        "contact" => Some(NodeBuilder::new("contact").attr("type", "in").build()),
        _ => None,
    }
}

/// `<status t>about</status>`; `<status code="401"/>` when the account's `status` privacy is
/// `none` and someone else asks (`contacts` is not modelled: wamock keeps no address books).
fn about(account: &Account, own: bool) -> Node {
    let hidden = account.privacy.categories.get("status").map(String::as_str) == Some("none");
    if hidden && !own {
        return NodeBuilder::new("status").attr("code", "401").build();
    }
    match account.profile.status.as_deref().filter(|s| !s.is_empty()) {
        Some(text) => NodeBuilder::new("status")
            .attr("t", account.created.to_string())
            .string_content(text.to_string())
            .build(),
        None => NodeBuilder::new("status").build(),
    }
}

fn unknown_user_protocol(protocol: &str) -> Option<Node> {
    match protocol {
        "contact" => Some(NodeBuilder::new("contact").attr("type", "out").build()),
        "devices" => Some(
            NodeBuilder::new("devices")
                .children([NodeBuilder::new("error")
                    .attr("code", "404")
                    .attr("text", "item-not-found")
                    .build()])
                .build(),
        ),
        _ => None,
    }
}

/// `<devices><device-list>...</device-list><key-index-list ts>signed</key-index-list></devices>`.
fn devices(account: &Account) -> Node {
    let mut list = vec![NodeBuilder::new("device").attr("id", "0").build()];
    for d in account.devices.values() {
        list.push(
            NodeBuilder::new("device")
                .attr("id", d.id.to_string())
                .attr("key-index", d.key_index.to_string())
                .build(),
        );
    }
    let ts = account
        .devices
        .values()
        .map(|d| d.paired_at)
        .max()
        .unwrap_or(account.created);
    let mut children = vec![NodeBuilder::new("device-list").children(list).build()];
    if let Some(signed) = signed_key_index_list(account, ts) {
        children.push(
            NodeBuilder::new("key-index-list")
                .attr("ts", ts.to_string())
                .bytes(signed)
                .build(),
        );
    }
    NodeBuilder::new("devices").children(children).build()
}

fn signed_key_index_list(account: &Account, ts: u64) -> Option<Vec<u8>> {
    let valid: Vec<u32> = account.devices.values().map(|d| d.key_index).collect();
    let details = wa::ADVKeyIndexList {
        raw_id: Some(account.raw_id),
        timestamp: Some(ts),
        current_index: Some(valid.iter().copied().max().unwrap_or(0)),
        valid_indexes: valid,
        ..Default::default()
    }
    .encode_to_vec();
    let message = [&ADV_PREFIX_KEY_INDEX_LIST[..], &details].concat();
    let signature = account
        .key
        .private_key
        .calculate_signature(&message, &mut rand::rng())
        .inspect_err(|e| tracing::warn!(error = %e, "signing the key index list failed"))
        .ok()?;
    Some(
        wa::ADVSignedKeyIndexList {
            details: Some(details),
            account_signature: Some(signature.to_vec()),
            ..Default::default()
        }
        .encode_to_vec(),
    )
}
