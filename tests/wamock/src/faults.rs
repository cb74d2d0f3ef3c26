//! Faults a test can inject into a device's connection: a server restart (515), the
//! phone removing the device (401), another login taking the stream over, and a connection
//! that just drops.

use std::str::FromStr;

use thiserror::Error;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Jid, Node};

use crate::accounts::DeviceAddr;
use crate::nodes::{conflict, stream_error};
use crate::state::{Outbound, State};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kick {
    /// `<stream:error code="515"/>` then close: the client reconnects by itself.
    Restart,
    /// `<stream:error code="401"><conflict type="device_removed"/>`: the account forgets
    /// the device and the client logs out.
    Removed,
    /// `<stream:error><conflict type="replaced"/>`: another login took the stream.
    Replaced,
    /// The socket closes with no stanza at all (a network failure): the client reconnects
    /// with its backoff.
    Drop,
}

impl FromStr for Kick {
    type Err = KickError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "515" => Ok(Self::Restart),
            "401" => Ok(Self::Removed),
            "replaced" => Ok(Self::Replaced),
            "drop" => Ok(Self::Drop),
            other => Err(KickError::BadRequest(format!(
                "reason must be \"515\", \"401\", \"replaced\" or \"drop\", not {other:?}"
            ))),
        }
    }
}

#[derive(Debug, Error)]
pub enum KickError {
    #[error("{0}")]
    BadRequest(String),
    #[error("no such device")]
    UnknownDevice,
    #[error("the device has no live connection")]
    NotConnected,
}

/// What WhatsApp sends a device its phone removed.
pub fn device_removed() -> Node {
    NodeBuilder::new("stream:error")
        .attr("code", "401")
        .children([NodeBuilder::new("conflict")
            .attr("type", "device_removed")
            .build()])
        .build()
}

/// The device a kick names: `PHONE:DEVICE@s.whatsapp.net` (or `LID:DEVICE@lid`).
pub fn device_of(state: &State, jid: &str) -> Result<DeviceAddr, KickError> {
    let parsed: Jid = jid
        .parse()
        .map_err(|e| KickError::BadRequest(format!("invalid jid {jid:?}: {e}")))?;
    let addr = state.resolve(&parsed).ok_or(KickError::UnknownDevice)?;
    state
        .with_device(&addr, |_| ())
        .ok_or(KickError::UnknownDevice)?;
    Ok(addr)
}

/// Applies a kick. Returns whether a live connection was closed.
pub fn kick(state: &State, addr: &DeviceAddr, kick: Kick) -> Result<bool, KickError> {
    let (conn, node) = match kick {
        Kick::Restart => (state.detach(addr), Some(stream_error("515"))),
        Kick::Replaced => (state.detach(addr), Some(conflict("replaced"))),
        Kick::Removed => (state.forget_device(addr), Some(device_removed())),
        Kick::Drop => (state.detach(addr), None),
    };
    tracing::info!(jid = %addr.jid(), ?kick, connected = conn.is_some(), "kick");
    match conn {
        Some(tx) => {
            let _ = tx.send(Outbound::Close(node));
            Ok(true)
        }
        None if kick == Kick::Removed => Ok(false),
        None => Err(KickError::NotConnected),
    }
}
