//! Answers to the `<iq>` requests a client sends. Every request gets an answer: the
//! ones wamock does not model yet get an empty result (logged), never silence.

use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Node, Server};

use crate::nodes::{attr, child, iq_error, iq_result};
use crate::state::{ConnId, DeviceAddr, State};
use crate::usync;

pub struct IqContext<'a> {
    pub state: &'a State,
    /// The logged-in device, `None` on a pairing connection.
    pub device: Option<&'a DeviceAddr>,
    pub conn: Option<ConnId>,
}

/// An IQ failure: `<error code text/>`.
pub struct Refusal {
    pub code: u16,
    pub text: String,
}

impl Refusal {
    pub fn new(code: u16, text: impl Into<String>) -> Self {
        Self {
            code,
            text: text.into(),
        }
    }
}

pub type Answer = Result<Vec<Node>, Refusal>;

/// The answer to one client IQ.
pub fn answer(ctx: &IqContext<'_>, iq: &Node) -> Node {
    let xmlns = attr(iq, "xmlns").unwrap_or_default();
    let result = match xmlns.as_str() {
        "encrypt" => encrypt(ctx, iq),
        "usync" => usync::answer(ctx, iq),
        "w:sync:app:state" => crate::appstate::answer(ctx, iq),
        "abt" => Ok(vec![props()]),
        "w:m" if child(iq, "media_conn").is_some() => Ok(vec![ctx.state.media.media_conn()]),
        "md" if child(iq, "link_code_companion_reg").is_some() => {
            crate::pair_code::companion_iq(ctx, iq)
        }
        "status" => crate::profile::status(ctx, iq),
        "w:profile:picture" => crate::profile::picture(ctx, iq),
        "privacy" => crate::privacy::answer(ctx, iq),
        "disappearing_mode" => crate::privacy::disappearing_mode(ctx, iq),
        "blocklist" => crate::blocklist::answer(ctx, iq),
        "w:biz" => crate::business::profile(ctx, iq),
        "w:qr" => crate::business::contact_qr(ctx, iq),
        "newsletter" => crate::newsletters::iq(ctx, iq),
        "w:g2" => crate::groups::iq::answer(ctx, iq),
        // Newsletter queries first; the rest (community sub-groups) go to the groups.
        "w:mex" => {
            crate::newsletters::mex(ctx, iq).unwrap_or_else(|| crate::groups::mex::answer(ctx, iq))
        }
        // Keepalive pings, passive/active and ping: an empty result is the answer.
        "w:p" | "urn:xmpp:ping" | "passive" => Ok(Vec::new()),
        _ => not_modelled(&xmlns, iq),
    };
    match result {
        Ok(children) => iq_result(iq, children),
        Err(refusal) => iq_error(iq, refusal.code, &refusal.text),
    }
}

fn not_modelled(xmlns: &str, iq: &Node) -> Answer {
    tracing::info!(
        xmlns = %xmlns,
        kind = ?attr(iq, "type"),
        first_child = ?iq.children().and_then(|c| c.first()).map(|c| c.tag.to_string()),
        "iq not modelled by wamock, answered with an empty result"
    );
    Ok(Vec::new())
}

fn logged_in<'a>(ctx: &IqContext<'a>) -> Result<&'a DeviceAddr, Refusal> {
    ctx.device
        .ok_or_else(|| Refusal::new(401, "not-authorized"))
}

/// Pre-key upload, count, digest, rotation and bundle fetch.
fn encrypt(ctx: &IqContext<'_>, iq: &Node) -> Answer {
    let device = logged_in(ctx)?;
    let with_keys = |f: &mut dyn FnMut(&mut crate::prekeys::KeyBundle) -> Answer| -> Answer {
        ctx.state
            .with_device(device, |d| f(&mut d.keys))
            .unwrap_or_else(|| Err(Refusal::new(404, "item-not-found")))
    };
    if child(iq, "registration").is_some() {
        return with_keys(&mut |keys| match keys.apply_upload(iq) {
            Ok(added) => {
                tracing::debug!(jid = %device.jid(), added, total = keys.one_time.len(), "pre-keys uploaded");
                Ok(Vec::new())
            }
            Err(e) => Err(Refusal::new(400, format!("bad-request: {e}"))),
        });
    }
    if child(iq, "count").is_some() {
        return with_keys(&mut |keys| Ok(vec![keys.count_node()]));
    }
    if child(iq, "digest").is_some() {
        return with_keys(&mut |keys| Ok(vec![keys.digest_node()]));
    }
    if let Some(rotate) = child(iq, "rotate") {
        return with_keys(&mut |keys| {
            keys.apply_rotate(rotate)
                .map(|()| Vec::new())
                .map_err(|e| Refusal::new(400, format!("bad-request: {e}")))
        });
    }
    if let Some(key) = child(iq, "key") {
        return Ok(vec![fetch_bundles(ctx, key)]);
    }
    tracing::info!(jid = %device.jid(), "encrypt iq not modelled by wamock, answered with an empty result");
    Ok(Vec::new())
}

/// `<key><user jid/>...</key>` → `<list><user>bundle</user>...</list>`.
fn fetch_bundles(ctx: &IqContext<'_>, key: &Node) -> Node {
    let users = key
        .children()
        .unwrap_or_default()
        .iter()
        .filter(|u| u.tag == "user");
    let mut out = Vec::new();
    for user in users {
        let Some(jid) = user.attrs.get("jid").and_then(|v| v.to_jid()) else {
            continue;
        };
        let is_lid = jid.server == Server::Lid;
        let bundle = ctx.state.with_account(&jid.user, is_lid, |account| {
            let device = account.device_mut(jid.device)?;
            let identity = device.signed_identity.clone();
            Some(device.keys.take_bundle(jid.clone(), identity))
        });
        out.push(match bundle.flatten() {
            Some(node) => node,
            None => NodeBuilder::new("user")
                .attr("jid", jid)
                .children([NodeBuilder::new("error")
                    .attr("code", "404")
                    .attr("text", "item-not-found")
                    .build()])
                .build(),
        });
    }
    NodeBuilder::new("list").children(out).build()
}

/// A/B props: none set.
fn props() -> Node {
    NodeBuilder::new("props")
        .attr("protocol", "1")
        .attr("hash", "wamock")
        .attr("refresh", "86400")
        .build()
}
