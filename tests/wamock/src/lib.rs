//! wamock: a WhatsApp server for tests. The unmodified whatsapp-rust client (built with
//! its `danger-skip-cert-chain-verify` feature) connects to it, pairs by QR with wamock
//! playing the phone, logs in and stays connected. See README.md.

pub mod accounts;
pub mod admin;
pub mod appstate;
pub mod blocklist;
pub mod business;
pub mod calls;
pub mod cipher;
pub mod error;
pub mod faults;
pub mod framing;
pub mod groups;
pub mod handshake;
pub mod history;
pub mod http_client;
pub mod iq;
pub mod keyshare;
pub mod media;
pub mod newsletters;
pub mod nodes;
pub mod pair_code;
pub mod pairing;
pub mod prekeys;
pub mod presence;
pub mod privacy;
pub mod profile;
pub mod relay;
pub mod server;
pub mod session;
pub mod state;
pub mod status;
pub mod users;
pub mod usync;

pub use error::{Error, Result};
pub use http_client::{MEDIA_HOST, RoutingHttpClient};
pub use server::Server;
pub use state::{DeviceStatus, HandshakeCounts};
