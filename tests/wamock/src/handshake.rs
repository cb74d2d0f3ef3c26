//! The responder side of WhatsApp's Noise handshake: XX on first contact, IK when a
//! client resumes with the server key it cached, XXfallback when that cached key is
//! not ours (wamock restarted with a new key, for instance).

use wacore::libsignal::protocol::KeyPair;
use wacore_binary::consts::{
    NOISE_PATTERN_IK, NOISE_PATTERN_XX, NOISE_PATTERN_XXFALLBACK, WA_CONN_HEADER,
};
use wacore_noise::{NoiseCipher, NoiseHandshake};
use waproto::buffa::{Message, MessageField};
use waproto::whatsapp::{self as wa, HandshakeMessage};

use crate::error::{Error, Result};

/// wamock's long-lived Noise identity and the certificate chain it presents.
pub struct ServerIdentity {
    static_kp: KeyPair,
    static_pub: [u8; 32],
    cert_chain: Vec<u8>,
}

impl ServerIdentity {
    pub fn generate() -> Self {
        let static_kp = KeyPair::generate(&mut rand::rng());
        let mut static_pub = [0u8; 32];
        static_pub.copy_from_slice(static_kp.public_key.public_key_bytes());
        let cert_chain = wacore_noise::test_util::build_cert_chain_bytes(&static_pub);
        Self {
            static_kp,
            static_pub,
            cert_chain,
        }
    }

    pub fn static_public(&self) -> [u8; 32] {
        self.static_pub
    }

    fn private_bytes(&self) -> &[u8] {
        self.static_kp.private_key.serialize()
    }
}

/// Which pattern a finished handshake ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    Xx,
    Ik,
    XxFallback,
}

/// A finished handshake: the transport ciphers and what the client told us.
pub struct Established {
    /// Decrypts what the client sends.
    pub read: NoiseCipher,
    /// Encrypts what we send.
    pub write: NoiseCipher,
    /// The client's static Noise key (its `noise_key`, also in its QR code).
    pub client_static: [u8; 32],
    /// The `ClientPayload` protobuf.
    pub payload: Vec<u8>,
    pub pattern: Pattern,
}

/// What to do after reading the ClientHello.
pub enum HelloOutcome {
    /// IK accepted: send `server_hello`; the session is established.
    Established {
        server_hello: Vec<u8>,
        session: Established,
    },
    /// XX or XXfallback: send `server_hello`, then feed the ClientFinish to `pending`.
    AwaitFinish {
        server_hello: Vec<u8>,
        pending: Box<PendingFinish>,
    },
}

/// Responder state between ServerHello and ClientFinish.
pub struct PendingFinish {
    noise: NoiseHandshake,
    ephemeral: KeyPair,
    pattern: Pattern,
}

fn key32(bytes: &[u8], what: &'static str) -> Result<[u8; 32]> {
    bytes
        .try_into()
        .map_err(|_| Error::protocol(format!("{what} is {} bytes, not 32", bytes.len())))
}

fn public32(kp: &KeyPair) -> Result<[u8; 32]> {
    key32(kp.public_key.public_key_bytes(), "public key")
}

fn encode_server_hello(
    ephemeral: [u8; 32],
    static_ct: Option<Vec<u8>>,
    payload_ct: Vec<u8>,
) -> Vec<u8> {
    HandshakeMessage {
        server_hello: MessageField::some(wa::handshake_message::ServerHello {
            ephemeral: Some(ephemeral.to_vec()),
            r#static: static_ct,
            payload: Some(payload_ct),
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

/// Reads the client's first handshake message and answers it.
pub fn respond_to_hello(identity: &ServerIdentity, client_hello: &[u8]) -> Result<HelloOutcome> {
    let msg = HandshakeMessage::decode_from_slice(client_hello)?;
    let hello = msg
        .client_hello
        .into_option()
        .ok_or_else(|| Error::protocol("first handshake message has no client_hello"))?;
    let client_eph = key32(
        hello
            .ephemeral
            .as_deref()
            .ok_or_else(|| Error::protocol("client_hello has no ephemeral key"))?,
        "client ephemeral",
    )?;
    match (hello.r#static.as_deref(), hello.payload.as_deref()) {
        (Some(static_ct), Some(payload_ct)) => {
            match ik_accept(identity, client_eph, static_ct, payload_ct) {
                Ok(outcome) => Ok(outcome),
                Err(e) => {
                    tracing::info!(error = %e, "IK resume refused, answering with XXfallback");
                    xx_server_hello(identity, client_eph, Pattern::XxFallback)
                }
            }
        }
        _ => xx_server_hello(identity, client_eph, Pattern::Xx),
    }
}

/// `-> e` then `<- e, ee, s, es` (+ the certificate chain as payload).
fn xx_server_hello(
    identity: &ServerIdentity,
    client_eph: [u8; 32],
    pattern: Pattern,
) -> Result<HelloOutcome> {
    let name = if pattern == Pattern::Xx {
        NOISE_PATTERN_XX
    } else {
        NOISE_PATTERN_XXFALLBACK
    };
    let mut noise = NoiseHandshake::new(name, &WA_CONN_HEADER)?;
    noise.authenticate(&client_eph);
    let ephemeral = KeyPair::generate(&mut rand::rng());
    let eph_pub = public32(&ephemeral)?;
    noise.authenticate(&eph_pub);
    noise.mix_shared_secret(ephemeral.private_key.serialize(), &client_eph)?;
    let static_ct = noise.encrypt(&identity.static_pub)?;
    noise.mix_shared_secret(identity.private_bytes(), &client_eph)?;
    let cert_ct = noise.encrypt(&identity.cert_chain)?;
    Ok(HelloOutcome::AwaitFinish {
        server_hello: encode_server_hello(eph_pub, Some(static_ct), cert_ct),
        pending: Box::new(PendingFinish {
            noise,
            ephemeral,
            pattern,
        }),
    })
}

impl PendingFinish {
    /// `-> s, se` (+ the ClientPayload).
    pub fn finish(mut self, client_finish: &[u8]) -> Result<Established> {
        let msg = HandshakeMessage::decode_from_slice(client_finish)?;
        let fin = msg
            .client_finish
            .into_option()
            .ok_or_else(|| Error::protocol("second handshake message has no client_finish"))?;
        let static_ct = fin
            .r#static
            .ok_or_else(|| Error::protocol("client_finish has no static key"))?;
        let payload_ct = fin
            .payload
            .ok_or_else(|| Error::protocol("client_finish has no payload"))?;
        let client_static = key32(&self.noise.decrypt(&static_ct)?, "client static")?;
        self.noise
            .mix_shared_secret(self.ephemeral.private_key.serialize(), &client_static)?;
        let payload = self.noise.decrypt(&payload_ct)?;
        let (read, write) = self.noise.finish()?;
        Ok(Established {
            read,
            write,
            client_static,
            payload,
            pattern: self.pattern,
        })
    }
}

/// IK responder that accepts: `<- s` pre-message, `-> e, es, s, ss` (+ payload),
/// `<- e, ee, se` (+ the certificate chain).
fn ik_accept(
    identity: &ServerIdentity,
    client_eph: [u8; 32],
    static_ct: &[u8],
    payload_ct: &[u8],
) -> Result<HelloOutcome> {
    let mut noise = NoiseHandshake::new(NOISE_PATTERN_IK, &WA_CONN_HEADER)?;
    noise.authenticate(&identity.static_pub);
    noise.authenticate(&client_eph);
    noise.mix_shared_secret(identity.private_bytes(), &client_eph)?;
    let client_static = key32(&noise.decrypt(static_ct)?, "client static")?;
    noise.mix_shared_secret(identity.private_bytes(), &client_static)?;
    let payload = noise.decrypt(payload_ct)?;

    let ephemeral = KeyPair::generate(&mut rand::rng());
    let eph_pub = public32(&ephemeral)?;
    noise.authenticate(&eph_pub);
    noise.mix_shared_secret(ephemeral.private_key.serialize(), &client_eph)?;
    noise.mix_shared_secret(ephemeral.private_key.serialize(), &client_static)?;
    let cert_ct = noise.encrypt(&identity.cert_chain)?;
    let (read, write) = noise.finish()?;
    Ok(HelloOutcome::Established {
        server_hello: encode_server_hello(eph_pub, None, cert_ct),
        session: Established {
            read,
            write,
            client_static,
            payload,
            pattern: Pattern::Ik,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wacore_noise::{
        IkHandshakeState, IkServerHelloOutcome, XxFallbackHandshakeState, XxHandshakeState,
    };

    fn roundtrip(client: (&NoiseCipher, &NoiseCipher), server: &Established) {
        let (client_write, client_read) = client;
        let mut up = client_write
            .encrypt_with_counter(0, b"up")
            .expect("encrypt");
        server
            .read
            .decrypt_in_place_with_counter(0, &mut up)
            .expect("server reads");
        assert_eq!(up, b"up");
        let mut down = server
            .write
            .encrypt_with_counter(0, b"down")
            .expect("encrypt");
        client_read
            .decrypt_in_place_with_counter(0, &mut down)
            .expect("client reads");
        assert_eq!(down, b"down");
    }

    fn finish(outcome: HelloOutcome, client_finish: impl FnOnce(&[u8]) -> Vec<u8>) -> Established {
        match outcome {
            HelloOutcome::AwaitFinish {
                server_hello,
                pending,
            } => pending
                .finish(&client_finish(&server_hello))
                .expect("server finish"),
            HelloOutcome::Established { .. } => panic!("expected XX"),
        }
    }

    #[test]
    fn xx_with_the_real_initiator() {
        let server = ServerIdentity::generate();
        let client_static = KeyPair::generate(&mut rand::rng());
        let mut client =
            XxHandshakeState::new(client_static.clone(), b"payload".to_vec(), &WA_CONN_HEADER)
                .expect("client");
        let hello = client.build_client_hello().expect("hello");
        let outcome = respond_to_hello(&server, &hello).expect("respond");
        let est = finish(outcome, |sh| {
            client
                .read_server_hello_and_build_client_finish(sh)
                .expect("client reads hello")
        });
        let done = client.finish().expect("client finish");
        assert_eq!(est.payload, b"payload");
        assert_eq!(est.pattern, Pattern::Xx);
        assert_eq!(
            &est.client_static[..],
            client_static.public_key.public_key_bytes()
        );
        assert_eq!(done.server_cert_chain.leaf_key, server.static_public());
        roundtrip((&done.write_cipher, &done.read_cipher), &est);
    }

    #[test]
    fn ik_with_the_real_initiator() {
        let server = ServerIdentity::generate();
        let client_static = KeyPair::generate(&mut rand::rng());
        let mut client = IkHandshakeState::new(
            client_static,
            server.static_public(),
            b"resume".to_vec(),
            &WA_CONN_HEADER,
        )
        .expect("client");
        let hello = client.build_client_hello().expect("hello");
        let HelloOutcome::Established {
            server_hello,
            session,
        } = respond_to_hello(&server, &hello).expect("respond")
        else {
            panic!("expected IK to be accepted");
        };
        let IkServerHelloOutcome::Continue(done) = client
            .read_server_hello(&server_hello)
            .expect("client reads")
        else {
            panic!("client fell back");
        };
        assert_eq!(session.payload, b"resume");
        assert_eq!(session.pattern, Pattern::Ik);
        roundtrip((&done.write_cipher, &done.read_cipher), &session);
    }

    #[test]
    fn ik_against_another_server_key_falls_back_to_xx() {
        let server = ServerIdentity::generate();
        let stale = ServerIdentity::generate().static_public();
        let client_static = KeyPair::generate(&mut rand::rng());
        let mut client =
            IkHandshakeState::new(client_static, stale, b"again".to_vec(), &WA_CONN_HEADER)
                .expect("client");
        let hello = client.build_client_hello().expect("hello");
        let outcome = respond_to_hello(&server, &hello).expect("respond");
        let mut done = None;
        let est = finish(outcome, |sh| {
            let IkServerHelloOutcome::Fallback(inputs) =
                client.read_server_hello(sh).expect("client reads")
            else {
                panic!("expected fallback");
            };
            let mut fb = XxFallbackHandshakeState::from_ik_failure(*inputs, &WA_CONN_HEADER)
                .expect("fallback");
            let fin = fb.build_client_finish().expect("fallback finish");
            done = Some(fb.finish().expect("fallback done"));
            fin
        });
        let done = done.expect("client finished");
        assert_eq!(est.pattern, Pattern::XxFallback);
        assert_eq!(est.payload, b"again");
        assert_eq!(done.server_cert_chain.leaf_key, server.static_public());
        roundtrip((&done.write_cipher, &done.read_cipher), &est);
    }
}
