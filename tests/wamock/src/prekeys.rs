//! Each device's Signal key bundle as the server keeps it: registration id, identity,
//! signed pre-key and the one-time pre-keys not yet handed out.

use std::collections::BTreeMap;

use wacore::iq::prekeys::{OneTimePreKeyNode, PreKeyBundleUserNode, SignedPreKeyNode};
use wacore::prekeys::compute_key_bundle_digest;
use wacore::protocol::ProtocolNode;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Jid, Node};

use crate::error::{Error, Result};
use crate::nodes::{bytes, child};

#[derive(Debug, Clone)]
pub struct KeyBundle {
    pub registration_id: u32,
    pub identity: [u8; 32],
    pub signed: SignedPreKeyNode,
    pub one_time: BTreeMap<u32, Vec<u8>>,
}

fn be_u32(b: &[u8]) -> Option<u32> {
    if b.is_empty() || b.len() > 4 {
        return None;
    }
    let mut buf = [0u8; 4];
    buf[4 - b.len()..].copy_from_slice(b);
    Some(u32::from_be_bytes(buf))
}

fn proto_err(e: impl std::fmt::Display) -> Error {
    Error::protocol(e.to_string())
}

impl KeyBundle {
    /// The keys a companion registers with in its ClientPayload (no one-time keys yet).
    pub fn from_registration(
        reg: &waproto::whatsapp::client_payload::DevicePairingRegistrationData,
    ) -> Result<Self> {
        let registration_id = reg
            .e_regid
            .as_deref()
            .and_then(be_u32)
            .ok_or_else(|| Error::protocol("registration data has no e_regid"))?;
        let identity: [u8; 32] = reg
            .e_ident
            .as_deref()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| Error::protocol("registration data has no 32-byte e_ident"))?;
        let skey_id = reg
            .e_skey_id
            .as_deref()
            .and_then(be_u32)
            .ok_or_else(|| Error::protocol("registration data has no e_skey_id"))?;
        let skey_val = reg.e_skey_val.clone().unwrap_or_default();
        let skey_sig = reg.e_skey_sig.clone().unwrap_or_default();
        if skey_val.len() != 32 || skey_sig.len() != 64 {
            return Err(Error::protocol(
                "registration data has a malformed signed pre-key",
            ));
        }
        Ok(Self {
            registration_id,
            identity,
            signed: SignedPreKeyNode::new(skey_id, skey_val, skey_sig),
            one_time: BTreeMap::new(),
        })
    }

    /// Applies `<iq xmlns="encrypt" type="set">` with registration, identity, list and skey.
    pub fn apply_upload(&mut self, iq: &Node) -> Result<usize> {
        let registration_id = child(iq, "registration")
            .and_then(bytes)
            .and_then(be_u32)
            .ok_or_else(|| Error::protocol("pre-key upload without <registration>"))?;
        let identity: [u8; 32] = child(iq, "identity")
            .and_then(bytes)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| Error::protocol("pre-key upload without a 32-byte <identity>"))?;
        if identity != self.identity {
            return Err(Error::protocol("pre-key upload with another identity key"));
        }
        let skey =
            child(iq, "skey").ok_or_else(|| Error::protocol("pre-key upload without <skey>"))?;
        let signed = SignedPreKeyNode::try_from_node(skey).map_err(proto_err)?;
        let mut added = 0;
        if let Some(list) = child(iq, "list").and_then(Node::children) {
            for key in list.iter().filter(|k| k.tag == "key") {
                let key = OneTimePreKeyNode::try_from_node(key).map_err(proto_err)?;
                self.one_time.insert(key.id, key.public_bytes);
                added += 1;
            }
        }
        self.registration_id = registration_id;
        self.signed = signed;
        Ok(added)
    }

    /// Applies `<rotate><skey/></rotate>`.
    pub fn apply_rotate(&mut self, rotate: &Node) -> Result<()> {
        let skey =
            child(rotate, "skey").ok_or_else(|| Error::protocol("<rotate> without <skey>"))?;
        self.signed = SignedPreKeyNode::try_from_node(skey).map_err(proto_err)?;
        Ok(())
    }

    /// `<count value="N"/>`.
    pub fn count_node(&self) -> Node {
        NodeBuilder::new("count")
            .attr("value", self.one_time.len().to_string())
            .build()
    }

    /// `<digest>` as the client's `validate_digest_key` checks it.
    pub fn digest_node(&self) -> Node {
        let ids: Vec<u32> = self.one_time.keys().copied().collect();
        let pubs: Vec<&[u8]> = self.one_time.values().map(Vec::as_slice).collect();
        let hash = compute_key_bundle_digest(
            &self.identity,
            &self.signed.public_bytes,
            &self.signed.signature,
            &pubs,
        );
        NodeBuilder::new("digest")
            .children([
                NodeBuilder::new("registration")
                    .bytes(self.registration_id.to_be_bytes().to_vec())
                    .build(),
                NodeBuilder::new("type").bytes(vec![5u8]).build(),
                NodeBuilder::new("identity")
                    .bytes(self.identity.to_vec())
                    .build(),
                self.signed.clone().into_node(),
                NodeBuilder::new("list")
                    .children(ids.iter().map(|id| {
                        NodeBuilder::new("id")
                            .bytes(id.to_be_bytes()[1..].to_vec())
                            .build()
                    }))
                    .build(),
                NodeBuilder::new("hash").bytes(hash).build(),
            ])
            .build()
    }

    /// A `<user>` bundle for `jid`, handing out (and removing) the lowest one-time key.
    pub fn take_bundle(&mut self, jid: Jid, device_identity: Option<Vec<u8>>) -> Node {
        let one_time = self
            .one_time
            .pop_first()
            .map(|(id, pk)| OneTimePreKeyNode::new(id, pk));
        PreKeyBundleUserNode {
            jid,
            registration_id: self.registration_id,
            identity_key: self.identity.to_vec(),
            signed_pre_key: self.signed.clone(),
            one_time_pre_key: one_time,
            device_identity,
        }
        .into_node()
    }
}
