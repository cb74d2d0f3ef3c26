//! Contacts through a connected session's client: which numbers are on WhatsApp, their LIDs,
//! usync user info, and the account's blocklist.

use std::collections::HashMap;

use wacore::iq::business::BusinessProfile;
use whatsapp_rust::{Jid, NodeBuilder, wacore_binary::NodeContent};

use super::{Engine, EngineError};

/// What WhatsApp answered about one number (`POST /:session/contact/check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub is_registered: bool,
    /// The account's JID, when registered.
    pub jid: Option<String>,
    /// The account's LID, when WhatsApp gave it.
    pub lid: Option<String>,
}

/// Usync details of one user (`GET /:session/contact/info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserDetails {
    pub status: String,
    pub picture_id: String,
    /// Device JIDs (`user:device@server`; device 0 as the bare JID).
    pub devices: Vec<String>,
}

fn failed(what: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Action(format!("failed to {what}: {e}"))
}

impl Engine {
    /// Asks WhatsApp which of `jids` have an account; one answer per input, by position.
    pub async fn check_registered(
        &self,
        name: &str,
        jids: &[Jid],
    ) -> Result<Vec<Registration>, EngineError> {
        let client = self.connected(name)?.client().clone();
        let found = client
            .contacts()
            .is_on_whatsapp(jids)
            .await
            .map_err(|e| failed("check the phone numbers", e))?;
        let by_user: HashMap<&str, _> = found
            .iter()
            .map(|r| (r.pn_jid.as_ref().unwrap_or(&r.jid).user.as_str(), r))
            .collect();
        Ok(jids
            .iter()
            .map(|j| match by_user.get(j.user.as_str()) {
                Some(r) => Registration {
                    is_registered: r.is_registered,
                    jid: r
                        .is_registered
                        .then(|| r.pn_jid.as_ref().unwrap_or(&r.jid).to_string()),
                    lid: r.lid.as_ref().map(ToString::to_string),
                },
                None => Registration {
                    is_registered: false,
                    jid: None,
                    lid: None,
                },
            })
            .collect())
    }

    /// Usync status, picture id and devices of each of `jids` WhatsApp knows, keyed by JID.
    pub async fn user_details(
        &self,
        name: &str,
        jids: &[Jid],
    ) -> Result<Vec<(String, UserDetails)>, EngineError> {
        let client = self.connected(name)?.client().clone();
        let info = client
            .contacts()
            .get_user_info(jids)
            .await
            .map_err(|e| failed("get the user info", e))?;
        let mut out: Vec<(String, UserDetails)> = info
            .into_values()
            .map(|u| {
                let bare = u.jid.to_non_ad();
                let devices = u
                    .devices
                    .iter()
                    .map(|&d| {
                        if d == 0 {
                            bare.to_string()
                        } else {
                            format!("{}:{d}@{}", bare.user, bare.server)
                        }
                    })
                    .collect();
                (
                    bare.to_string(),
                    UserDetails {
                        status: u.status.unwrap_or_default(),
                        picture_id: u.picture_id.unwrap_or_default(),
                        devices,
                    },
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// The JIDs the account blocked, as WhatsApp lists them.
    pub async fn blocklist(&self, name: &str) -> Result<Vec<String>, EngineError> {
        let client = self.connected(name)?.client().clone();
        let entries = client
            .blocking()
            .get_blocklist()
            .await
            .map_err(|e| failed("get the blocklist", e))?;
        Ok(entries.into_iter().map(|e| e.jid.to_string()).collect())
    }

    /// Blocks (`block: true`) or unblocks `who`. The LID↔PN mapping WhatsApp needs is
    /// learned first with a usync query when the client does not know it yet.
    pub async fn set_blocked(&self, name: &str, who: &Jid, block: bool) -> Result<(), EngineError> {
        let client = self.connected(name)?.client().clone();
        if who.is_pn() {
            client
                .contacts()
                .is_on_whatsapp(std::slice::from_ref(who))
                .await
                .map_err(|e| failed("look up the contact", e))?;
        }
        let r = if block {
            client.blocking().block(who).await
        } else {
            client.blocking().unblock(who).await
        };
        r.map_err(|e| failed(if block { "block" } else { "unblock" }, e))
    }

    /// The full-size profile picture of `who` as `(url, id)`; `None` when there is none (or
    /// WhatsApp does not show it to this account).
    pub async fn avatar(
        &self,
        name: &str,
        who: &Jid,
    ) -> Result<Option<(String, String)>, EngineError> {
        let client = self.connected(name)?.client().clone();
        let pic = client
            .contacts()
            .get_profile_picture(who, false)
            .await
            .map_err(|e| failed("get the profile picture", e))?;
        Ok(pic.map(|p| (p.url, p.id)))
    }

    /// The business profile of `who`; `None` for a personal account (WhatsApp sends no
    /// `<profile>` for it).
    pub async fn business_profile(
        &self,
        name: &str,
        who: &Jid,
    ) -> Result<Option<BusinessProfile>, EngineError> {
        let client = self.connected(name)?.client().clone();
        client
            .get_business_profile(who)
            .await
            .map_err(|e| failed("get the business profile", e))
    }

    /// The account's contact QR code (`w:qr`, as whatsmeow's `GetContactQRLink`):
    /// `revoke` replaces it with a new one. whatsapp-rust has no call for it, so the IQ is
    /// built here.
    pub async fn contact_qr_code(&self, name: &str, revoke: bool) -> Result<String, EngineError> {
        let client = self.connected(name)?.client().clone();
        let qr = NodeBuilder::new("qr")
            .attr("type", "contact")
            .attr("action", if revoke { "revoke" } else { "get" })
            .build();
        let query = whatsapp_rust::request::InfoQuery::set(
            "w:qr",
            Jid::new("", whatsapp_rust::Server::Pn),
            Some(NodeContent::Nodes(vec![qr])),
        );
        let answer = client
            .send_iq(query)
            .await
            .map_err(|e| failed("get the contact QR link", e))?;
        answer
            .get_optional_child("qr")
            .and_then(|q| q.attrs().optional_string("code").map(|c| c.into_owned()))
            .filter(|c| !c.is_empty())
            .ok_or_else(|| failed("get the contact QR link", "no code in WhatsApp's answer"))
    }
}
