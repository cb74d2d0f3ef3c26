//! Pairing by phone code, with wamock playing the phone. The client sends
//! `companion_hello` (its ephemeral key wrapped with the code it shows); the person
//! types the code on the phone (`POST /admin/pair-code`); the phone answers with a
//! `primary_hello` notification (its own ephemeral key wrapped with the code, and its
//! identity key); the client sends `companion_finish` (a key bundle sealed with the
//! ephemeral DH); both derive the same ADV secret, and linking goes on as after a QR
//! scan, with that secret.

use std::time::Duration;

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use rand::RngExt;
use wacore::libsignal::crypto::aes_256_gcm_decrypt;
use wacore::libsignal::protocol::{KeyPair, PublicKey};
use wacore::pair_code::PairCodeUtils;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Jid, Node, SERVER_JID};

use crate::iq::{Answer, IqContext, Refusal};
use crate::nodes::{attr, bytes, child};
use crate::pairing::{self, Linking, PairingError};
use crate::state::{CodeRequest, Outbound, State};

/// How long the phone waits for the client's `companion_finish`.
const FINISH_TIMEOUT: Duration = Duration::from_secs(15);
const BUNDLE_INFO: &[u8] = b"link_code_pairing_key_bundle_encryption_key";

fn bytes_child<'a>(node: &'a Node, tag: &str) -> Option<&'a [u8]> {
    child(node, tag).and_then(bytes)
}

/// `<iq xmlns="md"><link_code_companion_reg stage=...>` from a client.
pub fn companion_iq(ctx: &IqContext<'_>, iq: &Node) -> Answer {
    let reg =
        child(iq, "link_code_companion_reg").ok_or_else(|| Refusal::new(400, "bad-request"))?;
    let conn = ctx
        .conn
        .ok_or_else(|| Refusal::new(500, "internal-server-error"))?;
    if ctx.device.is_some() {
        return Err(Refusal::new(400, "bad-request"));
    }
    match attr(reg, "stage").as_deref() {
        Some("companion_hello") => {
            let phone = attr(reg, "jid")
                .and_then(|j| j.parse::<Jid>().ok())
                .map(|j| j.user.to_string())
                .filter(|p| pairing::valid_phone(p))
                .ok_or_else(|| Refusal::new(400, "bad-request"))?;
            let wrapped = bytes_child(reg, "link_code_pairing_wrapped_companion_ephemeral_pub")
                .filter(|w| w.len() == 80)
                .ok_or_else(|| Refusal::new(400, "bad-request"))?;
            let mut raw = [0u8; 16];
            rand::rng().fill(&mut raw);
            let pairing_ref = BASE64_STANDARD.encode(raw);
            let request = CodeRequest {
                phone: phone.clone(),
                wrapped_ephemeral: wrapped.to_vec(),
                pairing_ref: pairing_ref.clone(),
            };
            if !ctx.state.offer_code(conn, request) {
                return Err(Refusal::new(400, "bad-request"));
            }
            tracing::info!(%phone, "client asked to pair by code");
            Ok(vec![
                NodeBuilder::new("link_code_companion_reg")
                    .children([NodeBuilder::new("link_code_pairing_ref")
                        .bytes(pairing_ref.into_bytes())
                        .build()])
                    .build(),
            ])
        }
        Some("companion_finish") => {
            if ctx.state.code_finished(conn, reg.clone()) {
                Ok(Vec::new())
            } else {
                Err(Refusal::new(400, "bad-request"))
            }
        }
        _ => Err(Refusal::new(400, "bad-request")),
    }
}

/// `XXXX-XXXX` (or without the dash, any case) as the client generated it.
pub fn normalize_code(code: &str) -> Result<String, PairingError> {
    let code: String = code
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if PairCodeUtils::validate_code(&code) {
        Ok(code)
    } else {
        Err(PairingError::BadRequest(
            "code must be 8 characters of 1-9 and A-Z without I, O and U (XXXX-XXXX)".into(),
        ))
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, PairingError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PairingError::Internal(format!("blocking task: {e}")))
}

fn internal(e: impl std::fmt::Display) -> PairingError {
    PairingError::Internal(e.to_string())
}

fn pub_bytes(kp: &KeyPair) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(kp.public_key.public_key_bytes());
    out
}

/// The `primary_hello` notification.
fn primary_hello(wrapped: &[u8], identity: &[u8; 32], pairing_ref: &str) -> Node {
    let id = format!("{}", rand::rng().random::<u32>());
    NodeBuilder::new("notification")
        .attr("from", SERVER_JID)
        .attr("id", id)
        .attr("type", "link_code_companion_reg")
        .attr("t", crate::nodes::unix_now().to_string())
        .children([NodeBuilder::new("link_code_companion_reg")
            .attr("stage", "primary_hello")
            .children([
                NodeBuilder::new("link_code_pairing_wrapped_primary_ephemeral_pub")
                    .bytes(wrapped.to_vec())
                    .build(),
                NodeBuilder::new("primary_identity_pub")
                    .bytes(identity.to_vec())
                    .build(),
                NodeBuilder::new("link_code_pairing_ref")
                    .bytes(pairing_ref.as_bytes().to_vec())
                    .build(),
            ])
            .build()])
        .build()
}

/// Opens the client's key bundle and derives the ADV secret, as the phone does.
/// Returns (companion identity key, ADV secret).
pub fn open_key_bundle(
    wrapped: &[u8],
    primary_ephemeral: &KeyPair,
    companion_ephemeral: &[u8; 32],
    account: &KeyPair,
) -> Result<([u8; 32], [u8; 32]), PairingError> {
    let refused = |m: &str| PairingError::Refused(m.to_string());
    if wrapped.len() != 32 + 12 + 96 + 16 {
        return Err(refused("the key bundle has the wrong size"));
    }
    let (salt, rest) = wrapped.split_at(32);
    let (nonce, sealed) = rest.split_at(12);
    let companion_pub =
        PublicKey::from_djb_public_key_bytes(companion_ephemeral).map_err(internal)?;
    let ephemeral_shared = primary_ephemeral
        .private_key
        .calculate_agreement(&companion_pub)
        .map_err(internal)?;
    let mut key = [0u8; 32];
    wacore::crypto::hkdf_sha256_into(&ephemeral_shared, Some(salt), BUNDLE_INFO, &mut key)
        .map_err(internal)?;
    let nonce: [u8; 12] = nonce.try_into().map_err(internal)?;
    let mut bundle = Vec::with_capacity(96);
    aes_256_gcm_decrypt(&key, &nonce, b"", sealed, &mut bundle)
        .map_err(|_| refused("the key bundle does not open: was the code typed right?"))?;
    let companion_identity: [u8; 32] = bundle[..32].try_into().map_err(internal)?;
    if bundle[32..64] != *account.public_key.public_key_bytes() {
        return Err(refused("the key bundle names another phone"));
    }
    let companion_identity_pub =
        PublicKey::from_djb_public_key_bytes(&companion_identity).map_err(internal)?;
    let identity_shared = account
        .private_key
        .calculate_agreement(&companion_identity_pub)
        .map_err(internal)?;
    let mut secret_input = Vec::with_capacity(96);
    secret_input.extend_from_slice(&ephemeral_shared);
    secret_input.extend_from_slice(&identity_shared);
    secret_input.extend_from_slice(&bundle[64..96]);
    let mut adv_secret = [0u8; 32];
    wacore::crypto::hkdf_sha256_into(&secret_input, None, b"adv_secret", &mut adv_secret)
        .map_err(internal)?;
    Ok((companion_identity, adv_secret))
}

/// The person types `code` on the phone `phone`: link the client that asked for it.
pub async fn enter_code(
    state: &State,
    phone: &str,
    code: &str,
    push_name: Option<String>,
) -> Result<String, PairingError> {
    if !pairing::valid_phone(phone) {
        return Err(PairingError::BadRequest(
            "phone must be 5-20 digits without a leading 0".into(),
        ));
    }
    let code = normalize_code(code)?;
    let (conn, tx, candidate) = state.code_target(phone).ok_or(PairingError::UnknownCode)?;
    let request = candidate.code.clone().ok_or(PairingError::UnknownCode)?;

    // PBKDF2 with 131 072 rounds, twice: off the async threads.
    let wrapped = request.wrapped_ephemeral.clone();
    let code_for_open = code.clone();
    let companion_ephemeral =
        blocking(move || PairCodeUtils::decrypt_primary_ephemeral_pub(&wrapped, &code_for_open))
            .await?
            .map_err(internal)?;
    let primary_ephemeral = KeyPair::generate(&mut rand::rng());
    let primary_pub = pub_bytes(&primary_ephemeral);
    let code_for_seal = code.clone();
    let wrapped_primary =
        blocking(move || PairCodeUtils::encrypt_ephemeral_pub(&primary_pub, &code_for_seal))
            .await?;

    let (account_key, _, _, _) = state.ensure_account(phone, push_name.clone());
    let finish = state.await_code_finish(conn);
    tx.send(Outbound::Node(primary_hello(
        &wrapped_primary,
        &pub_bytes(&account_key),
        &request.pairing_ref,
    )))
    .map_err(|_| PairingError::Gone)?;
    let finish = tokio::time::timeout(FINISH_TIMEOUT, finish)
        .await
        .map_err(|_| PairingError::Timeout(FINISH_TIMEOUT))?
        .map_err(|_| PairingError::Gone)?;

    let finish_ref = bytes_child(&finish, "link_code_pairing_ref").unwrap_or_default();
    if finish_ref != request.pairing_ref.as_bytes() {
        return Err(PairingError::Refused(
            "companion_finish names another pairing ref".into(),
        ));
    }
    let bundle = bytes_child(&finish, "link_code_pairing_wrapped_key_bundle")
        .ok_or_else(|| PairingError::Refused("companion_finish has no key bundle".into()))?;
    let (identity, adv_secret) = open_key_bundle(
        bundle,
        &primary_ephemeral,
        &companion_ephemeral,
        &account_key,
    )?;
    let declared = bytes_child(&finish, "companion_identity_public").unwrap_or_default();
    if identity != candidate.keys.identity || declared != identity {
        return Err(PairingError::Refused(
            "the key bundle's identity is not the client's".into(),
        ));
    }
    pairing::link(
        state,
        Linking {
            conn,
            tx,
            candidate,
            adv_secret,
        },
        phone,
        push_name,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_normalized() {
        assert_eq!(normalize_code("abcd-efgh").expect("ok"), "ABCDEFGH");
        assert_eq!(normalize_code("ABCDEFGH").expect("ok"), "ABCDEFGH");
        assert!(normalize_code("ABCD-EFG").is_err());
        assert!(
            normalize_code("ABCD-EFGO").is_err(),
            "O is not in the alphabet"
        );
    }

    #[test]
    fn we_open_the_bundle_the_client_seals() {
        let account = KeyPair::generate(&mut rand::rng());
        let companion_identity = KeyPair::generate(&mut rand::rng());
        let companion_ephemeral = KeyPair::generate(&mut rand::rng());
        let primary_ephemeral = KeyPair::generate(&mut rand::rng());
        let (wrapped, client_secret) = PairCodeUtils::prepare_key_bundle(
            &companion_ephemeral,
            &pub_bytes(&primary_ephemeral),
            &pub_bytes(&account),
            &companion_identity,
        )
        .expect("client bundle");
        let (identity, secret) = open_key_bundle(
            &wrapped,
            &primary_ephemeral,
            &pub_bytes(&companion_ephemeral),
            &account,
        )
        .expect("opens");
        assert_eq!(identity, pub_bytes(&companion_identity));
        assert_eq!(
            secret, client_secret,
            "both sides derive the same ADV secret"
        );
        let stranger = KeyPair::generate(&mut rand::rng());
        assert!(
            open_key_bundle(
                &wrapped,
                &stranger,
                &pub_bytes(&companion_ephemeral),
                &account
            )
            .is_err()
        );
    }
}
