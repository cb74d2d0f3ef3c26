//! Encrypted binary stanzas after the handshake: one AES-GCM key and one counter per
//! direction; each frame carries one marshalled (optionally zlib-packed) node.

use bytes::BytesMut;
use wacore_binary::Node;
use wacore_binary::marshal::{marshal, unmarshal_ref};
use wacore_binary::util::unpack;
use wacore_noise::NoiseCipher;

use crate::error::{Error, Result};
use crate::framing::frame;
use crate::handshake::Established;

pub struct StanzaCipher {
    read: NoiseCipher,
    write: NoiseCipher,
    read_counter: u32,
    write_counter: u32,
}

impl StanzaCipher {
    pub fn new(session: Established) -> Self {
        Self {
            read: session.read,
            write: session.write,
            read_counter: 0,
            write_counter: 0,
        }
    }

    /// Decrypts one frame from the client into a node.
    pub fn open(&mut self, mut frame: BytesMut) -> Result<Node> {
        let counter = self.read_counter;
        self.read_counter = counter
            .checked_add(1)
            .ok_or_else(|| Error::protocol("read counter exhausted"))?;
        self.read
            .decrypt_in_place_with_counter(counter, &mut frame)?;
        let plain = unpack(&frame)?;
        Ok(unmarshal_ref(&plain)?.to_owned())
    }

    /// Encrypts one node into a frame ready for the socket.
    pub fn seal(&mut self, node: &Node) -> Result<Vec<u8>> {
        let plain = marshal(node)?;
        let counter = self.write_counter;
        self.write_counter = counter
            .checked_add(1)
            .ok_or_else(|| Error::protocol("write counter exhausted"))?;
        let sealed = self.write.encrypt_with_counter(counter, &plain)?;
        frame(&sealed)
    }
}
