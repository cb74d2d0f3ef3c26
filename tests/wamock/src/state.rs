//! What the server remembers: accounts (the phones), their companion devices, and the
//! live chat connections.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use rand::RngExt;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use wacore::libsignal::protocol::KeyPair;
use wacore_binary::Node;

use crate::handshake::{Pattern, ServerIdentity};
use crate::prekeys::KeyBundle;

pub type ConnId = u64;

/// What other tasks ask a connection to do.
#[derive(Debug)]
pub enum Outbound {
    /// Send this stanza.
    Node(Node),
    /// Send this `<iq>` and hand its `result`/`error` answer back.
    Iq(Node, oneshot::Sender<Node>),
    /// Send this stanza (if any), then close the socket.
    Close(Option<Node>),
}

/// One companion device of an account, as paired.
#[derive(Debug, Clone)]
pub struct Device {
    pub id: u16,
    pub key_index: u32,
    pub noise_pub: [u8; 32],
    pub identity_pub: [u8; 32],
    /// `ADVSignedDeviceIdentity` with the device's own signature, from `pair-device-sign`.
    pub signed_identity: Vec<u8>,
    pub keys: KeyBundle,
    pub paired_at: u64,
}

/// A WhatsApp account: the phone (device 0) and its companions.
pub struct Account {
    pub phone: String,
    pub lid: String,
    /// The phone's account identity key, which signs device identities.
    pub key: KeyPair,
    pub raw_id: u32,
    pub push_name: Option<String>,
    pub created: u64,
    pub next_device: u16,
    pub devices: BTreeMap<u16, Device>,
}

/// A device address `PHONE:DEVICE`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceAddr {
    pub phone: String,
    pub device: u16,
}

impl DeviceAddr {
    pub fn jid(&self) -> String {
        format!("{}:{}@s.whatsapp.net", self.phone, self.device)
    }
}

/// An unpaired client waiting for a QR scan on one connection.
#[derive(Debug, Clone)]
pub struct PairingCandidate {
    pub noise_pub: [u8; 32],
    pub keys: KeyBundle,
    pub refs: Vec<String>,
}

struct Conn {
    tx: mpsc::UnboundedSender<Outbound>,
    device: Option<DeviceAddr>,
    pairing: Option<PairingCandidate>,
}

#[derive(Default)]
struct Inner {
    accounts: HashMap<String, Account>,
    lids: HashMap<String, String>,
    conns: HashMap<ConnId, Conn>,
    refs: HashMap<String, ConnId>,
    next_conn: ConnId,
}

/// `GET /admin/devices` rows.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeviceStatus {
    pub jid: String,
    pub connected: bool,
    pub sockets: usize,
}

/// Why a login is refused (`<failure reason="401"/>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRefusal {
    UnknownDevice,
    WrongNoiseKey,
}

/// What `<success>` needs to say.
pub struct LoginInfo {
    pub lid: String,
    pub created: u64,
}

/// How many Noise handshakes of each pattern completed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HandshakeCounts {
    pub xx: u64,
    pub ik: u64,
    pub xx_fallback: u64,
}

pub struct State {
    pub identity: ServerIdentity,
    pub shutdown: CancellationToken,
    inner: Mutex<Inner>,
    handshakes: Mutex<HandshakeCounts>,
}

impl State {
    pub fn new() -> Self {
        Self {
            identity: ServerIdentity::generate(),
            shutdown: CancellationToken::new(),
            inner: Mutex::new(Inner::default()),
            handshakes: Mutex::new(HandshakeCounts::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn count_handshake(&self, pattern: Pattern) {
        let mut c = self.handshakes.lock().unwrap_or_else(|p| p.into_inner());
        match pattern {
            Pattern::Xx => c.xx += 1,
            Pattern::Ik => c.ik += 1,
            Pattern::XxFallback => c.xx_fallback += 1,
        }
    }

    pub fn handshakes(&self) -> HandshakeCounts {
        *self.handshakes.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add_conn(&self, tx: mpsc::UnboundedSender<Outbound>) -> ConnId {
        let mut inner = self.lock();
        inner.next_conn += 1;
        let id = inner.next_conn;
        inner.conns.insert(
            id,
            Conn {
                tx,
                device: None,
                pairing: None,
            },
        );
        id
    }

    pub fn remove_conn(&self, id: ConnId) {
        let mut inner = self.lock();
        if let Some(conn) = inner.conns.remove(&id)
            && let Some(p) = conn.pairing
        {
            for r in p.refs {
                inner.refs.remove(&r);
            }
        }
    }

    /// Asks every live connection to close.
    pub fn close_all(&self) {
        for conn in self.lock().conns.values() {
            let _ = conn.tx.send(Outbound::Close(None));
        }
    }

    pub fn offer_pairing(&self, id: ConnId, candidate: PairingCandidate) {
        let mut inner = self.lock();
        for r in &candidate.refs {
            inner.refs.insert(r.clone(), id);
        }
        if let Some(conn) = inner.conns.get_mut(&id) {
            conn.pairing = Some(candidate);
        }
    }

    /// The connection that showed this QR ref.
    pub fn pairing_target(
        &self,
        pairing_ref: &str,
    ) -> Option<(ConnId, mpsc::UnboundedSender<Outbound>, PairingCandidate)> {
        let inner = self.lock();
        let id = *inner.refs.get(pairing_ref)?;
        let conn = inner.conns.get(&id)?;
        Some((id, conn.tx.clone(), conn.pairing.clone()?))
    }

    /// Creates the account on first use and reserves the next device id.
    /// Returns (account key, raw id, lid, device id).
    pub fn reserve_device(
        &self,
        phone: &str,
        push_name: Option<String>,
    ) -> (KeyPair, u32, String, u16) {
        let mut guard = self.lock();
        let Inner { accounts, lids, .. } = &mut *guard;
        let account = accounts.entry(phone.to_string()).or_insert_with(|| {
            let mut rng = rand::rng();
            let lid = loop {
                let candidate = rng
                    .random_range(100_000_000_000_000u64..999_999_999_999_999)
                    .to_string();
                if !lids.contains_key(&candidate) {
                    break candidate;
                }
            };
            lids.insert(lid.clone(), phone.to_string());
            Account {
                phone: phone.to_string(),
                lid,
                key: KeyPair::generate(&mut rng),
                raw_id: rng.random(),
                push_name: None,
                created: crate::nodes::unix_now(),
                next_device: 1,
                devices: BTreeMap::new(),
            }
        });
        if push_name.is_some() {
            account.push_name = push_name;
        }
        let device = account.next_device;
        account.next_device = account.next_device.saturating_add(1);
        (
            account.key.clone(),
            account.raw_id,
            account.lid.clone(),
            device,
        )
    }

    /// Records a paired device and forgets the connection's QR refs.
    pub fn complete_pairing(&self, conn: ConnId, phone: &str, device: Device) {
        let mut inner = self.lock();
        if let Some(account) = inner.accounts.get_mut(phone) {
            account.devices.insert(device.id, device);
        }
        let refs = inner
            .conns
            .get_mut(&conn)
            .and_then(|c| c.pairing.take())
            .map(|p| p.refs)
            .unwrap_or_default();
        for r in refs {
            inner.refs.remove(&r);
        }
    }

    /// Checks a login and binds the connection to the device.
    pub fn login(
        &self,
        conn: ConnId,
        addr: &DeviceAddr,
        noise_pub: &[u8; 32],
    ) -> Result<LoginInfo, LoginRefusal> {
        let mut inner = self.lock();
        let account = inner
            .accounts
            .get(&addr.phone)
            .ok_or(LoginRefusal::UnknownDevice)?;
        let device = account
            .devices
            .get(&addr.device)
            .ok_or(LoginRefusal::UnknownDevice)?;
        if &device.noise_pub != noise_pub {
            return Err(LoginRefusal::WrongNoiseKey);
        }
        let info = LoginInfo {
            lid: account.lid.clone(),
            created: account.created,
        };
        if let Some(c) = inner.conns.get_mut(&conn) {
            c.device = Some(addr.clone());
        }
        Ok(info)
    }

    /// Every paired device with its live socket count.
    pub fn devices(&self) -> Vec<DeviceStatus> {
        let inner = self.lock();
        let mut counts: HashMap<&DeviceAddr, usize> = HashMap::new();
        for conn in inner.conns.values() {
            if let Some(addr) = &conn.device {
                *counts.entry(addr).or_default() += 1;
            }
        }
        let mut out = Vec::new();
        for account in inner.accounts.values() {
            for id in account.devices.keys() {
                let addr = DeviceAddr {
                    phone: account.phone.clone(),
                    device: *id,
                };
                let sockets = counts.get(&addr).copied().unwrap_or(0);
                out.push(DeviceStatus {
                    jid: addr.jid(),
                    connected: sockets > 0,
                    sockets,
                });
            }
        }
        out.sort_by(|a, b| a.jid.cmp(&b.jid));
        out
    }

    /// Runs `f` on a paired device's record.
    pub fn with_device<T>(&self, addr: &DeviceAddr, f: impl FnOnce(&mut Device) -> T) -> Option<T> {
        let mut inner = self.lock();
        let device = inner
            .accounts
            .get_mut(&addr.phone)?
            .devices
            .get_mut(&addr.device)?;
        Some(f(device))
    }

    /// Runs `f` on the account owning a phone number or LID user.
    pub fn with_account<T>(
        &self,
        user: &str,
        is_lid: bool,
        f: impl FnOnce(&mut Account) -> T,
    ) -> Option<T> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let phone = if is_lid {
            inner.lids.get(user)?.clone()
        } else {
            user.to_string()
        };
        inner.accounts.get_mut(&phone).map(f)
    }
}

impl Default for State {
    fn default() -> Self {
        Self::new()
    }
}
