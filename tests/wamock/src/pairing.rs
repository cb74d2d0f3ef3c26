//! Pairing by QR, with wamock playing the phone: the client shows `pair-device` refs,
//! the admin API hands over the scanned QR text, and we answer with a `pair-success`
//! carrying a device identity signed by the account key.

use std::time::Duration;

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use rand::RngExt;
use sha2::Sha256;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use wacore::adv::{AdvValidation, validate_adv_with_identity_key};
use wacore::companion_reg::NATIVE_CAMERA_DEEP_LINK_PREFIX;
use wacore::libsignal::protocol::KeyPair;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Jid, Node};
use waproto::buffa::Message;
use waproto::whatsapp as wa;

use crate::keyshare;
use crate::nodes::{attr, bytes, child, server_iq, stream_error, unix_now};
use crate::prekeys::KeyBundle;
use crate::state::{ConnId, Device, DeviceAddr, Outbound, PairingCandidate, State};

/// How many QR refs a pairing connection gets (the client shows one after another).
pub const REF_COUNT: usize = 6;
/// How long `scan-qr` waits for the client's `pair-device-sign`.
const SIGN_TIMEOUT: Duration = Duration::from_secs(15);
const ADV_PREFIX_ACCOUNT_SIGNATURE: [u8; 2] = [6, 0];

#[derive(Debug, Error)]
pub enum PairingError {
    #[error("{0}")]
    BadRequest(String),
    #[error("no connected client shows this QR code (expired, already used, or disconnected)")]
    UnknownRef,
    #[error("no connected client waits for a pairing code for this phone number")]
    UnknownCode,
    #[error("the client disconnected before pairing completed")]
    Gone,
    #[error("the client did not answer pair-success within {0:?}")]
    Timeout(Duration),
    #[error("the client refused pairing: {0}")]
    Refused(String),
    #[error("internal: {0}")]
    Internal(String),
}

/// What a phone reads from the QR code.
#[derive(Debug, Clone)]
pub struct ScannedQr {
    pub pairing_ref: String,
    pub noise_pub: [u8; 32],
    pub identity_pub: [u8; 32],
    pub adv_secret: [u8; 32],
}

/// Parses `ref,noise,identity,adv[,client type]` (optionally behind the wa.me deep link).
pub fn parse_qr(text: &str) -> Result<ScannedQr, PairingError> {
    let bad = |m: &str| PairingError::BadRequest(format!("invalid QR code: {m}"));
    let body = text.trim();
    let body = body
        .strip_prefix(NATIVE_CAMERA_DEEP_LINK_PREFIX)
        .unwrap_or(body);
    let fields: Vec<&str> = body.split(',').collect();
    if fields.len() < 4 || fields.iter().take(4).any(|f| f.is_empty()) {
        return Err(bad("expected ref,noise key,identity key,adv secret"));
    }
    let key = |i: usize, what: &str| -> Result<[u8; 32], PairingError> {
        BASE64_STANDARD
            .decode(fields[i])
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            .ok_or_else(|| bad(&format!("{what} is not 32 bytes of base64")))
    };
    Ok(ScannedQr {
        pairing_ref: fields[0].to_string(),
        noise_pub: key(1, "noise key")?,
        identity_pub: key(2, "identity key")?,
        adv_secret: key(3, "adv secret")?,
    })
}

/// Fresh refs for one pairing connection.
pub fn new_refs() -> Vec<String> {
    let mut rng = rand::rng();
    (0..REF_COUNT)
        .map(|_| {
            let mut raw = [0u8; 24];
            rng.fill(&mut raw);
            format!("2@{}", BASE64_STANDARD.encode(raw))
        })
        .collect()
}

/// `<iq xmlns="md" type="set"><pair-device><ref/>...</pair-device></iq>`.
pub fn pair_device_iq(id: &str, refs: &[String]) -> Node {
    let refs = refs
        .iter()
        .map(|r| NodeBuilder::new("ref").bytes(r.as_bytes().to_vec()).build());
    server_iq(
        id,
        "md",
        "set",
        vec![NodeBuilder::new("pair-device").children(refs).build()],
    )
}

/// `ADVSignedDeviceIdentityHMAC` as the phone builds it.
pub fn device_identity_container(
    account: &KeyPair,
    raw_id: u32,
    key_index: u32,
    device_identity_pub: &[u8; 32],
    adv_secret: &[u8; 32],
) -> Result<Vec<u8>, PairingError> {
    let details = wa::ADVDeviceIdentity {
        raw_id: Some(raw_id),
        timestamp: Some(unix_now()),
        key_index: Some(key_index),
        ..Default::default()
    }
    .encode_to_vec();
    let message = [
        &ADV_PREFIX_ACCOUNT_SIGNATURE[..],
        &details,
        device_identity_pub,
    ]
    .concat();
    let signature = account
        .private_key
        .calculate_signature(&message, &mut rand::rng())
        .map_err(|e| PairingError::Internal(format!("account signature: {e}")))?;
    let signed = wa::ADVSignedDeviceIdentity {
        details: Some(details),
        account_signature_key: Some(account.public_key.public_key_bytes().to_vec()),
        account_signature: Some(signature.to_vec()),
        ..Default::default()
    }
    .encode_to_vec();
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(adv_secret)
        .map_err(|e| PairingError::Internal(format!("hmac key: {e}")))?;
    mac.update(&signed);
    let hmac = mac.finalize().into_bytes().to_vec();
    Ok(wa::ADVSignedDeviceIdentityHMAC {
        details: Some(signed),
        hmac: Some(hmac),
        ..Default::default()
    }
    .encode_to_vec())
}

fn jid(s: &str) -> Result<Jid, PairingError> {
    s.parse()
        .map_err(|e| PairingError::Internal(format!("jid {s}: {e}")))
}

/// `<iq xmlns="md" type="set"><pair-success>...</pair-success></iq>`.
pub fn pair_success_iq(id: &str, container: Vec<u8>, device_jid: Jid, lid_jid: Jid) -> Node {
    server_iq(
        id,
        "md",
        "set",
        vec![
            NodeBuilder::new("pair-success")
                .children([
                    NodeBuilder::new("device-identity").bytes(container).build(),
                    NodeBuilder::new("platform").attr("name", "android").build(),
                    NodeBuilder::new("device")
                        .attr("jid", device_jid)
                        .attr("lid", lid_jid)
                        .build(),
                ])
                .build(),
        ],
    )
}

/// Reads the client's answer to pair-success: its counter-signed device identity.
pub fn verify_device_sign(
    reply: &Node,
    identity_pub: &[u8; 32],
    key_index: u32,
) -> Result<Vec<u8>, PairingError> {
    if attr(reply, "type").as_deref() == Some("error") {
        let detail = child(reply, "error")
            .map(|e| {
                format!(
                    "{} {}",
                    attr(e, "code").unwrap_or_default(),
                    attr(e, "text").unwrap_or_default()
                )
            })
            .unwrap_or_else(|| "error without details".into());
        return Err(PairingError::Refused(detail));
    }
    let identity = child(reply, "pair-device-sign")
        .and_then(|s| child(s, "device-identity"))
        .ok_or_else(|| {
            PairingError::Refused("answer has no pair-device-sign/device-identity".into())
        })?;
    let signed_key_index = attr(identity, "key-index").and_then(|k| k.parse::<u32>().ok());
    if signed_key_index != Some(key_index) {
        return Err(PairingError::Refused(format!(
            "key-index {signed_key_index:?} is not {key_index}"
        )));
    }
    let signed =
        bytes(identity).ok_or_else(|| PairingError::Refused("empty device-identity".into()))?;
    match validate_adv_with_identity_key(signed, identity_pub, None) {
        AdvValidation::Valid => Ok(signed.to_vec()),
        other => Err(PairingError::Refused(format!(
            "device identity does not verify: {other:?}"
        ))),
    }
}

pub fn valid_phone(phone: &str) -> bool {
    (5..=20).contains(&phone.len())
        && phone.bytes().all(|b| b.is_ascii_digit())
        && !phone.starts_with('0')
}

/// The phone scans `qr`: pair the client showing it as a new device of `phone`.
/// Returns the device JID once the client has counter-signed its identity.
pub async fn scan_qr(
    state: &State,
    qr: &str,
    phone: &str,
    push_name: Option<String>,
) -> Result<String, PairingError> {
    if !valid_phone(phone) {
        return Err(PairingError::BadRequest(
            "phone must be 5-20 digits without a leading 0".into(),
        ));
    }
    let scanned = parse_qr(qr)?;
    let (conn, tx, candidate) = state
        .pairing_target(&scanned.pairing_ref)
        .ok_or(PairingError::UnknownRef)?;
    if candidate.noise_pub != scanned.noise_pub || candidate.keys.identity != scanned.identity_pub {
        return Err(PairingError::BadRequest(
            "the QR keys are not those of the client showing this ref".into(),
        ));
    }
    link(
        state,
        Linking {
            conn,
            tx,
            candidate,
            adv_secret: scanned.adv_secret,
        },
        phone,
        push_name,
    )
    .await
}

/// A client about to be linked: its connection, its keys, and the secret the phone
/// and it share (from the QR, or derived in the pairing-code exchange).
pub struct Linking {
    pub conn: ConnId,
    pub tx: mpsc::UnboundedSender<Outbound>,
    pub candidate: PairingCandidate,
    pub adv_secret: [u8; 32],
}

/// The phone links the client as a new device of `phone`: `pair-success`, the client's
/// counter-signature, the device record, the app-state key share, then 515.
pub async fn link(
    state: &State,
    linking: Linking,
    phone: &str,
    push_name: Option<String>,
) -> Result<String, PairingError> {
    let Linking {
        conn,
        tx,
        candidate,
        adv_secret,
    } = linking;
    let identity_pub = candidate.keys.identity;
    let (account_key, raw_id, lid, device_id) = state.reserve_device(phone, push_name);
    let key_index = u32::from(device_id);
    let addr = DeviceAddr::new(phone, device_id);
    let container =
        device_identity_container(&account_key, raw_id, key_index, &identity_pub, &adv_secret)?;
    let iq_id = format!("pair-{device_id}-{}", rand::rng().random::<u32>());
    let iq = pair_success_iq(
        &iq_id,
        container,
        jid(&addr.jid())?,
        jid(&format!("{lid}:{device_id}@lid"))?,
    );
    let (reply_tx, reply_rx) = oneshot::channel();
    tx.send(Outbound::Iq(iq, reply_tx))
        .map_err(|_| PairingError::Gone)?;
    let reply = tokio::time::timeout(SIGN_TIMEOUT, reply_rx)
        .await
        .map_err(|_| PairingError::Timeout(SIGN_TIMEOUT))?
        .map_err(|_| PairingError::Gone)?;
    let signed_identity = verify_device_sign(&reply, &identity_pub, key_index)?;
    let keys = candidate.keys;
    state.complete_pairing(
        conn,
        phone,
        Device {
            id: device_id,
            key_index,
            noise_pub: candidate.noise_pub,
            identity_pub,
            signed_identity: Some(signed_identity),
            keys: keys.clone(),
            paired_at: unix_now(),
        },
    );
    share_app_state_key(state, &addr, &keys).await;
    tracing::info!(jid = %addr.jid(), "paired; closing the pairing stream with 515");
    let _ = tx.send(Outbound::Close(Some(stream_error("515"))));
    Ok(addr.jid())
}

/// The phone's app-state key share for the new device: queued, so the device gets it
/// right after its post-pairing login.
async fn share_app_state_key(state: &State, addr: &DeviceAddr, keys: &KeyBundle) {
    let Some((key, registration_id, raw_id, app_state_key)) =
        state.with_account(&addr.phone, false, |a| {
            (
                a.key.clone(),
                a.registration_id,
                a.raw_id,
                a.app_state_key.clone(),
            )
        })
    else {
        return;
    };
    let phone = keyshare::Phone {
        phone: &addr.phone,
        key: &key,
        registration_id,
        raw_id,
        app_state_key: &app_state_key,
    };
    match keyshare::stanza(&phone, addr.device, keys).await {
        Ok(node) => {
            state.deliver(addr, node);
        }
        Err(e) => tracing::warn!(jid = %addr.jid(), error = %e, "app-state key share not built"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wacore::pair::{DeviceState, PairUtils};

    fn companion() -> DeviceState {
        let mut adv = [0u8; 32];
        rand::rng().fill(&mut adv);
        DeviceState {
            identity_key: KeyPair::generate(&mut rand::rng()),
            noise_key: KeyPair::generate(&mut rand::rng()),
            adv_secret_key: adv,
        }
    }

    fn pub32(kp: &KeyPair) -> [u8; 32] {
        kp.public_key
            .public_key_bytes()
            .try_into()
            .expect("32 bytes")
    }

    #[test]
    fn qr_text_from_the_client_parses() {
        let device = companion();
        let qr = PairUtils::make_qr_data(
            &device,
            "2@ref",
            wacore::companion_reg::CompanionWebClientType::Chrome,
        );
        let scanned = parse_qr(&qr).expect("parse");
        assert_eq!(scanned.pairing_ref, "2@ref");
        assert_eq!(scanned.noise_pub, pub32(&device.noise_key));
        assert_eq!(scanned.identity_pub, pub32(&device.identity_key));
        assert_eq!(scanned.adv_secret, device.adv_secret_key);
        let linked = parse_qr(&format!("{NATIVE_CAMERA_DEEP_LINK_PREFIX}{qr}")).expect("deep link");
        assert_eq!(linked.pairing_ref, "2@ref");
        assert!(parse_qr("a,b,c").is_err());
        assert!(parse_qr("ref,!!,!!,!!").is_err());
    }

    #[test]
    fn the_client_accepts_our_device_identity_and_we_accept_its_signature() {
        let device = companion();
        let account = KeyPair::generate(&mut rand::rng());
        let identity = pub32(&device.identity_key);
        let container =
            device_identity_container(&account, 77, 3, &identity, &device.adv_secret_key)
                .expect("container");
        let (signed, key_index) =
            PairUtils::do_pair_crypto(&device, &container).expect("client verifies");
        assert_eq!(key_index, 3);
        let reply = PairUtils::build_pair_success_response("id", signed.clone(), key_index);
        assert_eq!(
            verify_device_sign(&reply, &identity, 3).expect("verified"),
            signed
        );
        assert!(verify_device_sign(&reply, &identity, 4).is_err());
        let other = pub32(&KeyPair::generate(&mut rand::rng()));
        assert!(verify_device_sign(&reply, &other, 3).is_err());
    }

    #[test]
    fn a_wrong_adv_secret_fails_the_clients_hmac_check() {
        let device = companion();
        let account = KeyPair::generate(&mut rand::rng());
        let container =
            device_identity_container(&account, 1, 1, &pub32(&device.identity_key), &[9u8; 32])
                .expect("container");
        let err = PairUtils::do_pair_crypto(&device, &container).expect_err("must fail");
        assert_eq!(err.text, "hmac-mismatch");
    }

    #[test]
    fn a_client_error_answer_is_a_refusal() {
        let reply = PairUtils::build_pair_error_node("id", 401, "signature-mismatch");
        let err = verify_device_sign(&reply, &[0u8; 32], 1).expect_err("refused");
        assert!(err.to_string().contains("signature-mismatch"), "{err}");
    }
}
