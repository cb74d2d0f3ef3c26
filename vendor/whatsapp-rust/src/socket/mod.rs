pub mod error;
pub mod noise_socket;

pub use error::{Result, SocketError};
pub use noise_socket::NoiseSocket;
