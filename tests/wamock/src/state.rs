//! What the server remembers: accounts, the live chat connections (at most one per
//! device), and the stanzas delivered to each device that it has not acknowledged yet.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use wacore::libsignal::protocol::KeyPair;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Jid, Node};

use crate::accounts::is_lid;
pub use crate::accounts::{Account, Device, DeviceAddr};
use crate::handshake::{Pattern, ServerIdentity};
use crate::prekeys::KeyBundle;

pub type ConnId = u64;

/// At most this many unacknowledged stanzas are kept per device; older ones are dropped.
const PENDING_LIMIT: usize = 10_000;

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

/// An unpaired client waiting for a QR scan (or a pairing code) on one connection.
#[derive(Debug, Clone)]
pub struct PairingCandidate {
    pub noise_pub: [u8; 32],
    pub keys: KeyBundle,
    pub refs: Vec<String>,
    /// Its `companion_hello`, once it asked to pair by code.
    pub code: Option<CodeRequest>,
}

/// A client's `companion_hello`: the number it wants to link to and its ephemeral key,
/// wrapped with the code it shows.
#[derive(Debug, Clone)]
pub struct CodeRequest {
    pub phone: String,
    pub wrapped_ephemeral: Vec<u8>,
    pub pairing_ref: String,
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
    by_device: HashMap<DeviceAddr, ConnId>,
    /// Delivered (or queued) and not yet acknowledged, per device: resent at each login.
    pending: HashMap<DeviceAddr, VecDeque<Node>>,
    refs: HashMap<String, ConnId>,
    /// The connection waiting for a code per phone number (the latest hello wins).
    code_requests: HashMap<String, ConnId>,
    /// Who waits for a connection's `companion_finish`.
    code_finish: HashMap<ConnId, oneshot::Sender<Node>>,
    /// Per device: the most sockets it was ever logged in on at the same time (a login that
    /// replaces a live socket counts both: WhatsApp's "stream replaced"), and how many logins
    /// replaced a live socket.
    login_stats: HashMap<DeviceAddr, LoginStats>,
    next_conn: ConnId,
}

impl Inner {
    fn account_mut(&mut self, phone: &str, push_name: Option<String>) -> &mut Account {
        let Inner { accounts, lids, .. } = self;
        let account = accounts.entry(phone.to_string()).or_insert_with(|| {
            let account = Account::new(phone, lids);
            lids.insert(account.lid.clone(), phone.to_string());
            account
        });
        if push_name.is_some() {
            account.push_name = push_name;
        }
        account
    }

    fn phone_of(&self, jid: &Jid) -> Option<&str> {
        if is_lid(jid) {
            self.lids.get(jid.user.as_str()).map(String::as_str)
        } else {
            self.accounts
                .get_key_value(jid.user.as_str())
                .map(|(k, _)| k.as_str())
        }
    }
}

/// `GET /admin/devices` rows.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeviceStatus {
    pub jid: String,
    pub connected: bool,
    pub sockets: usize,
    /// The most live logged-in sockets the device ever had at once; 2 or more means a
    /// login replaced a socket that was still up.
    #[serde(rename = "maxSockets")]
    pub max_sockets: usize,
    /// Logins that replaced a socket of the device that was still up.
    pub replaced: u64,
    /// Messages delivered (or queued) to the device that it has not acknowledged yet: kept,
    /// and delivered again at its next login, as WhatsApp does. Left out when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub unacked: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// What [`State::login`] counted for one device.
#[derive(Debug, Default, Clone, Copy)]
struct LoginStats {
    max_sockets: usize,
    replaced: u64,
}

/// Why a login is refused (`<failure reason="401"/>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRefusal {
    UnknownDevice,
    WrongNoiseKey,
}

/// What `<success>` needs to say, and what the device has not acknowledged yet (the
/// offline queue, each stanza marked `offline`).
pub struct LoginInfo {
    pub lid: String,
    pub created: u64,
    pub offline: Vec<Node>,
}

/// How many Noise handshakes of each pattern completed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HandshakeCounts {
    pub xx: u64,
    pub ik: u64,
    pub xx_fallback: u64,
}

/// What a sender looks like to others: its JIDs and push name.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: DeviceAddr,
    pub lid: String,
    pub push_name: Option<String>,
}

impl Peer {
    /// The device JID in the PN or LID namespace.
    pub fn jid(&self, lid: bool) -> Jid {
        if lid {
            Jid::lid_device(self.lid.clone(), self.addr.device)
        } else {
            Jid::pn_device(self.addr.phone.clone(), self.addr.device)
        }
    }
}

/// What happened to a stanza handed to [`State::deliver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Live,
    Queued,
    /// No such device (an account's phone that is not a simulated user, for one).
    NoDevice,
}

pub struct State {
    pub identity: ServerIdentity,
    pub shutdown: CancellationToken,
    /// Where this server listens (simulated users connect here).
    pub addr: SocketAddr,
    pub users: crate::users::Users,
    pub media: crate::media::MediaStore,
    pub newsletters: crate::newsletters::Channels,
    pub groups: crate::groups::GroupStore,
    inner: Mutex<Inner>,
    handshakes: Mutex<HandshakeCounts>,
    taps: Mutex<Vec<mpsc::UnboundedSender<Arrival>>>,
}

/// A `<message>` as it reached the server (what [`State::tap_messages`] reports).
#[derive(Debug, Clone)]
pub struct Arrival {
    /// The message id the sender chose.
    pub id: String,
    /// The sending device.
    pub from: String,
    pub at: std::time::Instant,
}

impl State {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            identity: ServerIdentity::generate(),
            shutdown: CancellationToken::new(),
            addr,
            users: crate::users::Users::default(),
            media: crate::media::MediaStore::default(),
            newsletters: crate::newsletters::Channels::default(),
            groups: crate::groups::GroupStore::default(),
            inner: Mutex::new(Inner::default()),
            handshakes: Mutex::new(HandshakeCounts::default()),
            taps: Mutex::new(Vec::new()),
        }
    }

    /// Every `<message>` a logged-in device sends from now on, as it arrives (benchmarks
    /// measure send latency up to here).
    pub fn tap_messages(&self) -> mpsc::UnboundedReceiver<Arrival> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.taps.lock().unwrap_or_else(|p| p.into_inner()).push(tx);
        rx
    }

    pub(crate) fn message_arrived(&self, id: &str, from: &DeviceAddr) {
        let mut taps = self.taps.lock().unwrap_or_else(|p| p.into_inner());
        if taps.is_empty() {
            return;
        }
        let arrival = Arrival {
            id: id.to_string(),
            from: from.jid(),
            at: std::time::Instant::now(),
        };
        taps.retain(|t| t.send(arrival.clone()).is_ok());
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
        let Some(conn) = inner.conns.remove(&id) else {
            return;
        };
        if let Some(p) = conn.pairing {
            for r in p.refs {
                inner.refs.remove(&r);
            }
            if let Some(code) = p.code
                && inner.code_requests.get(&code.phone) == Some(&id)
            {
                inner.code_requests.remove(&code.phone);
            }
        }
        inner.code_finish.remove(&id);
        if let Some(addr) = conn.device
            && inner.by_device.get(&addr) == Some(&id)
        {
            inner.by_device.remove(&addr);
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

    /// Records a connection's `companion_hello`. False when it is not a pairing one.
    pub fn offer_code(&self, id: ConnId, request: CodeRequest) -> bool {
        let mut inner = self.lock();
        let Some(candidate) = inner.conns.get_mut(&id).and_then(|c| c.pairing.as_mut()) else {
            return false;
        };
        let phone = request.phone.clone();
        candidate.code = Some(request);
        inner.code_requests.insert(phone, id);
        true
    }

    /// The connection waiting for a code for this phone number.
    pub fn code_target(
        &self,
        phone: &str,
    ) -> Option<(ConnId, mpsc::UnboundedSender<Outbound>, PairingCandidate)> {
        let inner = self.lock();
        let id = *inner.code_requests.get(phone)?;
        let conn = inner.conns.get(&id)?;
        Some((id, conn.tx.clone(), conn.pairing.clone()?))
    }

    /// Waits for this connection's next `companion_finish`.
    pub fn await_code_finish(&self, id: ConnId) -> oneshot::Receiver<Node> {
        let (tx, rx) = oneshot::channel();
        self.lock().code_finish.insert(id, tx);
        rx
    }

    /// Hands a `companion_finish` to whoever waits for it. False when nobody does.
    pub fn code_finished(&self, id: ConnId, finish: Node) -> bool {
        match self.lock().code_finish.remove(&id) {
            Some(tx) => tx.send(finish).is_ok(),
            None => false,
        }
    }

    /// Creates the account on first use and reserves the next device id.
    /// Returns (account key, raw id, lid, device id).
    pub fn reserve_device(
        &self,
        phone: &str,
        push_name: Option<String>,
    ) -> (KeyPair, u32, String, u16) {
        let mut inner = self.lock();
        let account = inner.account_mut(phone, push_name);
        let device = account.next_device;
        account.next_device = account.next_device.saturating_add(1);
        (
            account.key.clone(),
            account.raw_id,
            account.lid.clone(),
            device,
        )
    }

    /// Creates the account on first use. Returns (account key, raw id, lid,
    /// registration id).
    pub fn ensure_account(
        &self,
        phone: &str,
        push_name: Option<String>,
    ) -> (KeyPair, u32, String, u32) {
        let mut inner = self.lock();
        let account = inner.account_mut(phone, push_name);
        (
            account.key.clone(),
            account.raw_id,
            account.lid.clone(),
            account.registration_id,
        )
    }

    /// Records the phone (device 0) of an account as a client that can log in.
    pub fn register_primary(&self, phone: &str, device: Device) {
        let mut inner = self.lock();
        if let Some(account) = inner.accounts.get_mut(phone) {
            account.primary = Some(device);
        }
    }

    /// Records a paired device and forgets the connection's QR refs.
    pub fn complete_pairing(&self, conn: ConnId, phone: &str, device: Device) {
        let mut inner = self.lock();
        if let Some(account) = inner.accounts.get_mut(phone) {
            account.devices.insert(device.id, device);
        }
        let Some(pairing) = inner.conns.get_mut(&conn).and_then(|c| c.pairing.take()) else {
            return;
        };
        for r in pairing.refs {
            inner.refs.remove(&r);
        }
        if let Some(code) = pairing.code
            && inner.code_requests.get(&code.phone) == Some(&conn)
        {
            inner.code_requests.remove(&code.phone);
        }
    }

    /// Checks a login and binds the connection to the device. A connection the
    /// device already had is told `<conflict type="replaced"/>` and closed.
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
            .device(addr.device)
            .ok_or(LoginRefusal::UnknownDevice)?;
        if &device.noise_pub != noise_pub {
            return Err(LoginRefusal::WrongNoiseKey);
        }
        let lid = account.lid.clone();
        let created = account.created;
        if let Some(c) = inner.conns.get_mut(&conn) {
            c.device = Some(addr.clone());
        }
        // Counted before the old socket is unbound: both are up at this instant.
        let live = inner
            .conns
            .values()
            .filter(|c| c.device.as_ref() == Some(addr))
            .count();
        let stats = inner.login_stats.entry(addr.clone()).or_default();
        stats.max_sockets = stats.max_sockets.max(live);
        if live > 1 {
            stats.replaced += 1;
        }
        if let Some(old) = inner.by_device.insert(addr.clone(), conn)
            && old != conn
            && let Some(old_conn) = inner.conns.get_mut(&old)
        {
            tracing::info!(jid = %addr.jid(), "second login of a device: replacing its old stream");
            old_conn.device = None;
            let _ = old_conn
                .tx
                .send(Outbound::Close(Some(crate::nodes::conflict("replaced"))));
        }
        let offline = inner
            .pending
            .get(addr)
            .map(|q| {
                q.iter()
                    .map(|n| {
                        let mut n = n.clone();
                        n.attrs.insert("offline", "1");
                        n
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(LoginInfo {
            lid,
            created,
            offline,
        })
    }

    /// Every paired companion device with its live socket count.
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
                let addr = DeviceAddr::new(account.phone.clone(), *id);
                let sockets = counts.get(&addr).copied().unwrap_or(0);
                let stats = inner.login_stats.get(&addr).copied().unwrap_or_default();
                let unacked = inner
                    .pending
                    .get(&addr)
                    .map_or(0, |q| q.iter().filter(|n| n.tag == "message").count());
                out.push(DeviceStatus {
                    jid: addr.jid(),
                    connected: sockets > 0,
                    sockets,
                    max_sockets: stats.max_sockets.max(sockets),
                    replaced: stats.replaced,
                    unacked,
                });
            }
        }
        out.sort_by(|a, b| a.jid.cmp(&b.jid));
        out
    }

    /// Runs `f` on a device's record.
    pub fn with_device<T>(&self, addr: &DeviceAddr, f: impl FnOnce(&mut Device) -> T) -> Option<T> {
        let mut inner = self.lock();
        let device = inner
            .accounts
            .get_mut(&addr.phone)?
            .device_mut(addr.device)?;
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

    /// The device a JID (PN or LID, any device) names, if its account exists.
    pub fn resolve(&self, jid: &Jid) -> Option<DeviceAddr> {
        let inner = self.lock();
        let phone = inner.phone_of(jid)?;
        Some(DeviceAddr::new(phone, jid.device))
    }

    /// A device as others see it.
    pub fn peer(&self, addr: &DeviceAddr) -> Option<Peer> {
        let inner = self.lock();
        let account = inner.accounts.get(&addr.phone)?;
        Some(Peer {
            addr: addr.clone(),
            lid: account.lid.clone(),
            push_name: account.push_name.clone(),
        })
    }

    /// The devices of the account a JID names that exist as clients.
    pub fn account_devices(&self, jid: &Jid) -> Vec<DeviceAddr> {
        let inner = self.lock();
        let Some(phone) = inner.phone_of(jid) else {
            return Vec::new();
        };
        inner
            .accounts
            .get(phone)
            .map(|a| {
                a.device_ids()
                    .into_iter()
                    .map(|d| DeviceAddr::new(phone, d))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Sends a stanza to a device now if it is connected, and keeps it until the device
    /// acknowledges it (a `<receipt>` for a message, an `<ack>` otherwise), resending it
    /// at each login until then.
    pub fn deliver(&self, to: &DeviceAddr, node: Node) -> Delivery {
        let mut inner = self.lock();
        let exists = inner
            .accounts
            .get(&to.phone)
            .is_some_and(|a| a.device(to.device).is_some());
        if !exists {
            return Delivery::NoDevice;
        }
        let live = inner
            .by_device
            .get(to)
            .and_then(|id| inner.conns.get(id))
            .is_some_and(|conn| conn.tx.send(Outbound::Node(node.clone())).is_ok());
        let queue = inner.pending.entry(to.clone()).or_default();
        if queue.len() >= PENDING_LIMIT {
            queue.pop_front();
        }
        queue.push_back(node);
        if live {
            Delivery::Live
        } else {
            Delivery::Queued
        }
    }

    /// Sends a stanza to a device only if it is connected now, and forgets it (presence
    /// and chat states are not queued). False when the device has no live socket.
    pub fn send_live(&self, to: &DeviceAddr, node: Node) -> bool {
        let inner = self.lock();
        inner
            .by_device
            .get(to)
            .and_then(|id| inner.conns.get(id))
            .is_some_and(|conn| conn.tx.send(Outbound::Node(node)).is_ok())
    }

    /// Whether a device has a live, logged-in socket.
    pub fn is_live(&self, addr: &DeviceAddr) -> bool {
        self.lock().by_device.contains_key(addr)
    }

    /// A device acknowledged the stanzas of this class (tag) with these ids.
    pub fn acknowledged(&self, addr: &DeviceAddr, class: &str, ids: &[String]) {
        let mut inner = self.lock();
        if let Some(queue) = inner.pending.get_mut(addr) {
            queue.retain(|n| {
                n.tag != class || !crate::nodes::attr(n, "id").is_some_and(|id| ids.contains(&id))
            });
        }
    }

    /// Unbinds a device from its live connection (which no longer counts as its socket)
    /// and returns that connection.
    pub fn detach(&self, addr: &DeviceAddr) -> Option<mpsc::UnboundedSender<Outbound>> {
        let mut inner = self.lock();
        let id = inner.by_device.remove(addr)?;
        let conn = inner.conns.get_mut(&id)?;
        conn.device = None;
        Some(conn.tx.clone())
    }

    /// Removes a device (its keys, queue and binding); returns its connection.
    pub fn forget_device(&self, addr: &DeviceAddr) -> Option<mpsc::UnboundedSender<Outbound>> {
        let mut inner = self.lock();
        if let Some(account) = inner.accounts.get_mut(&addr.phone) {
            if addr.device == 0 {
                account.primary = None;
            } else {
                account.devices.remove(&addr.device);
            }
        }
        inner.pending.remove(addr);
        let id = inner.by_device.remove(addr)?;
        let conn = inner.conns.get_mut(&id)?;
        conn.device = None;
        Some(conn.tx.clone())
    }
}

/// `<ib><offline count="N"/></ib>`: the end of the offline queue.
pub fn offline_marker(count: usize) -> Node {
    NodeBuilder::new("ib")
        .children([NodeBuilder::new("offline")
            .attr("count", count.to_string())
            .build()])
        .build()
}
