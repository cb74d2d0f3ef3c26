//! The blocklist each account keeps: `<iq xmlns="blocklist">` gets answer it, sets
//! (`<item jid action="block|unblock" pn_jid?/>`) change it.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Jid, Node, Server};

use crate::iq::{Answer, IqContext, Refusal};
use crate::nodes::{attr, child, unix_now};
use crate::state::State;

/// Blocked JIDs (as the client named them, LID for modern clients) of one account.
#[derive(Debug, Default, Clone)]
pub struct Blocklist(BTreeMap<String, Blocked>);

#[derive(Debug, Clone)]
struct Blocked {
    pn: Option<String>,
    at: u64,
}

impl Blocklist {
    fn list_node(&self) -> Node {
        NodeBuilder::new("list")
            .children(self.0.iter().map(|(jid, b)| {
                NodeBuilder::new("item")
                    .attr("jid", jid.clone())
                    .attr("t", b.at.to_string())
                    .build()
            }))
            .build()
    }

    /// `[{"jid", "pn"?, "t"}]` in JID order.
    pub fn view(&self) -> Value {
        Value::Array(
            self.0
                .iter()
                .map(|(jid, b)| {
                    let mut v = json!({"jid": jid, "t": b.at});
                    if let Some(pn) = &b.pn {
                        v["pn"] = json!(pn);
                    }
                    v
                })
                .collect(),
        )
    }
}

/// A user JID's bare form, or a refusal naming `what`.
fn user_jid(raw: Option<String>, what: &str) -> Result<Jid, Refusal> {
    let jid: Jid = raw
        .and_then(|r| r.parse().ok())
        .ok_or_else(|| Refusal::new(400, format!("bad-request: no {what}")))?;
    if !matches!(jid.server, Server::Pn | Server::Lid) || jid.user.is_empty() {
        return Err(Refusal::new(
            400,
            format!("bad-request: {what} is not a user"),
        ));
    }
    Ok(jid.to_non_ad())
}

pub fn answer(ctx: &IqContext<'_>, iq: &Node) -> Answer {
    let device = ctx
        .device
        .ok_or_else(|| Refusal::new(401, "not-authorized"))?;
    let set = attr(iq, "type").as_deref() == Some("set");
    let change = if set {
        let item = child(iq, "item").ok_or_else(|| Refusal::new(400, "bad-request: no item"))?;
        let jid = user_jid(attr(item, "jid"), "jid")?;
        let pn = match attr(item, "pn_jid") {
            Some(raw) => Some(user_jid(Some(raw), "pn_jid")?),
            None => None,
        };
        let block = match attr(item, "action").as_deref() {
            Some("block") => true,
            Some("unblock") => false,
            _ => return Err(Refusal::new(400, "bad-request: action")),
        };
        Some((jid, pn, block))
    } else {
        None
    };
    ctx.state
        .with_account(&device.phone, false, |account| {
            let list = &mut account.blocklist;
            match change {
                Some((jid, pn, true)) => {
                    list.0.insert(
                        jid.to_string(),
                        Blocked {
                            pn: pn.map(|p| p.to_string()),
                            at: unix_now(),
                        },
                    );
                    Vec::new()
                }
                Some((jid, _, false)) => {
                    list.0.remove(&jid.to_string());
                    Vec::new()
                }
                None => vec![list.list_node()],
            }
        })
        .ok_or_else(|| Refusal::new(404, "item-not-found"))
}

/// What the admin API shows of an account: `{"phone", "lid", "pushName"}`.
pub fn account_view(state: &State, phone: &str) -> Option<Value> {
    state.with_account(
        phone,
        false,
        |a| json!({"phone": a.phone, "lid": format!("{}@lid", a.lid), "pushName": a.push_name}),
    )
}

/// The account's blocklist as [`Blocklist::view`] shows it.
pub fn view(state: &State, phone: &str) -> Option<Value> {
    state.with_account(phone, false, |a| a.blocklist.view())
}
