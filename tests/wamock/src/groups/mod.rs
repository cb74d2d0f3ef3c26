//! Groups and communities: each group's state (subject, description, members and their
//! roles, settings, invite code, join requests, picture, community links), the `w:g2`
//! IQs that read and change it ([`iq`]), the `w:gp2` notifications members get
//! ([`notify`]) and the fan-out of group messages ([`relay`]).

pub mod iq;
pub mod mex;
pub mod notify;
pub mod relay;

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use serde_json::{Value, json};
use wacore_binary::Jid;

use crate::nodes::unix_now;
use crate::profile::Picture;

/// A member's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Member,
    Admin,
    SuperAdmin,
}

impl Role {
    pub fn is_admin(self) -> bool {
        self != Role::Member
    }

    /// The `type` attribute of a `<participant>` (none for a plain member).
    pub fn wire(self) -> Option<&'static str> {
        match self {
            Role::Member => None,
            Role::Admin => Some("admin"),
            Role::SuperAdmin => Some("superadmin"),
        }
    }
}

/// The description and who set it.
#[derive(Debug, Clone)]
pub struct Description {
    pub id: String,
    pub body: String,
    pub owner: String,
    pub time: u64,
}

/// One group (or community parent group).
#[derive(Debug, Clone)]
pub struct Group {
    /// The user part of `<id>@g.us`.
    pub id: String,
    pub subject: String,
    pub subject_owner: String,
    pub subject_time: u64,
    pub description: Option<Description>,
    /// The creator's phone number.
    pub creator: String,
    pub creation: u64,
    /// Members by phone number, in the order they joined.
    pub participants: Vec<(String, Role)>,
    pub announce: bool,
    pub locked: bool,
    pub approval: bool,
    /// `admin_add` or `all_member_add`.
    pub member_add_mode: String,
    pub ephemeral: u32,
    pub invite_code: String,
    /// Pending membership requests: phone number → request time.
    pub requests: BTreeMap<String, u64>,
    pub picture: Option<Picture>,
    /// A community's parent group.
    pub is_parent: bool,
    /// The community a group is linked to.
    pub parent: Option<String>,
}

impl Group {
    pub fn jid(&self) -> Jid {
        Jid::group(self.id.clone())
    }

    pub fn role(&self, phone: &str) -> Option<Role> {
        self.participants
            .iter()
            .find(|(p, _)| p == phone)
            .map(|(_, r)| *r)
    }

    pub fn is_admin(&self, phone: &str) -> bool {
        self.role(phone).is_some_and(Role::is_admin)
    }

    pub fn phones(&self) -> Vec<String> {
        self.participants.iter().map(|(p, _)| p.clone()).collect()
    }

    /// Adds a member (no-op when already one); true when added.
    pub fn add(&mut self, phone: &str, role: Role) -> bool {
        if self.role(phone).is_some() {
            return false;
        }
        self.participants.push((phone.to_string(), role));
        self.requests.remove(phone);
        true
    }

    pub fn remove(&mut self, phone: &str) -> bool {
        let before = self.participants.len();
        self.participants.retain(|(p, _)| p != phone);
        before != self.participants.len()
    }

    pub fn set_role(&mut self, phone: &str, role: Role) -> bool {
        match self.participants.iter_mut().find(|(p, _)| p == phone) {
            Some((_, r)) => {
                if *r != Role::SuperAdmin {
                    *r = role;
                }
                true
            }
            None => false,
        }
    }

    /// `GET /admin/groups/{jid}`.
    pub fn view(&self, linked: &[String]) -> Value {
        json!({
            "jid": self.jid().to_string(),
            "subject": self.subject,
            "subjectOwner": pn(&self.subject_owner),
            "description": self.description.as_ref().map(|d| d.body.clone()),
            "descriptionId": self.description.as_ref().map(|d| d.id.clone()),
            "creator": pn(&self.creator),
            "creation": self.creation,
            "participants": self.participants.iter().map(|(p, r)| json!({
                "jid": pn(p),
                "isAdmin": r.is_admin(),
                "isSuperAdmin": *r == Role::SuperAdmin,
            })).collect::<Vec<_>>(),
            "announce": self.announce,
            "locked": self.locked,
            "approval": self.approval,
            "memberAddMode": self.member_add_mode,
            "ephemeral": self.ephemeral,
            "inviteCode": self.invite_code,
            "requests": self.requests.iter().map(|(p, t)| json!({"jid": pn(p), "t": t})).collect::<Vec<_>>(),
            "pictureId": self.picture.as_ref().map(|p| p.id.clone()),
            "pictureSha256": self.picture.as_ref().map(|p| p.sha256.clone()),
            "isCommunity": self.is_parent,
            "parent": self.parent.as_ref().map(|p| Jid::group(p.clone()).to_string()),
            "linkedGroups": linked.iter().map(|g| Jid::group(g.clone()).to_string()).collect::<Vec<_>>(),
        })
    }
}

/// `PHONE@s.whatsapp.net`.
pub fn pn(phone: &str) -> String {
    Jid::pn(phone).to_string()
}

/// Every group wamock knows, by id.
#[derive(Default)]
pub struct GroupStore {
    groups: Mutex<BTreeMap<String, Group>>,
}

/// A new, unique group id and invite code (WhatsApp's ids look like `120363` + 12
/// digits; codes are 22 characters).
fn fresh_id(taken: &BTreeMap<String, Group>) -> String {
    loop {
        let id = format!("120363{:012}", rand::random::<u64>() % 1_000_000_000_000);
        if !taken.contains_key(&id) {
            return id;
        }
    }
}

pub fn fresh_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..22)
        .map(|_| ALPHABET[rand::random::<u32>() as usize % ALPHABET.len()] as char)
        .collect()
}

impl GroupStore {
    pub fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates a group owned by `creator` with these members.
    pub fn create(&self, creator: &str, subject: &str, members: &[String]) -> Group {
        let mut groups = self.lock();
        let id = fresh_id(&groups);
        let now = unix_now();
        let mut participants = vec![(creator.to_string(), Role::SuperAdmin)];
        for m in members {
            if m != creator && !participants.iter().any(|(p, _)| p == m) {
                participants.push((m.clone(), Role::Member));
            }
        }
        let group = Group {
            id: id.clone(),
            subject: subject.to_string(),
            subject_owner: creator.to_string(),
            subject_time: now,
            description: None,
            creator: creator.to_string(),
            creation: now,
            participants,
            announce: false,
            locked: false,
            approval: false,
            member_add_mode: "all_member_add".into(),
            ephemeral: 0,
            invite_code: fresh_code(),
            requests: BTreeMap::new(),
            picture: None,
            is_parent: false,
            parent: None,
        };
        groups.insert(id, group.clone());
        group
    }

    /// Runs `f` on a group.
    pub fn with<T>(&self, id: &str, f: impl FnOnce(&mut Group) -> T) -> Option<T> {
        self.lock().get_mut(id).map(f)
    }

    pub fn get(&self, id: &str) -> Option<Group> {
        self.lock().get(id).cloned()
    }

    /// The group an invite code opens.
    pub fn by_code(&self, code: &str) -> Option<Group> {
        self.lock()
            .values()
            .find(|g| g.invite_code == code)
            .cloned()
    }

    /// The groups a phone number is a member of.
    pub fn of_member(&self, phone: &str) -> Vec<Group> {
        self.lock()
            .values()
            .filter(|g| g.role(phone).is_some())
            .cloned()
            .collect()
    }

    /// The groups linked to a community.
    pub fn linked(&self, parent: &str) -> Vec<Group> {
        self.lock()
            .values()
            .filter(|g| g.parent.as_deref() == Some(parent))
            .cloned()
            .collect()
    }

    /// `GET /admin/groups/{jid}`.
    pub fn view(&self, id: &str) -> Option<Value> {
        let groups = self.lock();
        let group = groups.get(id)?;
        let linked: Vec<String> = groups
            .values()
            .filter(|g| g.parent.as_deref() == Some(id))
            .map(|g| g.id.clone())
            .collect();
        Some(group.view(&linked))
    }
}
