//! App-state (syncd) collections, as WhatsApp's server keeps them for an account.
//!
//! A device uploads an encrypted patch built on the version it has
//! (`<iq xmlns="w:sync:app:state" type="set"><sync><collection name version><patch>`). The
//! server numbers patches per collection: one built on the current version becomes the
//! next one; one built on an older version is refused with 409 and the patches the device
//! missed (whatsapp-rust applies them and rebuilds). A sync (`<collection name version?>`
//! without a patch) answers every patch after the device's version, each carrying its
//! version (the client checks `version == local + 1`; the patch MAC covers it). The other
//! companions of the account hear `<notification type="server_sync">` and sync.
//!
//! WhatsApp cannot read the patches. wamock can: it played the phone that shared the
//! account's app-state key (`keyshare.rs`), so it decrypts each mutation with wacore's own
//! decoder for the admin API (`GET /admin/accounts/{phone}/app-state`).
//!
//! A real phone also seeds `critical_block` with the account's settings; wamock seeds the
//! collection's first patch with `setting_pushName` (the account's push name, else its
//! number), so companions learn their push name as they would from a phone (whatsapp-rust
//! refuses to send presence without one).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use wacore::appstate::hash::{HashState, generate_patch_mac};
use wacore::appstate::{decode_record, encode_record, expand_app_state_keys};
use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Jid, Node};
use waproto::buffa::MessageField;
use waproto::whatsapp as wa;

use crate::iq::{Answer, IqContext, Refusal};
use crate::keyshare::AppStateKey;
use crate::nodes::{attr, bytes, child, unix_now};
use crate::state::{DeviceAddr, State};

/// The collection a phone seeds with the account's settings.
pub const SETTINGS_COLLECTION: &str = "critical_block";

/// An account's collections by name.
#[derive(Default)]
pub struct Collections {
    map: BTreeMap<String, Vec<StoredPatch>>,
}

/// One accepted patch: version `n` is the `n`-th of its collection.
struct StoredPatch {
    /// The `SyncdPatch` as served, its `version` set.
    bytes: Vec<u8>,
    mutations: Vec<MutationView>,
}

/// One decrypted mutation (`GET /admin/accounts/{phone}/app-state`).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MutationView {
    pub collection: String,
    /// The patch version that carried it.
    pub version: u64,
    /// The device that uploaded it (`None`: seeded by wamock playing the phone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<u16>,
    /// `set` or `remove`.
    pub operation: String,
    /// The first index element: `archive`, `markChatAsRead`, `deleteMessageForMe`, ...
    pub action: String,
    /// The whole index, e.g. `["archive", "5511...@s.whatsapp.net"]`.
    pub index: Vec<String>,
    /// The action's fields (the set sub-message of `SyncActionValue`), in camelCase.
    pub value: Value,
    /// `SyncActionValue.timestamp` (ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
    /// Why the mutation could not be decrypted, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What happened to an uploaded patch.
#[derive(Debug)]
pub enum Upload {
    /// Stored as this version.
    Accepted(u64),
    /// Built on an old version: the current version and the patches after the base.
    Conflict { current: u64, missed: Vec<Vec<u8>> },
}

impl Collections {
    /// The collection's current version (0: no patch yet).
    pub fn version(&self, name: &str) -> u64 {
        self.map.get(name).map_or(0, |p| p.len() as u64)
    }

    /// The patches after `version`, oldest first.
    pub fn since(&self, name: &str, version: u64) -> Vec<Vec<u8>> {
        let skip = usize::try_from(version).unwrap_or(usize::MAX);
        self.map
            .get(name)
            .map(|p| p.iter().skip(skip).map(|s| s.bytes.clone()).collect())
            .unwrap_or_default()
    }

    /// Stores a patch built on `base` if that is the current version.
    pub fn upload(
        &mut self,
        name: &str,
        base: u64,
        patch: &[u8],
        device: u16,
        key: &AppStateKey,
    ) -> Result<Upload, String> {
        let mut patch =
            waproto::codec::syncd_patch_decode(patch).map_err(|e| format!("bad patch: {e}"))?;
        let current = self.version(name);
        if base != current {
            return Ok(Upload::Conflict {
                current,
                missed: self.since(name, base),
            });
        }
        let version = current + 1;
        patch.version = MessageField::some(wa::SyncdVersion {
            version: Some(version),
        });
        let mutations = decode_mutations(name, version, Some(device), &patch, key);
        self.map
            .entry(name.to_string())
            .or_default()
            .push(StoredPatch {
                bytes: waproto::codec::syncd_patch_to_vec(&patch),
                mutations,
            });
        Ok(Upload::Accepted(version))
    }

    /// Seeds the settings collection with the phone's `setting_pushName` patch (once).
    pub fn seed_settings(&mut self, push_name: &str, key: &AppStateKey) {
        if self.version(SETTINGS_COLLECTION) > 0 {
            return;
        }
        let patch = push_name_patch(push_name, key);
        let mutations = decode_mutations(SETTINGS_COLLECTION, 1, None, &patch, key);
        self.map
            .entry(SETTINGS_COLLECTION.to_string())
            .or_default()
            .push(StoredPatch {
                bytes: waproto::codec::syncd_patch_to_vec(&patch),
                mutations,
            });
    }

    /// Every mutation, by collection name, then version.
    pub fn mutations(&self) -> Vec<MutationView> {
        self.map
            .values()
            .flat_map(|patches| patches.iter().flat_map(|p| p.mutations.iter().cloned()))
            .collect()
    }
}

/// The phone's genesis patch of `critical_block`: version 1, one `setting_pushName` SET,
/// with the snapshot and patch MACs a companion checks on an empty collection.
fn push_name_patch(push_name: &str, key: &AppStateKey) -> wa::SyncdPatch {
    let keys = expand_app_state_keys(&key.data);
    let index = serde_json::to_vec(&["setting_pushName"]).unwrap_or_default();
    let value = wa::SyncActionValue {
        push_name_setting: MessageField::some(wa::sync_action_value::PushNameSetting {
            name: Some(push_name.to_string()),
        }),
        timestamp: i64::try_from(unix_now() * 1000).ok(),
        ..Default::default()
    };
    let iv: [u8; 16] = rand::random();
    let (mutation, _) = encode_record(
        wa::syncd_mutation::SyncdOperation::SET,
        &index,
        &value,
        &keys,
        &key.id,
        &iv,
        1,
    );
    let mut hash = HashState::default();
    let (_, updated) = hash.update_hash(std::slice::from_ref(&mutation), |_, _| Ok(None));
    if let Err(e) = updated {
        tracing::warn!(error = %e, "hashing the push-name patch");
    }
    hash.version = 1;
    let mut patch = wa::SyncdPatch {
        version: MessageField::some(wa::SyncdVersion { version: Some(1) }),
        snapshot_mac: Some(hash.generate_snapshot_mac(SETTINGS_COLLECTION, &keys.snapshot_mac)),
        key_id: MessageField::some(wa::KeyId {
            id: Some(key.id.clone()),
        }),
        mutations: vec![mutation],
        ..Default::default()
    };
    patch.patch_mac = Some(generate_patch_mac(
        &patch,
        SETTINGS_COLLECTION,
        &keys.patch_mac,
        1,
    ));
    patch
}

/// Decrypts a patch's mutations with the account key, for the admin API.
fn decode_mutations(
    collection: &str,
    version: u64,
    device: Option<u16>,
    patch: &wa::SyncdPatch,
    key: &AppStateKey,
) -> Vec<MutationView> {
    let keys = expand_app_state_keys(&key.data);
    patch
        .mutations
        .iter()
        .map(|m| {
            let mut view = MutationView {
                collection: collection.to_string(),
                version,
                device,
                operation: String::new(),
                action: String::new(),
                index: Vec::new(),
                value: Value::Null,
                timestamp: None,
                error: None,
            };
            let op = m.operation.and_then(|o| o.as_known());
            let Some(op) = op else {
                view.error = Some("unknown operation".into());
                return view;
            };
            view.operation = match op {
                wa::syncd_mutation::SyncdOperation::SET => "set",
                wa::syncd_mutation::SyncdOperation::REMOVE => "remove",
            }
            .into();
            let key_id = m.record.key_id.id.clone().unwrap_or_default();
            if key_id != key.id {
                view.error = Some("encrypted with a key this account never shared".into());
                return view;
            }
            match decode_record(op, &m.record, &keys, &key_id, true) {
                Ok((mutation, _)) => {
                    view.action = mutation.index.first().cloned().unwrap_or_default();
                    view.index = mutation.index;
                    if let Some(v) = mutation.action_value {
                        view.timestamp = v.timestamp;
                        view.value = action_fields(&v);
                    }
                }
                Err(e) => view.error = Some(e.to_string()),
            }
            view
        })
        .collect()
}

/// The set sub-message of a `SyncActionValue` (e.g. `archiveChatAction`) as camelCase
/// JSON without empty fields; `{}` when none is set.
fn action_fields(value: &wa::SyncActionValue) -> Value {
    let Ok(Value::Object(mut map)) = serde_json::to_value(value).map(prune) else {
        return Value::Object(Default::default());
    };
    map.remove("timestamp");
    match map.into_iter().next() {
        Some((_, inner)) => inner,
        None => Value::Object(Default::default()),
    }
}

/// Drops nulls (and objects left empty by that), camelCases keys.
fn prune(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (camel(&k), prune(v)))
                .filter(|(_, v)| !matches!(v, Value::Object(m) if m.is_empty()))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(prune).collect()),
        other => other,
    }
}

fn camel(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The answer to a `w:sync:app:state` IQ: per collection, an upload's verdict or the
/// patches a sync asked for.
pub fn answer(ctx: &IqContext<'_>, iq: &Node) -> Answer {
    let device = ctx
        .device
        .ok_or_else(|| Refusal::new(401, "not-authorized"))?;
    let Some(sync) = child(iq, "sync") else {
        return Err(Refusal::new(400, "bad-request"));
    };
    let mut out = Vec::new();
    let mut changed = Vec::new();
    for c in sync.children().unwrap_or_default() {
        if c.tag != "collection" {
            continue;
        }
        let Some(name) = attr(c, "name") else {
            continue;
        };
        let node = match child(c, "patch") {
            Some(patch) => upload(ctx.state, device, &name, c, patch, &mut changed),
            None => fetch(ctx.state, device, &name, c),
        };
        out.push(node);
    }
    for (name, version) in changed {
        announce(ctx.state, device, &name, version);
    }
    Ok(vec![NodeBuilder::new("sync").children(out).build()])
}

fn version_attr(c: &Node) -> Option<u64> {
    attr(c, "version").and_then(|v| v.parse().ok())
}

fn collection_error(name: &str, code: u16, text: &str) -> Node {
    NodeBuilder::new("collection")
        .attr("name", name)
        .attr("type", "error")
        .children([NodeBuilder::new("error")
            .attr("code", code.to_string())
            .attr("text", text)
            .build()])
        .build()
}

fn patches_node(patches: Vec<Vec<u8>>) -> Node {
    NodeBuilder::new("patches")
        .children(
            patches
                .into_iter()
                .map(|p| NodeBuilder::new("patch").bytes(p).build()),
        )
        .build()
}

fn upload(
    state: &State,
    device: &DeviceAddr,
    name: &str,
    collection: &Node,
    patch: &Node,
    changed: &mut Vec<(String, u64)>,
) -> Node {
    let (Some(base), Some(patch)) = (version_attr(collection), bytes(patch)) else {
        return collection_error(name, 400, "bad-request");
    };
    let result = state.with_account(&device.phone, false, |account| {
        account
            .app_state
            .upload(name, base, patch, device.device, &account.app_state_key)
    });
    match result {
        None => collection_error(name, 404, "item-not-found"),
        Some(Err(e)) => {
            tracing::info!(collection = name, error = %e, "app-state patch refused");
            collection_error(name, 400, "bad-request")
        }
        Some(Ok(Upload::Accepted(version))) => {
            tracing::debug!(jid = %device.jid(), collection = name, version, "app-state patch stored");
            changed.push((name.to_string(), version));
            NodeBuilder::new("collection")
                .attr("name", name)
                .attr("version", version.to_string())
                .build()
        }
        Some(Ok(Upload::Conflict { current, missed })) => {
            tracing::debug!(jid = %device.jid(), collection = name, base, current, "app-state patch on an old version: 409");
            let mut children = vec![
                NodeBuilder::new("error")
                    .attr("code", "409")
                    .attr("text", "conflict")
                    .build(),
            ];
            if !missed.is_empty() {
                children.push(patches_node(missed));
            }
            NodeBuilder::new("collection")
                .attr("name", name)
                .attr("type", "error")
                .attr("version", current.to_string())
                .children(children)
                .build()
        }
    }
}

fn fetch(state: &State, device: &DeviceAddr, name: &str, collection: &Node) -> Node {
    let since = version_attr(collection).unwrap_or(0);
    let found = state.with_account(&device.phone, false, |account| {
        if name == SETTINGS_COLLECTION {
            let push_name = account
                .push_name
                .clone()
                .unwrap_or_else(|| account.phone.clone());
            account
                .app_state
                .seed_settings(&push_name, &account.app_state_key);
        }
        (
            account.app_state.version(name),
            account.app_state.since(name, since),
        )
    });
    let (current, patches) = found.unwrap_or_default();
    let mut b = NodeBuilder::new("collection")
        .attr("name", name)
        .attr("version", current.max(since).to_string());
    if !patches.is_empty() {
        b = b.children([patches_node(patches)]);
    }
    b.build()
}

/// `<notification type="server_sync">` to the account's other companions: they sync.
fn announce(state: &State, sender: &DeviceAddr, name: &str, version: u64) {
    for target in state.account_devices(&Jid::pn(&sender.phone)) {
        // The phone (a simulated user) holds no app-state key; it does not sync.
        if target == *sender || target.device == 0 {
            continue;
        }
        let notification = NodeBuilder::new("notification")
            .attr("from", wacore_binary::SERVER_JID)
            .attr("type", "server_sync")
            .attr("id", format!("{:X}", rand::random::<u64>()))
            .attr("t", unix_now().to_string())
            .children([NodeBuilder::new("collection")
                .attr("name", name)
                .attr("version", version.to_string())
                .build()])
            .build();
        state.deliver(&target, notification);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive_patch(key: &AppStateKey, archived: bool) -> Vec<u8> {
        let keys = expand_app_state_keys(&key.data);
        let index = serde_json::to_vec(&["archive", "5511999990001@s.whatsapp.net"]).unwrap();
        let value = wa::SyncActionValue {
            archive_chat_action: MessageField::some(wa::sync_action_value::ArchiveChatAction {
                archived: Some(archived),
                ..Default::default()
            }),
            timestamp: Some(1_700_000_000_000),
            ..Default::default()
        };
        let (mutation, _) = encode_record(
            wa::syncd_mutation::SyncdOperation::SET,
            &index,
            &value,
            &keys,
            &key.id,
            &[3; 16],
            3,
        );
        waproto::codec::syncd_patch_to_vec(&wa::SyncdPatch {
            mutations: vec![mutation],
            key_id: MessageField::some(wa::KeyId {
                id: Some(key.id.clone()),
            }),
            ..Default::default()
        })
    }

    #[test]
    fn patches_are_numbered_decoded_and_stale_bases_conflict() {
        let key = AppStateKey::generate();
        let mut c = Collections::default();
        let first = c
            .upload("regular_low", 0, &archive_patch(&key, true), 1, &key)
            .unwrap();
        assert!(matches!(first, Upload::Accepted(1)));
        let stale = c
            .upload("regular_low", 0, &archive_patch(&key, false), 2, &key)
            .unwrap();
        match stale {
            Upload::Conflict { current, missed } => {
                assert_eq!(current, 1);
                assert_eq!(missed.len(), 1);
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        let served = c.since("regular_low", 0);
        let patch = waproto::codec::syncd_patch_decode(&served[0]).unwrap();
        assert_eq!(patch.version.version, Some(1));

        let views = c.mutations();
        assert_eq!(views.len(), 1);
        assert_eq!(views[0].action, "archive");
        assert_eq!(views[0].operation, "set");
        assert_eq!(views[0].device, Some(1));
        assert_eq!(views[0].value, serde_json::json!({"archived": true}));
        assert_eq!(views[0].timestamp, Some(1_700_000_000_000));
        assert_eq!(
            views[0].index,
            vec!["archive", "5511999990001@s.whatsapp.net"]
        );
    }

    #[test]
    fn the_push_name_seed_passes_the_clients_genesis_checks() {
        let key = AppStateKey::generate();
        let mut c = Collections::default();
        c.seed_settings("Owner", &key);
        c.seed_settings("Other", &key);
        assert_eq!(c.version(SETTINGS_COLLECTION), 1);
        let patch =
            waproto::codec::syncd_patch_decode(&c.since(SETTINGS_COLLECTION, 0)[0]).expect("patch");
        let keys = expand_app_state_keys(&key.data);
        let mut state = HashState::default();
        let result = wacore::appstate::process_patch(
            &patch,
            &mut state,
            |_| Ok(std::sync::Arc::new(keys.clone())),
            |_| Ok(None),
            true,
            SETTINGS_COLLECTION,
        )
        .expect("the client's own checks accept it");
        assert_eq!(result.state.version, 1);
        assert!(!result.state.mac_mismatch_fatal, "snapshot MAC diverged");
        assert_eq!(result.mutations[0].index, vec!["setting_pushName"]);
        assert_eq!(c.mutations()[0].value, serde_json::json!({"name": "Owner"}));
    }
}
