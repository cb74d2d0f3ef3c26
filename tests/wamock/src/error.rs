//! The one error type of wamock.

use thiserror::Error;

/// Everything that can go wrong while serving a client or an admin request.
#[derive(Debug, Error)]
pub enum Error {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("framing: {0}")]
    Framing(String),
    #[error("noise handshake: {0}")]
    Handshake(#[from] wacore_noise::HandshakeError),
    #[error("noise: {0}")]
    Noise(#[from] wacore_noise::NoiseError),
    #[error("binary node: {0}")]
    Binary(#[from] wacore_binary::BinaryError),
    #[error("protobuf: {0}")]
    Proto(#[from] waproto::buffa::DecodeError),
    #[error("crypto: {0}")]
    Crypto(String),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("websocket: {0}")]
    WebSocket(String),
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    #[error("connection closed")]
    Closed,
}

impl Error {
    pub(crate) fn protocol(msg: impl Into<String>) -> Self {
        Self::Protocol(msg.into())
    }
}

pub type Result<T> = std::result::Result<T, Error>;
