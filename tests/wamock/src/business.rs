//! Business profiles (`<iq xmlns="w:biz">`) and the account's contact QR code
//! (`<iq xmlns="w:qr">`). Tests give an account a business profile through the admin API;
//! the QR code is made on first request and replaced on revoke.

use serde::{Deserialize, Serialize};
use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Node, Server};

use crate::iq::{Answer, IqContext, Refusal};
use crate::nodes::{attr, child, jid_attr};

/// A business category: WhatsApp's id and its display name.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Category {
    pub id: String,
    pub name: String,
}

/// Opening hours of one day: `mode` is `open_24h`, `appointment_only` or
/// `specific_hours` (then `openTime`/`closeTime` in minutes from midnight).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Hours {
    pub day_of_week: String,
    pub mode: String,
    #[serde(default)]
    pub open_time: Option<u32>,
    #[serde(default)]
    pub close_time: Option<u32>,
}

/// What `PUT /admin/accounts/{phone}/business` sets and the `w:biz` get answers.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct Business {
    pub description: String,
    pub email: Option<String>,
    pub website: Vec<String>,
    pub address: Option<String>,
    pub categories: Vec<Category>,
    pub timezone: Option<String>,
    pub hours: Vec<Hours>,
}

/// Text content goes as bytes, as WhatsApp sends it.
fn text(tag: &'static str, value: &str) -> Node {
    NodeBuilder::new(tag).bytes(value.as_bytes()).build()
}

impl Business {
    /// `<profile jid>` with the children whatsapp-rust's `BusinessProfileSpec` reads.
    fn node(&self, jid: &wacore_binary::Jid) -> Node {
        let mut children = vec![text("description", &self.description)];
        if let Some(a) = &self.address {
            children.push(text("address", a));
        }
        if let Some(e) = &self.email {
            children.push(text("email", e));
        }
        children.extend(self.website.iter().map(|w| text("website", w)));
        if !self.categories.is_empty() {
            children.push(
                NodeBuilder::new("categories")
                    .children(self.categories.iter().map(|c| {
                        NodeBuilder::new("category")
                            .attr("id", c.id.clone())
                            .bytes(c.name.as_bytes())
                            .build()
                    }))
                    .build(),
            );
        }
        if self.timezone.is_some() || !self.hours.is_empty() {
            let mut b = NodeBuilder::new("business_hours");
            if let Some(tz) = &self.timezone {
                b = b.attr("timezone", tz.clone());
            }
            children.push(
                b.children(self.hours.iter().map(|h| {
                    let mut c = NodeBuilder::new("business_hours_config")
                        .attr("day_of_week", h.day_of_week.clone())
                        .attr("mode", h.mode.clone());
                    if let Some(t) = h.open_time {
                        c = c.attr("open_time", t.to_string());
                    }
                    if let Some(t) = h.close_time {
                        c = c.attr("close_time", t.to_string());
                    }
                    c.build()
                }))
                .build(),
            );
        }
        NodeBuilder::new("profile")
            .attr("jid", jid.clone())
            .attr("tag", "wamock")
            .children(children)
            .build()
    }
}

/// `<business_profile v><profile jid/>...</business_profile>`: one `<profile>` per asked
/// account that has a business profile; accounts without one are left out, as WhatsApp
/// does for personal accounts.
pub fn profile(ctx: &IqContext<'_>, iq: &Node) -> Answer {
    if ctx.device.is_none() {
        return Err(Refusal::new(401, "not-authorized"));
    }
    let Some(asked) = child(iq, "business_profile") else {
        return Err(Refusal::new(400, "bad-request"));
    };
    let mut found = Vec::new();
    for p in asked.children().unwrap_or_default() {
        let Some(jid) = jid_attr(p, "jid") else {
            continue;
        };
        let biz = ctx
            .state
            .with_account(&jid.user, jid.server == Server::Lid, |a| {
                a.profile.business.clone()
            })
            .flatten();
        if let Some(b) = biz {
            found.push(b.node(&jid));
        }
    }
    Ok(vec![
        NodeBuilder::new("business_profile")
            .attr("v", attr(asked, "v").unwrap_or_else(|| "244".into()))
            .children(found)
            .build(),
    ])
}

/// `<qr type="contact" action="get|revoke"/>` → `<qr type="contact" code/>`: the account's
/// contact QR code, made on first use; `revoke` replaces it.
pub fn contact_qr(ctx: &IqContext<'_>, iq: &Node) -> Answer {
    let Some(device) = ctx.device else {
        return Err(Refusal::new(401, "not-authorized"));
    };
    let Some(qr) = child(iq, "qr") else {
        return Err(Refusal::new(400, "bad-request"));
    };
    if attr(qr, "type").as_deref() != Some("contact") {
        return Err(Refusal::new(501, "wamock only models contact QR codes"));
    }
    let revoke = match attr(qr, "action").as_deref() {
        Some("get") => false,
        Some("revoke") => true,
        _ => return Err(Refusal::new(400, "bad-request")),
    };
    let code = ctx
        .state
        .with_account(&device.phone, false, |a| {
            if revoke || a.profile.contact_qr.is_none() {
                a.profile.contact_qr = Some(new_code());
            }
            a.profile.contact_qr.clone()
        })
        .flatten()
        .ok_or_else(|| Refusal::new(404, "item-not-found"))?;
    Ok(vec![
        NodeBuilder::new("qr")
            .attr("type", "contact")
            .attr("code", code)
            .build(),
    ])
}

/// 14 upper-case letters and digits, the shape of WhatsApp's contact QR codes.
fn new_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..14)
        .map(|_| ALPHABET[rand::random::<u32>() as usize % ALPHABET.len()] as char)
        .collect()
}
