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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use wacore::iq::prekeys::DigestKeyBundleSpec;
    use wacore::iq::spec::IqSpec;
    use wacore::libsignal::protocol::KeyPair;
    use wacore::prekeys::PreKeyUtils;
    use wacore_binary::Server;
    use waproto::whatsapp::client_payload::DevicePairingRegistrationData;

    fn key() -> KeyPair {
        KeyPair::generate(&mut rand::rng())
    }

    fn registered(identity: &KeyPair, skey: &KeyPair) -> KeyBundle {
        let reg = DevicePairingRegistrationData {
            e_regid: Some(4242u32.to_be_bytes().to_vec()),
            e_keytype: Some(vec![5]),
            e_ident: Some(identity.public_key.public_key_bytes().to_vec()),
            e_skey_id: Some(1u32.to_be_bytes()[1..].to_vec()),
            e_skey_val: Some(skey.public_key.public_key_bytes().to_vec()),
            e_skey_sig: Some(vec![7u8; 64]),
            ..Default::default()
        };
        KeyBundle::from_registration(&reg).expect("registration")
    }

    /// A device identity the way pairing leaves it: account- and device-signed.
    fn signed_device_identity(identity: &KeyPair) -> Vec<u8> {
        let device = wacore::pair::DeviceState {
            identity_key: identity.clone(),
            noise_key: key(),
            adv_secret_key: [3u8; 32],
        };
        let identity_pub: [u8; 32] = identity
            .public_key
            .public_key_bytes()
            .try_into()
            .expect("32 bytes");
        let container =
            crate::pairing::device_identity_container(&key(), 1, 1, &identity_pub, &[3u8; 32])
                .expect("container");
        wacore::pair::PairUtils::do_pair_crypto(&device, &container)
            .expect("pair crypto")
            .0
    }

    fn iq(children: Vec<Node>) -> Node {
        NodeBuilder::new("iq").children(children).build()
    }

    #[test]
    fn upload_count_digest_and_bundle() {
        let identity = key();
        let skey = key();
        let mut bundle = registered(&identity, &skey);
        assert_eq!(bundle.registration_id, 4242);
        let prekeys: Vec<(u32, KeyPair)> = (10..15).map(|id| (id, key())).collect();
        let upload = PreKeyUtils::build_upload_prekeys_request(
            4242,
            identity.public_key.public_key_bytes(),
            2,
            skey.public_key.public_key_bytes(),
            &[8u8; 64],
            prekeys
                .iter()
                .map(|(id, k)| (*id, k.public_key.public_key_bytes())),
        );
        assert_eq!(bundle.apply_upload(&iq(upload)).expect("upload"), 5);
        assert_eq!(
            bundle
                .count_node()
                .attrs
                .get("value")
                .map(|v| v.as_str().into_owned()),
            Some("5".into())
        );

        let digest = DigestKeyBundleSpec::new()
            .parse_response(&iq(vec![bundle.digest_node()]).as_node_ref())
            .expect("client parses the digest");
        assert_eq!(digest.reg_id, 4242);
        assert_eq!(digest.skey_id, 2);
        assert_eq!(digest.prekey_ids, vec![10, 11, 12, 13, 14]);
        let pubs: Vec<&[u8]> = prekeys
            .iter()
            .map(|(_, k)| k.public_key.public_key_bytes())
            .collect();
        let expected = compute_key_bundle_digest(
            identity.public_key.public_key_bytes(),
            skey.public_key.public_key_bytes(),
            &[8u8; 64],
            &pubs,
        );
        assert_eq!(digest.hash, expected);

        let jid = Jid::new("5511999990001", Server::Pn).with_device(1);
        let device_identity = signed_device_identity(&identity);
        let user = bundle.take_bundle(jid.clone(), Some(device_identity));
        let list = NodeBuilder::new("list").children([user]).build();
        let outcome =
            PreKeyUtils::parse_prekeys_response(&iq(vec![list]).as_node_ref(), &HashMap::new())
                .expect("client parses the bundle");
        let got = outcome.bundles.get(&jid).expect("bundle for the device");
        assert_eq!(got.registration_id().expect("reg id"), 4242);
        assert_eq!(
            got.pre_key_id().expect("pre-key id").map(u32::from),
            Some(10)
        );
        assert_eq!(bundle.one_time.len(), 4, "a handed-out pre-key is gone");
    }

    #[test]
    fn upload_with_another_identity_is_refused() {
        let identity = key();
        let skey = key();
        let mut bundle = registered(&identity, &skey);
        let upload = PreKeyUtils::build_upload_prekeys_request(
            1,
            key().public_key.public_key_bytes(),
            2,
            skey.public_key.public_key_bytes(),
            &[8u8; 64],
            std::iter::empty(),
        );
        assert!(bundle.apply_upload(&iq(upload)).is_err());
    }
}
