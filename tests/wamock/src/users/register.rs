//! Registering a simulated user's phone directly, without QR: the store its
//! whatsapp-rust client starts from (as after a registration, with the account's
//! identity key) and the record wamock keeps of that device 0.

use std::sync::Arc;

use wacore::iq::prekeys::SignedPreKeyNode;
use wacore::libsignal::protocol::KeyPair;
use wacore::store::Device as ClientDevice;
use wacore_binary::Jid;
use waproto::buffa::Message;
use waproto::whatsapp as wa;

use crate::accounts::Device;
use crate::error::{Error, Result};
use crate::nodes::unix_now;
use crate::prekeys::KeyBundle;

const ADV_PREFIX_ACCOUNT_SIGNATURE: [u8; 2] = [6, 0];
const ADV_PREFIX_DEVICE_SIGNATURE: [u8; 2] = [6, 1];

/// What the phone's account looks like on the server.
pub struct AccountKeys<'a> {
    pub phone: &'a str,
    pub lid: &'a str,
    pub key: &'a KeyPair,
    pub raw_id: u32,
    pub registration_id: u32,
}

fn sign(key: &KeyPair, message: &[u8]) -> Result<Vec<u8>> {
    key.private_key
        .calculate_signature(message, &mut rand::rng())
        .map(|s| s.to_vec())
        .map_err(|e| Error::Crypto(format!("signature: {e}")))
}

fn pub32(key: &KeyPair) -> Result<[u8; 32]> {
    key.public_key
        .public_key_bytes()
        .try_into()
        .map_err(|_| Error::Crypto("public key is not 32 bytes".into()))
}

/// The phone's own signed device identity (key index 0, account key = identity key).
/// A primary never shows it to others, but whatsapp-rust wants one to send peer
/// pre-key messages (the app-state key share to a new companion).
fn primary_identity(account: &AccountKeys<'_>) -> Result<wa::ADVSignedDeviceIdentity> {
    let details = wa::ADVDeviceIdentity {
        raw_id: Some(account.raw_id),
        timestamp: Some(unix_now()),
        key_index: Some(0),
        ..Default::default()
    }
    .encode_to_vec();
    let identity = pub32(account.key)?;
    let account_signature = sign(
        account.key,
        &[&ADV_PREFIX_ACCOUNT_SIGNATURE[..], &details, &identity].concat(),
    )?;
    let device_signature = sign(
        account.key,
        &[
            &ADV_PREFIX_DEVICE_SIGNATURE[..],
            &details,
            &identity,
            &identity,
        ]
        .concat(),
    )?;
    Ok(wa::ADVSignedDeviceIdentity {
        details: Some(details),
        account_signature_key: Some(identity.to_vec()),
        account_signature: Some(account_signature),
        device_signature: Some(device_signature),
    })
}

/// The client store of a registered phone, and the server's record of that device.
pub fn primary(account: &AccountKeys<'_>, push_name: &str) -> Result<(ClientDevice, Device)> {
    let mut device = ClientDevice::new();
    device.identity_key = account.key.clone();
    device.registration_id = account.registration_id;
    let signature = sign(account.key, &device.signed_pre_key.public_key.serialize())?;
    device.signed_pre_key_signature = signature
        .as_slice()
        .try_into()
        .map_err(|_| Error::Crypto("signature is not 64 bytes".into()))?;
    device.pn = Some(Jid::pn(account.phone));
    device.lid = Some(Jid::lid(account.lid));
    device.push_name = push_name.to_string();
    device.account = Some(Arc::new(primary_identity(account)?));

    let identity = pub32(account.key)?;
    let record = Device {
        id: 0,
        key_index: 0,
        noise_pub: pub32(&device.noise_key)?,
        identity_pub: identity,
        signed_identity: None,
        keys: KeyBundle {
            registration_id: device.registration_id,
            identity,
            signed: SignedPreKeyNode::new(
                device.signed_pre_key_id,
                device.signed_pre_key.public_key.public_key_bytes().to_vec(),
                signature,
            ),
            one_time: Default::default(),
        },
        paired_at: unix_now(),
    };
    Ok((device, record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_phone_identity_verifies_with_the_clients_own_check() {
        let key = KeyPair::generate(&mut rand::rng());
        let account = AccountKeys {
            phone: "5511999990009",
            lid: "123456789012345",
            key: &key,
            raw_id: 7,
            registration_id: 42,
        };
        let (device, record) = primary(&account, "Nine").expect("primary");
        let identity = device.account.as_deref().expect("identity");
        let bytes = identity.encode_to_vec();
        let pub_key = pub32(&key).expect("pub");
        assert!(matches!(
            wacore::adv::validate_adv_with_identity_key(&bytes, &pub_key, None),
            wacore::adv::AdvValidation::Valid
        ));
        assert_eq!(record.identity_pub, pub_key);
        assert_eq!(
            device.pn.as_ref().map(ToString::to_string).as_deref(),
            Some("5511999990009@s.whatsapp.net")
        );
    }
}
