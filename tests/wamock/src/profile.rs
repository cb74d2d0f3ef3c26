//! An account's own profile as its devices set it: the about text (`<iq xmlns="status">`),
//! the picture (`<iq xmlns="w:profile:picture">` set, remove and get) and the push name
//! (`<presence name>`, kept in [`crate::accounts::Account::push_name`]).

use serde::Serialize;
use sha2::{Digest, Sha256};
use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Node, NodeContent, Server};

use crate::iq::{Answer, IqContext, Refusal};
use crate::nodes::{attr, child, jid_attr};
use crate::state::{DeviceAddr, State};

/// A picture an account set.
#[derive(Debug, Clone)]
pub struct Picture {
    pub id: String,
    pub sha256: String,
    pub bytes: Vec<u8>,
}

impl Picture {
    /// A picture of these bytes, with a fresh id and their SHA-256.
    pub fn of(bytes: Vec<u8>) -> Self {
        let sha256: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let id = crate::nodes::unix_now().to_string() + &sha256[..6];
        Picture { id, sha256, bytes }
    }
}

/// The `<picture>` answer to a get: `id url direct_path hash type`, or a 404 inside.
pub fn picture_node(owner: &str, picture: Option<&Picture>, kind: &str) -> Node {
    match picture {
        Some(p) => {
            let path = format!("/pp/{owner}/{}", p.id);
            NodeBuilder::new("picture")
                .attr("id", p.id.clone())
                .attr("type", kind.to_string())
                .attr("url", format!("https://{}{path}", crate::MEDIA_HOST))
                .attr("direct_path", path)
                .attr("hash", p.sha256.clone())
                .build()
        }
        None => NodeBuilder::new("picture")
            .children([NodeBuilder::new("error")
                .attr("code", "404")
                .attr("text", "item-not-found")
                .build()])
            .build(),
    }
}

/// What an account set about itself.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    pub status: Option<String>,
    pub picture: Option<Picture>,
    /// Set by tests (`PUT /admin/accounts/{phone}/business`): a business account.
    pub business: Option<crate::business::Business>,
    /// The contact QR code (`w:qr`), made on first request.
    pub contact_qr: Option<String>,
}

/// `GET /admin/accounts/{phone}/profile`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileView {
    pub status: Option<String>,
    pub picture_id: Option<String>,
    pub picture_sha256: Option<String>,
    pub push_name: Option<String>,
    pub contact_qr: Option<String>,
}

/// The text of a node, whether it came as a string or as bytes.
fn text(node: &Node) -> Option<String> {
    match &node.content {
        Some(NodeContent::String(s)) => Some(s.to_string()),
        Some(NodeContent::Bytes(b)) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

fn logged_in<'a>(ctx: &IqContext<'a>) -> Result<&'a DeviceAddr, Refusal> {
    ctx.device
        .ok_or_else(|| Refusal::new(401, "not-authorized"))
}

/// `<iq xmlns="status" type="set"><status>text</status></iq>`: the account's about.
pub fn status(ctx: &IqContext<'_>, iq: &Node) -> Answer {
    let device = logged_in(ctx)?;
    if attr(iq, "type").as_deref() != Some("set") {
        return Err(Refusal::new(501, "wamock only models setting the status"));
    }
    let about = child(iq, "status").and_then(text).unwrap_or_default();
    tracing::debug!(phone = %device.phone, len = about.len(), "status set");
    ctx.state
        .with_account(&device.phone, false, |a| a.profile.status = Some(about))
        .ok_or_else(|| Refusal::new(404, "item-not-found"))?;
    Ok(Vec::new())
}

/// `w:profile:picture`: set (`<picture type="image">bytes</picture>`), remove (no child),
/// get (`<picture type query="url"/>` with `target`).
pub fn picture(ctx: &IqContext<'_>, iq: &Node) -> Answer {
    let device = logged_in(ctx)?;
    if let Some(target) = jid_attr(iq, "target").filter(|t| t.server == Server::Group) {
        return crate::groups::iq::picture(ctx, iq, &target);
    }
    match attr(iq, "type").as_deref() {
        Some("set") => {
            if attr(iq, "target").is_some() {
                return Err(Refusal::new(
                    501,
                    "wamock only models own and group pictures",
                ));
            }
            let picture = child(iq, "picture").map(|p| match &p.content {
                Some(NodeContent::Bytes(b)) => b.clone(),
                Some(NodeContent::String(s)) => s.as_bytes().to_vec(),
                _ => Vec::new(),
            });
            let stored = match picture {
                Some(bytes) if !bytes.is_empty() => Some(Picture::of(bytes)),
                Some(_) => return Err(Refusal::new(400, "bad-request")),
                None => None,
            };
            let id = stored.as_ref().map(|p| p.id.clone());
            ctx.state
                .with_account(&device.phone, false, |a| a.profile.picture = stored)
                .ok_or_else(|| Refusal::new(404, "item-not-found"))?;
            Ok(id
                .map(|id| vec![NodeBuilder::new("picture").attr("id", id).build()])
                .unwrap_or_default())
        }
        Some("get") => {
            let target =
                jid_attr(iq, "target").unwrap_or_else(|| wacore_binary::Jid::pn(&device.phone));
            let kind = child(iq, "picture")
                .and_then(|p| attr(p, "type"))
                .unwrap_or_else(|| "image".into());
            let found = ctx
                .state
                .with_account(&target.user, target.server == Server::Lid, |a| {
                    a.profile.picture.clone()
                });
            Ok(vec![picture_node(
                &target.user,
                found.flatten().as_ref(),
                &kind,
            )])
        }
        _ => Err(Refusal::new(400, "bad-request")),
    }
}

/// `<presence name="...">`: the account's push name.
pub fn push_name(state: &State, sender: &DeviceAddr, node: &Node) {
    if let Some(name) = attr(node, "name").filter(|n| !n.is_empty()) {
        state.with_account(&sender.phone, false, |a| a.push_name = Some(name));
    }
}

/// What the admin API shows of an account's profile.
pub fn view(state: &State, phone: &str) -> Option<ProfileView> {
    state.with_account(phone, false, |a| ProfileView {
        status: a.profile.status.clone(),
        picture_id: a.profile.picture.as_ref().map(|p| p.id.clone()),
        picture_sha256: a.profile.picture.as_ref().map(|p| p.sha256.clone()),
        push_name: a.push_name.clone(),
        contact_qr: a.profile.contact_qr.clone(),
    })
}
