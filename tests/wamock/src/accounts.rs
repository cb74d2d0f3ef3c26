//! Accounts (a phone number with its LID and account key), their devices, and device
//! addresses.

use std::collections::{BTreeMap, HashMap};

use rand::RngExt;
use wacore::libsignal::protocol::KeyPair;
use wacore_binary::{Jid, Server};

use crate::keyshare::AppStateKey;
use crate::prekeys::KeyBundle;

/// One device of an account: the phone (device 0, when it is a simulated user's
/// client) or a companion paired to it.
#[derive(Debug, Clone)]
pub struct Device {
    pub id: u16,
    pub key_index: u32,
    pub noise_pub: [u8; 32],
    pub identity_pub: [u8; 32],
    /// `ADVSignedDeviceIdentity` with the device's own signature, from
    /// `pair-device-sign`. `None` for the phone, whose bundles carry none.
    pub signed_identity: Option<Vec<u8>>,
    pub keys: KeyBundle,
    pub paired_at: u64,
}

/// A WhatsApp account: the phone (device 0) and its companions.
pub struct Account {
    pub phone: String,
    pub lid: String,
    /// The phone's identity key, which also signs device identities and key index lists.
    pub key: KeyPair,
    pub raw_id: u32,
    /// The phone's Signal registration id.
    pub registration_id: u32,
    /// The app-state sync key the phone shares with each new companion.
    pub app_state_key: AppStateKey,
    pub push_name: Option<String>,
    pub created: u64,
    pub next_device: u16,
    /// Device 0, once a simulated user's client plays this account's phone.
    pub primary: Option<Device>,
    /// Companion devices by id (1 and up).
    pub devices: BTreeMap<u16, Device>,
    /// The account's app-state (syncd) collections, as its devices uploaded them.
    pub app_state: crate::appstate::Collections,
    /// The account's presence and who watches it.
    pub presence: crate::presence::Book,
    /// Whom the account blocked.
    pub blocklist: crate::blocklist::Blocklist,
    /// The about text and picture the account set.
    pub profile: crate::profile::Profile,
    /// Privacy settings and the default disappearing timer.
    pub privacy: crate::privacy::Privacy,
    /// Calls placed to this account and what its devices answered.
    pub calls: crate::calls::CallLog,
}

impl Account {
    /// A new account with a fresh key and a LID not in `taken`.
    pub fn new(phone: &str, taken: &HashMap<String, String>) -> Self {
        let mut rng = rand::rng();
        let lid = loop {
            let candidate = rng
                .random_range(100_000_000_000_000u64..999_999_999_999_999)
                .to_string();
            if !taken.contains_key(&candidate) {
                break candidate;
            }
        };
        Self {
            phone: phone.to_string(),
            lid,
            key: KeyPair::generate(&mut rng),
            raw_id: rng.random(),
            registration_id: rng.random_range(1..16_380),
            app_state_key: AppStateKey::generate(),
            push_name: None,
            created: crate::nodes::unix_now(),
            next_device: 1,
            primary: None,
            devices: BTreeMap::new(),
            app_state: Default::default(),
            presence: Default::default(),
            blocklist: Default::default(),
            profile: Default::default(),
            privacy: Default::default(),
            calls: Default::default(),
        }
    }

    /// Device 0 is the phone, others are companions.
    pub fn device(&self, id: u16) -> Option<&Device> {
        if id == 0 {
            self.primary.as_ref()
        } else {
            self.devices.get(&id)
        }
    }

    pub fn device_mut(&mut self, id: u16) -> Option<&mut Device> {
        if id == 0 {
            self.primary.as_mut()
        } else {
            self.devices.get_mut(&id)
        }
    }

    /// Ids of the devices that exist as clients (the phone only when it is one).
    pub fn device_ids(&self) -> Vec<u16> {
        self.primary
            .iter()
            .map(|d| d.id)
            .chain(self.devices.keys().copied())
            .collect()
    }

    /// This account's JID for `device`, in the PN or LID namespace.
    pub fn jid(&self, device: u16, lid: bool) -> Jid {
        if lid {
            Jid::lid_device(self.lid.clone(), device)
        } else {
            Jid::pn_device(self.phone.clone(), device)
        }
    }
}

/// A device address `PHONE:DEVICE`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceAddr {
    pub phone: String,
    pub device: u16,
}

impl DeviceAddr {
    pub fn new(phone: impl Into<String>, device: u16) -> Self {
        Self {
            phone: phone.into(),
            device,
        }
    }

    /// `PHONE:DEVICE@s.whatsapp.net`, or `PHONE@s.whatsapp.net` for the phone.
    pub fn jid(&self) -> String {
        if self.device == 0 {
            format!("{}@s.whatsapp.net", self.phone)
        } else {
            format!("{}:{}@s.whatsapp.net", self.phone, self.device)
        }
    }
}

/// Whether a JID names an account by LID.
pub fn is_lid(jid: &Jid) -> bool {
    matches!(jid.server, Server::Lid | Server::HostedLid)
}
