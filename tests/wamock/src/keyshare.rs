//! The phone's app-state key share to a new companion: right after pairing, a real
//! phone sends the companion its app-state sync key in a Signal pre-key message
//! (`category="peer"`), and whatsapp-rust waits up to 10 s for it before its first
//! app-state sync. wamock plays the phone for this one message with wacore's own Signal
//! code: the account key is the phone's identity key, the companion's bundle is the one
//! wamock holds, and a throwaway in-memory store carries the new session.

use std::collections::HashMap;

use wacore::libsignal::protocol::{
    Direction, IdentityChange, IdentityKey, IdentityKeyPair, IdentityKeyStore, KeyPair,
    PreKeyBundle, ProtocolAddress, PublicKey, SessionRecord, SessionStore, SignalProtocolError,
    UsePQRatchet, message_encrypt, process_prekey_bundle,
};
use wacore::messages::MessageUtils;
use wacore::send::extract_ciphertext;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Jid, Node};
use waproto::buffa::MessageField;
use waproto::whatsapp as wa;

use crate::error::{Error, Result};
use crate::nodes::unix_now;
use crate::prekeys::KeyBundle;

/// An account's app-state sync key, shared with every companion.
#[derive(Debug, Clone)]
pub struct AppStateKey {
    pub id: Vec<u8>,
    pub data: [u8; 32],
    pub created: u64,
}

impl AppStateKey {
    pub fn generate() -> Self {
        use rand::RngExt;
        let mut rng = rand::rng();
        let mut id = vec![0u8; 6];
        rng.fill(&mut id[2..]);
        let mut data = [0u8; 32];
        rng.fill(&mut data);
        Self {
            id,
            data,
            created: unix_now(),
        }
    }
}

/// The phone as the sender of this message.
pub struct Phone<'a> {
    pub phone: &'a str,
    pub key: &'a KeyPair,
    pub registration_id: u32,
    pub raw_id: u32,
    pub app_state_key: &'a AppStateKey,
}

/// The sessions of a one-message Signal store.
#[derive(Default)]
struct Sessions(HashMap<String, SessionRecord>);

/// The phone's identity, and the identities it has seen.
struct Identities {
    identity: IdentityKeyPair,
    registration_id: u32,
    seen: HashMap<String, IdentityKey>,
}

type SignalResult<T> = std::result::Result<T, SignalProtocolError>;

#[async_trait::async_trait]
impl SessionStore for Sessions {
    async fn load_session(&self, address: &ProtocolAddress) -> SignalResult<Option<SessionRecord>> {
        Ok(self.0.get(address.as_str()).cloned())
    }

    async fn has_session(&self, address: &ProtocolAddress) -> SignalResult<bool> {
        Ok(self.0.contains_key(address.as_str()))
    }

    async fn store_session(
        &mut self,
        address: &ProtocolAddress,
        record: SessionRecord,
    ) -> SignalResult<()> {
        self.0.insert(address.as_str().to_string(), record);
        Ok(())
    }
}

#[async_trait::async_trait]
impl IdentityKeyStore for Identities {
    async fn get_identity_key_pair(&self) -> SignalResult<IdentityKeyPair> {
        Ok(self.identity.clone())
    }

    async fn get_local_registration_id(&self) -> SignalResult<u32> {
        Ok(self.registration_id)
    }

    async fn save_identity(
        &mut self,
        address: &ProtocolAddress,
        identity: &IdentityKey,
    ) -> SignalResult<IdentityChange> {
        let previous = self.seen.insert(address.as_str().to_string(), *identity);
        Ok(match previous {
            Some(p) if p != *identity => IdentityChange::ReplacedExisting,
            _ => IdentityChange::NewOrUnchanged,
        })
    }

    async fn is_trusted_identity(
        &self,
        _address: &ProtocolAddress,
        _identity: &IdentityKey,
        _direction: Direction,
    ) -> SignalResult<bool> {
        Ok(true)
    }

    async fn get_identity(&self, address: &ProtocolAddress) -> SignalResult<Option<IdentityKey>> {
        Ok(self.seen.get(address.as_str()).copied())
    }
}

fn crypto(e: impl std::fmt::Display) -> Error {
    Error::Crypto(e.to_string())
}

fn prekey_bundle(device: u16, keys: &KeyBundle) -> Result<PreKeyBundle> {
    let identity =
        IdentityKey::new(PublicKey::from_djb_public_key_bytes(&keys.identity).map_err(crypto)?);
    let one_time = match keys.one_time.first_key_value() {
        Some((id, key)) => Some((
            (*id).into(),
            PublicKey::from_djb_public_key_bytes(key).map_err(crypto)?,
        )),
        None => None,
    };
    PreKeyBundle::new(
        keys.registration_id,
        u32::from(device).into(),
        one_time,
        keys.signed.id.into(),
        PublicKey::from_djb_public_key_bytes(&keys.signed.public_bytes).map_err(crypto)?,
        keys.signed.signature.to_vec(),
        identity,
    )
    .map_err(crypto)
}

/// The `AppStateSyncKeyShare` protocol message.
pub fn share_message(phone: &Phone<'_>) -> wa::Message {
    let key = wa::message::AppStateSyncKey {
        key_id: MessageField::some(wa::message::AppStateSyncKeyId {
            key_id: Some(phone.app_state_key.id.clone()),
        }),
        key_data: MessageField::some(wa::message::AppStateSyncKeyData {
            key_data: Some(phone.app_state_key.data.to_vec()),
            fingerprint: MessageField::some(wa::message::AppStateSyncKeyFingerprint {
                raw_id: Some(phone.raw_id),
                current_index: Some(0),
                device_indexes: vec![0],
            }),
            timestamp: i64::try_from(phone.app_state_key.created * 1000).ok(),
        }),
    };
    wa::Message {
        protocol_message: MessageField::some(wa::message::ProtocolMessage {
            r#type: Some(wa::message::protocol_message::Type::AppStateSyncKeyShare),
            app_state_sync_key_share: MessageField::some(wa::message::AppStateSyncKeyShare {
                keys: vec![key],
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The `<message category="peer">` from the phone carrying the key share, encrypted for
/// companion `device` whose bundle is `keys`. The pre-key `keys` names first is used
/// (the caller removes it from the server's bundle).
pub async fn stanza(phone: &Phone<'_>, device: u16, keys: &KeyBundle) -> Result<Node> {
    peer_stanza(phone, device, keys, &share_message(phone)).await
}

/// Any protocol message from the phone to its companion `device`, as a Signal pre-key
/// message of a fresh session (`category="peer"`).
pub async fn peer_stanza(
    phone: &Phone<'_>,
    device: u16,
    keys: &KeyBundle,
    message: &wa::Message,
) -> Result<Node> {
    let mut identities = Identities {
        identity: IdentityKeyPair::new(
            IdentityKey::new(phone.key.public_key),
            phone.key.private_key.clone(),
        ),
        registration_id: phone.registration_id,
        seen: HashMap::new(),
    };
    let mut sessions = Sessions::default();
    let target = Jid::pn_device(phone.phone, device);
    let address = ProtocolAddress::new(&target.to_string(), u32::from(device).into());
    let bundle = prekey_bundle(device, keys)?;
    let mut rng = rand::make_rng::<rand::rngs::StdRng>();
    process_prekey_bundle(
        &address,
        &mut sessions,
        &mut identities,
        &bundle,
        &mut rng,
        UsePQRatchet::No,
    )
    .await
    .map_err(crypto)?;
    let plaintext = MessageUtils::encode_and_pad(message);
    let encrypted = message_encrypt(&plaintext, &address, &mut sessions, &mut identities)
        .await
        .map_err(crypto)?;
    let (enc_type, _, bytes) = extract_ciphertext(encrypted)
        .ok_or_else(|| Error::Crypto("unexpected ciphertext".into()))?;
    let id = format!("3EB0{:016X}", rand::random::<u64>());
    Ok(NodeBuilder::new("message")
        .attr("from", Jid::pn(phone.phone))
        .attr("id", id)
        .attr("type", "text")
        .attr("category", "peer")
        .attr("t", unix_now().to_string())
        .children([NodeBuilder::new("enc")
            .attr("v", "2")
            .attr("type", enc_type)
            .bytes(bytes.into_vec())
            .build()])
        .build())
}
