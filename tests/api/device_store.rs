//! whatsapp-rust's storage `Backend` on our tables, checked against its reference
//! (`wacore::store::InMemoryBackend`): one sequence of operations through every method of the
//! trait must read back the same on the reference, on SQLite and on Postgres. Then what only a
//! database has: sessions never see each other's keys, and deleting a session (or logging it
//! out) removes its rows.

use std::{collections::HashMap, sync::Arc};

use bytes::Bytes;
use onwapp::store::{self, ConnectOptions, NewSession, Store, device::TABLES};
use serde::Serialize;
use uuid::Uuid;
use wacore::{
    appstate::{hash::HashState, processor::AppStateMutationMAC},
    store::{
        CachedNoiseCert, CachedServerCertChain, Device, InMemoryBackend,
        traits::{
            AppStateSyncKey, Backend, DeviceInfo, DeviceListRecord, LidPnMappingEntry,
            MsgSecretEntry, PendingInboundKey, PendingInboundRow, TcTokenEntry,
        },
    },
};

use crate::helpers::PgDatabase;

type Backends = Vec<(&'static str, Arc<dyn Backend>)>;

/// Runs `$call` on every backend (`$b` names it), fails on any error, asserts every answer
/// equals the reference's (the first backend) and returns it.
macro_rules! same {
    ($bs:expr, |$b:ident| $call:expr) => {{
        let mut answers = Vec::new();
        for (name, $b) in $bs.iter() {
            match $call {
                Ok(v) => answers.push((*name, v)),
                Err(e) => panic!("{name}: `{}` failed: {e:?}", stringify!($call)),
            }
        }
        let (oracle, want) = &answers[0];
        for (name, got) in &answers[1..] {
            assert_eq!(
                got,
                want,
                "{name} differs from {oracle} on `{}`",
                stringify!($call)
            );
        }
        answers.swap_remove(0).1
    }};
}

fn json<T: Serialize + ?Sized>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).expect("serializable")
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

fn a(s: &str) -> Arc<str> {
    Arc::from(s)
}

fn bytes(v: &[u8]) -> Option<Vec<u8>> {
    Some(v.to_vec())
}

async fn sqlite_store(dir: &tempfile::TempDir) -> (Arc<dyn Store>, String) {
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let s = store::connect(&ConnectOptions {
        url: url.clone(),
        max_connections: 4,
    })
    .await
    .expect("sqlite store");
    // Every device write fenced, as the server runs it.
    crate::helpers::hold_every_shard(&*s).await;
    (s, url)
}

async fn pg_store(pg: &PgDatabase) -> Arc<dyn Store> {
    let s = store::connect(&ConnectOptions {
        url: pg.url.clone(),
        max_connections: 4,
    })
    .await
    .expect("postgres store");
    // Every device write fenced, as the server runs it.
    crate::helpers::hold_every_shard(&*s).await;
    s
}

async fn new_session(s: &dyn Store, name: &str) -> Uuid {
    let key = format!("key-{name}-0123456789");
    s.create_session(NewSession {
        name: name.into(),
        api_key_hash: onwapp::auth::hash_key(&key),
        api_key: key,
    })
    .await
    .expect("create session")
    .id
}

#[tokio::test]
async fn device_store_matches_in_memory_backend() {
    let dir = tempfile::tempdir().unwrap();
    let (lite, _) = sqlite_store(&dir).await;
    let mut bs: Backends = vec![
        ("memory", Arc::new(InMemoryBackend::new())),
        (
            "sqlite",
            lite.device_backend(new_session(&*lite, "s").await),
        ),
    ];
    let pg = PgDatabase::create().await;
    if let Some(pg) = &pg {
        let s = pg_store(pg).await;
        bs.push(("postgres", s.device_backend(new_session(&*s, "s").await)));
    }
    signal(&bs).await;
    appsync(&bs).await;
    protocol(&bs).await;
    tokens_and_messages(&bs).await;
    secrets(&bs).await;
    device(&bs).await;
}

async fn signal(bs: &Backends) {
    // Identities, one by one and in batches (the last write of a key wins).
    assert_eq!(same!(bs, |b| b.load_identity("100:1@lid").await), None);
    same!(bs, |b| b.put_identity("100:1@lid", [1; 32]).await);
    let batch = [
        (a("100:2@lid"), [2; 32]),
        (a("100:1@lid"), [3; 32]),
        (a("200@lid"), [4; 32]),
        (a("100:2@lid"), [5; 32]),
    ];
    same!(bs, |b| b.put_identities_batch(&batch).await);
    same!(bs, |b| b.put_identities_batch(&[]).await);
    assert_eq!(
        same!(bs, |b| b.load_identity("100:1@lid").await),
        Some([3; 32])
    );
    assert_eq!(
        same!(bs, |b| b.load_identity("100:2@lid").await),
        Some([5; 32])
    );
    same!(bs, |b| b.delete_identity("200@lid").await);
    same!(bs, |b| b.delete_identity("never@lid").await);
    assert_eq!(same!(bs, |b| b.load_identity("200@lid").await), None);

    // Signal sessions.
    let get = |b: &Arc<dyn Backend>, addr: &'static str| {
        let b = b.clone();
        async move { b.get_session(addr).await.map(|s| s.map(|s| s.to_vec())) }
    };
    assert_eq!(same!(bs, |b| get(b, "555@s.whatsapp.net").await), None);
    assert!(!same!(bs, |b| b.has_session("555@s.whatsapp.net").await));
    same!(bs, |b| b.put_session("555@s.whatsapp.net", b"s1").await);
    let batch = [
        (a("555:3@s.whatsapp.net"), Bytes::from_static(b"s2")),
        (a("555@s.whatsapp.net"), Bytes::from_static(b"s3")),
        (a("777@s.whatsapp.net"), Bytes::from_static(b"s4")),
        (a("777@s.whatsapp.net"), Bytes::from_static(b"s5")),
    ];
    same!(bs, |b| b.put_sessions_batch(&batch).await);
    assert_eq!(
        same!(bs, |b| get(b, "555@s.whatsapp.net").await),
        bytes(b"s3")
    );
    assert_eq!(
        same!(bs, |b| get(b, "777@s.whatsapp.net").await),
        bytes(b"s5")
    );
    assert!(same!(bs, |b| b.has_session("555:3@s.whatsapp.net").await));
    same!(bs, |b| b.delete_session("777@s.whatsapp.net").await);
    assert!(!same!(bs, |b| b.has_session("777@s.whatsapp.net").await));

    // Signal state of a user: sessions or identities of any device, exact user only.
    same!(bs, |b| b.put_identity("a_b@lid", [6; 32]).await);
    for (user, has) in [
        ("100", true),
        ("555", true),
        ("777", false),
        ("10", false),
        ("1000", false),
        ("55", false),
        ("a_b", true),
        ("a%b", false),
        ("aXb", false),
        ("A_B", false),
        ("", false),
    ] {
        assert_eq!(
            same!(bs, |b| b.has_signal_state_for_user(user).await),
            has,
            "{user}"
        );
    }

    // Pre-keys: batches, order and duplicates of a batch read, the uploaded mark that never
    // brings a removed key back, the largest id, ids beyond i32.
    assert_eq!(same!(bs, |b| b.get_max_prekey_id().await), 0);
    assert_eq!(same!(bs, |b| b.load_prekey(5).await), None);
    same!(bs, |b| b.store_prekey(5, b"k5", false).await);
    let keys: Vec<(u32, Bytes)> = (1..=3)
        .map(|i| (i, Bytes::from(vec![i as u8; 4])))
        .chain([(5, Bytes::from_static(b"k5b"))])
        .collect();
    same!(bs, |b| b.store_prekeys_batch(&keys, true).await);
    assert_eq!(
        same!(bs, |b| b.load_prekey(5).await),
        Some(Bytes::from_static(b"k5b"))
    );
    let got = same!(bs, |b| b.load_prekeys_batch(&[3, 9, 1, 3]).await);
    assert_eq!(got.iter().map(|k| k.0).collect::<Vec<_>>(), [3, 1, 3]);
    same!(bs, |b| b.mark_prekeys_uploaded(&[1, 2, 77]).await);
    same!(bs, |b| b.remove_prekey(2).await);
    same!(bs, |b| b.mark_prekeys_uploaded(&[2]).await);
    same!(bs, |b| b.mark_prekeys_uploaded(&[]).await);
    assert_eq!(same!(bs, |b| b.load_prekey(2).await), None);
    assert_eq!(same!(bs, |b| b.get_max_prekey_id().await), 5);
    same!(bs, |b| b.store_prekey(u32::MAX, b"max", false).await);
    assert_eq!(same!(bs, |b| b.get_max_prekey_id().await), u32::MAX);
    same!(bs, |b| b.remove_prekey(u32::MAX).await);
    // More keys than one statement carries.
    let many: Vec<(u32, Bytes)> = (1000..2200u32)
        .map(|i| (i, Bytes::from(i.to_be_bytes().to_vec())))
        .collect();
    same!(bs, |b| b.store_prekeys_batch(&many, false).await);
    let ids: Vec<u32> = (990..2210).rev().collect();
    assert_eq!(same!(bs, |b| b.load_prekeys_batch(&ids).await).len(), 1200);
    same!(bs, |b| b.mark_prekeys_uploaded(&ids).await);
    assert_eq!(same!(bs, |b| b.get_max_prekey_id().await), 2199);

    // Signed pre-keys.
    assert_eq!(same!(bs, |b| b.load_signed_prekey(1).await), None);
    same!(bs, |b| b.store_signed_prekey(1, b"sp1").await);
    same!(bs, |b| b.store_signed_prekey(2, b"sp2").await);
    same!(bs, |b| b.store_signed_prekey(1, b"sp1b").await);
    assert_eq!(same!(bs, |b| b.load_signed_prekey(1).await), bytes(b"sp1b"));
    let all = same!(bs, |b| b.load_all_signed_prekeys().await.map(sorted));
    assert_eq!(all, [(1, b"sp1b".to_vec()), (2, b"sp2".to_vec())]);
    same!(bs, |b| b.remove_signed_prekey(2).await);
    same!(bs, |b| b.load_all_signed_prekeys().await.map(sorted));

    // Sender keys.
    assert_eq!(same!(bs, |b| b.get_sender_key("g1::u1").await), None);
    same!(bs, |b| b.put_sender_key("g1::u1", b"sk1").await);
    let batch = [
        (a("g1::u2"), Bytes::from_static(b"sk2")),
        (a("g1::u1"), Bytes::from_static(b"sk3")),
    ];
    same!(bs, |b| b.put_sender_keys_batch(&batch).await);
    assert_eq!(
        same!(bs, |b| b.get_sender_key("g1::u1").await),
        bytes(b"sk3")
    );
    same!(bs, |b| b.delete_sender_key("g1::u2").await);
    assert_eq!(same!(bs, |b| b.get_sender_key("g1::u2").await), None);
}

fn mac(index: u8, value: u8) -> AppStateMutationMAC {
    AppStateMutationMAC {
        index_mac: vec![index; 32],
        value_mac: vec![value; 32],
    }
}

async fn appsync(bs: &Backends) {
    let key = |n: u8| AppStateSyncKey {
        key_data: vec![n; 32],
        fingerprint: vec![n, n],
        timestamp: 1_700_000_000 + i64::from(n),
    };
    assert!(same!(bs, |b| b.get_sync_key(b"k1").await.map(|k| json(&k))).is_null());
    assert_eq!(same!(bs, |b| b.get_latest_sync_key_id().await), None);
    same!(bs, |b| b.set_sync_key(b"k1", key(1)).await);
    same!(bs, |b| b.set_sync_key(b"k2", key(2)).await);
    assert_eq!(
        same!(bs, |b| b.get_latest_sync_key_id().await),
        bytes(b"k2")
    );
    same!(bs, |b| b.set_sync_key(b"k1", key(3)).await);
    assert_eq!(
        same!(bs, |b| b.get_latest_sync_key_id().await),
        bytes(b"k1")
    );
    let k1 = same!(bs, |b| b.get_sync_key(b"k1").await.map(|k| json(&k)));
    assert_eq!(k1, json(&key(3)));

    // Collection versions: the default, then a full state.
    same!(bs, |b| b.get_version("regular").await.map(|v| json(&v)));
    let mut state = HashState {
        version: 7,
        hash: [9; 128],
        mac_mismatch_fatal: true,
        ..HashState::default()
    };
    state.index_value_map.insert("idx".into(), vec![1, 2, 3]);
    same!(bs, |b| b.set_version("regular", state.clone()).await);
    let got = same!(bs, |b| b.get_version("regular").await.map(|v| json(&v)));
    assert_eq!(got, json(&state));

    // Mutation MACs per collection.
    let idx = |i: u8| [i; 32];
    same!(bs, |b| b
        .put_mutation_macs("regular", 3, &[mac(1, 10), mac(2, 20), mac(1, 11)])
        .await);
    same!(bs, |b| b
        .put_mutation_macs("critical_block", 4, &[mac(1, 30)])
        .await);
    same!(bs, |b| b.put_mutation_macs("regular", 5, &[]).await);
    assert_eq!(
        same!(bs, |b| b.get_mutation_mac("regular", &idx(1)).await),
        Some(vec![11; 32])
    );
    assert_eq!(
        same!(bs, |b| b.get_mutation_mac("regular", &[1]).await),
        None
    );
    let got = same!(bs, |b| b
        .get_mutation_macs("regular", &[idx(1), idx(2), idx(9), idx(1)])
        .await);
    assert_eq!(got.len(), 2);
    same!(bs, |b| b
        .delete_mutation_macs("regular", &[vec![2; 32], vec![8; 32]])
        .await);
    same!(bs, |b| b.delete_mutation_macs("regular", &[]).await);
    assert_eq!(
        same!(bs, |b| b.get_mutation_mac("regular", &idx(2)).await),
        None
    );
    same!(bs, |b| b.clear_mutation_macs("critical_block").await);
    assert_eq!(
        same!(bs, |b| b.get_mutation_mac("critical_block", &idx(1)).await),
        None
    );
    assert!(same!(bs, |b| b.get_mutation_mac("regular", &idx(1)).await).is_some());
    // More MACs than one statement carries.
    let many: Vec<AppStateMutationMAC> = (0..1300u32)
        .map(|i| AppStateMutationMAC {
            index_mac: [i.to_be_bytes(); 8].concat(),
            value_mac: i.to_le_bytes().to_vec(),
        })
        .collect();
    same!(bs, |b| b.put_mutation_macs("regular_low", 9, &many).await);
    let wanted: Vec<[u8; 32]> = many
        .iter()
        .filter_map(|m| m.index_mac.as_slice().try_into().ok())
        .collect();
    let got: HashMap<[u8; 32], Vec<u8>> =
        same!(bs, |b| b.get_mutation_macs("regular_low", &wanted).await);
    assert_eq!(got.len(), 1300);
    let doomed: Vec<Vec<u8>> = many.iter().take(700).map(|m| m.index_mac.clone()).collect();
    same!(bs, |b| b.delete_mutation_macs("regular_low", &doomed).await);
    assert_eq!(
        same!(bs, |b| b.get_mutation_macs("regular_low", &wanted).await).len(),
        600
    );
}

fn lid(lid: &str, phone: &str, at: i64) -> LidPnMappingEntry {
    LidPnMappingEntry {
        lid: lid.into(),
        phone_number: phone.into(),
        created_at: at,
        updated_at: at + 1,
        learning_source: "usync".into(),
    }
}

fn device_list(user: &str, n: u32, raw_id: Option<u32>) -> DeviceListRecord {
    DeviceListRecord {
        user: user.into(),
        devices: vec![
            DeviceInfo::new(0, None),
            DeviceInfo::new(n, Some(n + 1)).with_hosting(true),
        ],
        timestamp: 1_700_000_000 + i64::from(n),
        phash: n.is_multiple_of(2).then(|| format!("2:{n}")),
        raw_id,
    }
}

async fn protocol(bs: &Backends) {
    // Sender-key distribution per device.
    assert!(same!(bs, |b| b.get_sender_key_devices("g1").await).is_empty());
    same!(bs, |b| b
        .set_sender_key_status("g1", &[("d1", true), ("d2", false), ("d1", false)])
        .await);
    same!(bs, |b| b
        .set_sender_key_status("g2", &[("d2", true), ("d3", true)])
        .await);
    same!(bs, |b| b.set_sender_key_status("g2", &[]).await);
    let g1 = same!(bs, |b| b.get_sender_key_devices("g1").await.map(sorted));
    assert_eq!(g1, [("d1".to_string(), false), ("d2".to_string(), false)]);
    same!(bs, |b| b.delete_sender_key_device_rows(&["d2", "d9"]).await);
    same!(bs, |b| b.delete_sender_key_device_rows(&[]).await);
    same!(bs, |b| b.get_sender_key_devices("g2").await.map(sorted));
    same!(bs, |b| b.clear_sender_key_devices("g1").await);
    assert!(same!(bs, |b| b.get_sender_key_devices("g1").await).is_empty());
    same!(bs, |b| b.get_sender_key_devices("g2").await.map(sorted));
    same!(bs, |b| b.clear_all_sender_key_devices().await);
    assert!(same!(bs, |b| b.get_sender_key_devices("g2").await).is_empty());

    // LID <-> phone number mappings: the latest write for a phone number wins.
    let by_lid = |v: Vec<LidPnMappingEntry>| {
        let mut v: Vec<_> = v.iter().map(json).collect();
        v.sort_by_key(|e| e["lid"].as_str().map(String::from));
        v
    };
    assert!(same!(bs, |b| b.get_lid_mapping("L1").await.map(|m| json(&m))).is_null());
    assert!(same!(bs, |b| b.get_pn_mapping("P1").await.map(|m| json(&m))).is_null());
    same!(bs, |b| b.put_lid_mapping(&lid("L1", "P1", 10)).await);
    let batch = [
        lid("L2", "P2", 20),
        lid("L3", "P1", 30),
        lid("L2", "P3", 40),
    ];
    same!(bs, |b| b.put_lid_mappings(&batch).await);
    same!(bs, |b| b.put_lid_mappings(&[]).await);
    let l2 = same!(bs, |b| b.get_lid_mapping("L2").await.map(|m| json(&m)));
    assert_eq!(l2, json(&lid("L2", "P3", 40)));
    let p1 = same!(bs, |b| b.get_pn_mapping("P1").await.map(|m| json(&m)));
    assert_eq!(p1["lid"], "L3");
    assert!(same!(bs, |b| b.get_pn_mapping("P2").await.map(|m| json(&m))).is_null());
    same!(bs, |b| b.get_pn_mapping("P3").await.map(|m| json(&m)));
    same!(bs, |b| b.put_lid_mapping(&lid("L1", "P1", 50)).await);
    let p1 = same!(bs, |b| b.get_pn_mapping("P1").await.map(|m| json(&m)));
    assert_eq!(p1, json(&lid("L1", "P1", 50)));
    let all = same!(bs, |b| b.get_all_lid_mappings().await.map(by_lid));
    assert_eq!(all.len(), 3);
    // More mappings than one statement carries, some repeated.
    let many: Vec<LidPnMappingEntry> = (0..1100)
        .map(|i| lid(&format!("M{}", i % 900), &format!("Q{i}"), i))
        .collect();
    same!(bs, |b| b.put_lid_mappings(&many).await);
    assert_eq!(
        same!(bs, |b| b.get_all_lid_mappings().await.map(by_lid)).len(),
        903
    );
    same!(bs, |b| b.get_pn_mapping("Q1050").await.map(|m| json(&m)));
    assert!(same!(bs, |b| b.get_pn_mapping("Q150").await.map(|m| json(&m))).is_null());

    // Base keys of retried messages.
    assert!(!same!(bs, |b| b.has_same_base_key("a1", "m1", b"bk").await));
    same!(bs, |b| b.save_base_key("a1", "m1", b"bk").await);
    assert!(same!(bs, |b| b.has_same_base_key("a1", "m1", b"bk").await));
    assert!(!same!(bs, |b| b
        .has_same_base_key("a1", "m1", b"other")
        .await));
    assert!(!same!(bs, |b| b.has_same_base_key("a1", "m2", b"bk").await));
    same!(bs, |b| b.save_base_key("a1", "m1", b"bk2").await);
    assert!(same!(bs, |b| b.has_same_base_key("a1", "m1", b"bk2").await));
    same!(bs, |b| b.delete_base_key("a1", "m1").await);
    assert!(!same!(bs, |b| b
        .has_same_base_key("a1", "m1", b"bk2")
        .await));

    // Device lists.
    let devices = |b: &Arc<dyn Backend>, user: &'static str| {
        let b = b.clone();
        async move { b.get_devices(user).await.map(|r| json(&r)) }
    };
    assert!(same!(bs, |b| devices(b, "u1").await).is_null());
    same!(bs, |b| b
        .update_device_list(device_list("u1", 1, None))
        .await);
    let lists = vec![
        device_list("u2", 2, Some(7)),
        device_list("u1", 3, Some(u32::MAX)),
        device_list("u2", 4, None),
    ];
    same!(bs, |b| b.update_device_lists(lists.clone()).await);
    same!(bs, |b| b.update_device_lists(Vec::new()).await);
    assert_eq!(
        same!(bs, |b| devices(b, "u1").await),
        json(&device_list("u1", 3, Some(u32::MAX)))
    );
    assert_eq!(
        same!(bs, |b| devices(b, "u2").await),
        json(&device_list("u2", 4, None))
    );
    same!(bs, |b| b.delete_devices("u1").await);
    assert!(same!(bs, |b| devices(b, "u1").await).is_null());

    // Group metadata.
    assert_eq!(same!(bs, |b| b.get_group_metadata("g@g.us").await), None);
    same!(bs, |b| b.put_group_metadata("g@g.us", b"v1").await);
    same!(bs, |b| b.put_group_metadata("g@g.us", b"v2").await);
    assert_eq!(
        same!(bs, |b| b.get_group_metadata("g@g.us").await),
        bytes(b"v2")
    );
    same!(bs, |b| b.delete_group_metadata("g@g.us").await);
    assert_eq!(same!(bs, |b| b.get_group_metadata("g@g.us").await), None);
}

async fn tokens_and_messages(bs: &Backends) {
    let tc = |b: &Arc<dyn Backend>, jid: &'static str| {
        let b = b.clone();
        async move { b.get_tc_token(jid).await.map(|t| json(&t)) }
    };
    let entry = |token: &[u8], token_timestamp, sender_timestamp| TcTokenEntry {
        token: token.to_vec(),
        token_timestamp,
        sender_timestamp,
    };
    assert!(same!(bs, |b| tc(b, "j1").await).is_null());
    same!(bs, |b| b.put_tc_token("j1", &entry(b"t1", 100, None)).await);
    same!(bs, |b| b
        .put_tc_token("j2", &entry(b"", 50, Some(60)))
        .await);
    // The sender bucket only moves forward; a new contact gets a token-less row.
    same!(bs, |b| b.touch_tc_token_sender_timestamp("j1", 200).await);
    same!(bs, |b| b.touch_tc_token_sender_timestamp("j1", 150).await);
    same!(bs, |b| b.touch_tc_token_sender_timestamp("j3", 300).await);
    assert_eq!(
        same!(bs, |b| tc(b, "j1").await),
        json(&entry(b"t1", 100, Some(200)))
    );
    assert_eq!(
        same!(bs, |b| tc(b, "j3").await),
        json(&entry(b"", 300, Some(300)))
    );
    // Received tokens: newer (or equal) wins, a placeholder never blocks, sender kept.
    same!(bs, |b| b.store_received_tc_token("j3", b"t3", 250).await);
    same!(bs, |b| b.store_received_tc_token("j1", b"old", 90).await);
    same!(bs, |b| b.store_received_tc_token("j1", b"t1b", 100).await);
    same!(bs, |b| b.store_received_tc_token("j4", b"t4", 10).await);
    assert_eq!(
        same!(bs, |b| tc(b, "j3").await),
        json(&entry(b"t3", 250, Some(300)))
    );
    assert_eq!(
        same!(bs, |b| tc(b, "j1").await),
        json(&entry(b"t1b", 100, Some(200)))
    );
    assert_eq!(
        same!(bs, |b| tc(b, "j4").await),
        json(&entry(b"t4", 10, None))
    );
    let jids = same!(bs, |b| b.get_all_tc_token_jids().await.map(sorted));
    assert_eq!(jids, ["j1", "j2", "j3", "j4"]);
    // Deleted only when both windows are stale: j2 (no token, old sender), j4 (old token).
    assert_eq!(same!(bs, |b| b.delete_expired_tc_tokens(100, 250).await), 2);
    same!(bs, |b| b.delete_tc_token("j1").await);
    assert_eq!(
        same!(bs, |b| b.get_all_tc_token_jids().await.map(sorted)),
        ["j3"]
    );

    // Sent messages, taken once.
    let now = wacore::time::now_secs();
    same!(bs, |b| b.store_sent_message("c1", "m1", b"p1").await);
    same!(bs, |b| b.store_sent_message("c1", "m2", b"p2").await);
    same!(bs, |b| b.store_sent_message("c1", "m1", b"p1b").await);
    assert_eq!(
        same!(bs, |b| b.take_sent_message("c1", "m1").await),
        bytes(b"p1b")
    );
    assert_eq!(same!(bs, |b| b.take_sent_message("c1", "m1").await), None);
    assert_eq!(same!(bs, |b| b.take_sent_message("c2", "m2").await), None);
    assert_eq!(
        same!(bs, |b| b.delete_expired_sent_messages(now - 3600).await),
        0
    );
    assert_eq!(
        same!(bs, |b| b.delete_expired_sent_messages(now + 3600).await),
        1
    );
    assert_eq!(same!(bs, |b| b.take_sent_message("c1", "m2").await), None);

    // The pending inbound buffer.
    let row = |id: &'static str, message: &'static [u8]| PendingInboundRow {
        chat: "c@s.whatsapp.net",
        sender: "u@s.whatsapp.net",
        id,
        message,
    };
    let key = |id: &'static str| PendingInboundKey {
        chat: "c@s.whatsapp.net",
        sender: "u@s.whatsapp.net",
        id,
    };
    assert_eq!(
        same!(bs, |b| b
            .get_pending_inbound("c@s.whatsapp.net", "u@s.whatsapp.net", "i1")
            .await),
        None
    );
    same!(bs, |b| b
        .store_pending_inbound("c@s.whatsapp.net", "u@s.whatsapp.net", "i1", b"m1")
        .await);
    let rows = [
        row("i2", b"m2"),
        row("i3", b"m3"),
        row("i2", b"m2b"),
        row("i1", b"m1b"),
    ];
    same!(bs, |b| b.store_pending_inbound_batch(&rows).await);
    same!(bs, |b| b.store_pending_inbound_batch(&[]).await);
    for (id, want) in [("i1", &b"m1b"[..]), ("i2", b"m2b"), ("i3", b"m3")] {
        let got = same!(bs, |b| b
            .get_pending_inbound("c@s.whatsapp.net", "u@s.whatsapp.net", id)
            .await);
        assert_eq!(got.as_deref(), Some(want), "{id}");
    }
    assert_eq!(
        same!(bs, |b| b
            .get_pending_inbound("c@s.whatsapp.net", "x@s.whatsapp.net", "i1")
            .await),
        None
    );
    same!(bs, |b| b
        .delete_pending_inbound("c@s.whatsapp.net", "u@s.whatsapp.net", "i1")
        .await);
    same!(bs, |b| b
        .delete_pending_inbound_batch(&[key("i2"), key("i9")])
        .await);
    same!(bs, |b| b.delete_pending_inbound_batch(&[]).await);
    assert_eq!(
        same!(bs, |b| b
            .get_pending_inbound("c@s.whatsapp.net", "u@s.whatsapp.net", "i2")
            .await),
        None
    );
    assert_eq!(
        same!(bs, |b| b.delete_expired_pending_inbound(now - 3600).await),
        0
    );
    assert_eq!(
        same!(bs, |b| b.delete_expired_pending_inbound(now + 3600).await),
        1
    );
}

fn secret(msg_id: &str, s: u8, expires_at: i64, message_ts: i64) -> MsgSecretEntry {
    MsgSecretEntry {
        chat: a("c@s.whatsapp.net"),
        sender: a("u@s.whatsapp.net"),
        msg_id: a(msg_id),
        secret: [s; 32],
        expires_at,
        message_ts,
    }
}

async fn secrets(bs: &Backends) {
    let (c, u) = ("c@s.whatsapp.net", "u@s.whatsapp.net");
    assert_eq!(same!(bs, |b| b.get_msg_secret(c, u, "m1").await), None);
    same!(bs, |b| b.put_msg_secret(c, u, "m1", &[1; 32]).await);
    let batch = vec![
        secret("m2", 2, 100, 5),
        secret("m3", 3, 200, 0),
        secret("m2", 4, 150, 0),
    ];
    assert_eq!(same!(bs, |b| b.put_msg_secrets(batch.clone()).await), 3);
    assert_eq!(same!(bs, |b| b.put_msg_secrets(Vec::new()).await), 0);
    let m2 = same!(bs, |b| b.get_msg_secret_with_ts(c, u, "m2").await);
    assert_eq!(m2, Some((vec![4; 32], 5)));
    // 0 ("never") wins over a deadline, later deadlines win, a known parent time is kept.
    same!(bs, |b| b.put_msg_secrets(vec![secret("m3", 5, 0, 9)]).await);
    same!(bs, |b| b
        .put_msg_secrets(vec![secret("m1", 6, 50, 1)])
        .await);
    assert_eq!(
        same!(bs, |b| b.get_msg_secret_with_ts(c, u, "m1").await),
        Some((vec![6; 32], 1))
    );
    assert_eq!(
        same!(bs, |b| b.get_msg_secret_with_ts(c, "other", "m1").await),
        None
    );
    assert_eq!(same!(bs, |b| b.delete_expired_msg_secrets(149).await), 0);
    assert_eq!(same!(bs, |b| b.delete_expired_msg_secrets(150).await), 1);
    assert_eq!(same!(bs, |b| b.get_msg_secret(c, u, "m2").await), None);
    assert_eq!(
        same!(bs, |b| b.get_msg_secret(c, u, "m3").await),
        Some(vec![5; 32])
    );
    assert_eq!(
        same!(bs, |b| b.get_msg_secret(c, u, "m1").await),
        Some(vec![6; 32])
    );
    // More secrets than one statement carries, repeated across the batch.
    let many: Vec<MsgSecretEntry> = (0..1200)
        .map(|i| secret(&format!("h{}", i % 800), (i % 251) as u8, 1000 + i, i))
        .collect();
    assert_eq!(same!(bs, |b| b.put_msg_secrets(many.clone()).await), 1200);
    for id in ["h0", "h399", "h400", "h799"] {
        same!(bs, |b| b.get_msg_secret_with_ts(c, u, id).await);
    }
    assert_eq!(same!(bs, |b| b.delete_expired_msg_secrets(1399).await), 0);
    assert_eq!(same!(bs, |b| b.delete_expired_msg_secrets(1599).await), 200);
}

/// A device that differs from a fresh one in every field the stores keep.
fn paired_device() -> Device {
    let mut d = Device::new();
    d.registration_id = 4242;
    d.push_name = "Tester".into();
    d.app_version_last_fetched_ms = 1_700_000_000_123;
    d.edge_routing_info = Some(vec![1, 2, 3]);
    d.props_hash = Some("hash".into());
    d.next_pre_key_id = 812;
    d.first_unupload_pre_key_id = 800;
    d.server_has_prekeys = true;
    d.nct_salt = Some(vec![7; 16]);
    let cert = |k| CachedNoiseCert {
        key: [k; 32],
        not_before: 1,
        not_after: 2_000_000_000,
    };
    d.server_cert_chain = Some(CachedServerCertChain {
        intermediate: cert(1),
        leaf: cert(2),
    });
    d.login_counter = 3;
    d.lid_migrated = true;
    d.last_signed_pre_key_rotation_ms = 1_700_000_000_000;
    d.read_receipts_disabled = true;
    let jid = |user: &str, server: &str, device: u16| serde_json::json!({"user": user, "server": server, "agent": 0, "device": device, "integrator": 0});
    let mut v = json(&d);
    v["pn"] = jid("5511987650001", "s.whatsapp.net", 12);
    v["lid"] = jid("100000012345678", "lid", 12);
    let mut d: Device = serde_json::from_value(v).expect("device from json");
    // serde skips the device properties; give them their start-up value, as a client has.
    d.device_props = Arc::new(wacore::store::device::DEVICE_PROPS.clone());
    d
}

async fn device(bs: &Backends) {
    let loaded = |b: &Arc<dyn Backend>| {
        let b = b.clone();
        async move {
            b.load()
                .await
                .map(|d| d.map(|d| (json(&d), json(&*d.device_props))))
        }
    };
    assert!(!same!(bs, |b| b.exists().await));
    assert_eq!(same!(bs, |b| loaded(b).await), None);
    // Each store makes its own fresh keys: only that a device now exists must agree.
    assert_eq!(same!(bs, |b| b.create().await), 1);
    assert!(same!(bs, |b| b.exists().await));
    assert!(same!(bs, |b| b.load().await.map(|d| d.is_some())));
    let d = paired_device();
    same!(bs, |b| b.save(&d).await);
    let got = same!(bs, |b| loaded(b).await).expect("saved device");
    assert_eq!(got.0, json(&d));
    assert_eq!(got.0["pn"]["user"], "5511987650001");
    // Creating again keeps the saved device.
    assert_eq!(same!(bs, |b| b.create().await), 2);
    assert_eq!(same!(bs, |b| loaded(b).await).map(|g| g.0), Some(json(&d)));
    same!(bs, |b| b.snapshot_db("after-save", Some(b"x")).await);
    for (name, b) in &bs[1..] {
        assert_eq!(b.resource_report().await.memory_bytes, Some(0), "{name}");
    }
}

/// Direct reads of the tables, to see rows the trait cannot show.
enum Raw {
    Lite(sqlx::SqlitePool),
    Pg(sqlx::PgPool),
}

impl Raw {
    async fn rows(&self, table: &str, session: Uuid) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE session_id = $1");
        match self {
            Raw::Lite(p) => sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
                .bind(session)
                .fetch_one(p)
                .await
                .expect("count"),
            Raw::Pg(p) => sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
                .bind(session)
                .fetch_one(p)
                .await
                .expect("count"),
        }
    }

    /// Rows of the session in every device-store table.
    async fn all_rows(&self, session: Uuid) -> Vec<(&'static str, i64)> {
        let mut out = Vec::new();
        for t in TABLES {
            out.push((*t, self.rows(t, session).await));
        }
        out
    }
}

/// One row in every table, the values marked with `tag`.
async fn fill(b: &dyn Backend, tag: u8) {
    let t = [tag; 32];
    b.put_identity("100@lid", t).await.unwrap();
    b.put_session("100@lid", &t).await.unwrap();
    b.store_prekey(1, &t, false).await.unwrap();
    b.store_signed_prekey(1, &t).await.unwrap();
    b.put_sender_key("g::100", &t).await.unwrap();
    b.set_sync_key(
        b"k",
        AppStateSyncKey {
            key_data: t.to_vec(),
            fingerprint: vec![tag],
            timestamp: 1,
        },
    )
    .await
    .unwrap();
    let state = HashState {
        version: u64::from(tag),
        ..HashState::default()
    };
    b.set_version("regular", state).await.unwrap();
    b.put_mutation_macs("regular", 1, &[mac(1, tag)])
        .await
        .unwrap();
    b.set_sender_key_status("g", &[("d", true)]).await.unwrap();
    b.put_lid_mapping(&lid("L", &format!("P{tag}"), 1))
        .await
        .unwrap();
    b.save_base_key("a", "m", &t).await.unwrap();
    b.update_device_list(device_list("u", u32::from(tag), None))
        .await
        .unwrap();
    b.put_group_metadata("g", &t).await.unwrap();
    b.put_tc_token(
        "j",
        &TcTokenEntry {
            token: t.to_vec(),
            token_timestamp: 1,
            sender_timestamp: None,
        },
    )
    .await
    .unwrap();
    b.store_sent_message("c", "m", &t).await.unwrap();
    b.store_pending_inbound("c", "s", "i", &t).await.unwrap();
    b.put_msg_secrets(vec![secret("m", tag, 10, 1)])
        .await
        .unwrap();
    let mut d = paired_device();
    d.push_name = format!("device {tag}");
    b.save(&d).await.unwrap();
}

/// Every read of `fill`'s keys answers the values of `tag`.
async fn reads_tag(b: &dyn Backend, tag: u8) {
    let t = [tag; 32];
    assert_eq!(b.load_identity("100@lid").await.unwrap(), Some(t));
    assert_eq!(
        b.get_session("100@lid").await.unwrap().as_deref(),
        Some(&t[..])
    );
    assert_eq!(b.load_prekey(1).await.unwrap().as_deref(), Some(&t[..]));
    assert_eq!(
        b.load_all_signed_prekeys().await.unwrap(),
        [(1, t.to_vec())]
    );
    assert_eq!(b.get_sender_key("g::100").await.unwrap(), Some(t.to_vec()));
    assert_eq!(
        b.get_sync_key(b"k").await.unwrap().map(|k| k.fingerprint),
        Some(vec![tag])
    );
    assert_eq!(
        b.get_version("regular").await.unwrap().version,
        u64::from(tag)
    );
    assert_eq!(
        b.get_mutation_mac("regular", &[1; 32]).await.unwrap(),
        Some(vec![tag; 32])
    );
    assert_eq!(b.get_sender_key_devices("g").await.unwrap().len(), 1);
    assert_eq!(
        b.get_all_lid_mappings()
            .await
            .unwrap()
            .iter()
            .map(|m| m.phone_number.clone())
            .collect::<Vec<_>>(),
        [format!("P{tag}")]
    );
    assert!(b.has_same_base_key("a", "m", &t).await.unwrap());
    assert_eq!(
        b.get_devices("u")
            .await
            .unwrap()
            .map(|d| d.devices[1].device_id),
        Some(u32::from(tag))
    );
    assert_eq!(b.get_group_metadata("g").await.unwrap(), Some(t.to_vec()));
    assert_eq!(b.get_all_tc_token_jids().await.unwrap(), ["j"]);
    assert_eq!(
        b.get_tc_token("j").await.unwrap().map(|e| e.token),
        Some(t.to_vec())
    );
    assert_eq!(
        b.get_pending_inbound("c", "s", "i").await.unwrap(),
        Some(t.to_vec())
    );
    assert_eq!(
        b.get_msg_secret("c@s.whatsapp.net", "u@s.whatsapp.net", "m")
            .await
            .unwrap(),
        Some(t.to_vec())
    );
    assert_eq!(
        b.load().await.unwrap().map(|d| d.push_name),
        Some(format!("device {tag}"))
    );
}

async fn sessions_apart_and_deleted(s: Arc<dyn Store>, raw: Raw) {
    let (ida, idb) = (new_session(&*s, "a").await, new_session(&*s, "b").await);
    let (a, b) = (s.device_backend(ida), s.device_backend(idb));
    fill(&*a, 1).await;
    fill(&*b, 2).await;
    reads_tag(&*a, 1).await;
    reads_tag(&*b, 2).await;
    for (table, n) in raw.all_rows(ida).await {
        assert_eq!(n, 1, "{table} of session a");
    }

    // What one session clears, expires or takes is its own.
    a.clear_all_sender_key_devices().await.unwrap();
    a.clear_mutation_macs("regular").await.unwrap();
    assert_eq!(
        a.delete_expired_tc_tokens(i64::MAX, i64::MAX)
            .await
            .unwrap(),
        1
    );
    assert_eq!(a.delete_expired_msg_secrets(i64::MAX).await.unwrap(), 1);
    assert_eq!(a.delete_expired_sent_messages(i64::MAX).await.unwrap(), 1);
    assert_eq!(a.delete_expired_pending_inbound(i64::MAX).await.unwrap(), 1);
    a.delete_sender_key_device_rows(&["d"]).await.unwrap();
    a.delete_mutation_macs("regular", &[vec![1; 32]])
        .await
        .unwrap();
    a.remove_prekey(1).await.unwrap();
    assert_eq!(a.get_max_prekey_id().await.unwrap(), 0);
    assert_eq!(b.get_max_prekey_id().await.unwrap(), 1);
    assert!(!a.has_signal_state_for_user("999").await.unwrap());
    reads_tag(&*b, 2).await;

    // Logout: the device store of a is gone, the session stays.
    s.delete_device_store(ida).await.unwrap();
    for (table, n) in raw.all_rows(ida).await {
        assert_eq!(n, 0, "{table} of session a after logout");
    }
    assert!(s.get_session("a").await.unwrap().is_some());
    assert!(!a.exists().await.unwrap());
    assert_eq!(a.load_identity("100@lid").await.unwrap(), None);
    reads_tag(&*b, 2).await;

    // Deleting b removes its rows; its backend can no longer write.
    assert!(s.delete_session("b").await.unwrap());
    for (table, n) in raw.all_rows(idb).await {
        assert_eq!(n, 0, "{table} of deleted session b");
    }
    assert!(b.put_identity("100@lid", [9; 32]).await.is_err());
    assert!(b.load().await.unwrap().is_none());
    // a's store works again after logout.
    fill(&*a, 3).await;
    reads_tag(&*a, 3).await;
}

#[tokio::test]
async fn device_store_keeps_sessions_apart_and_is_deleted_with_them_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let (s, url) = sqlite_store(&dir).await;
    let raw = Raw::Lite(sqlx::SqlitePool::connect(&url).await.unwrap());
    sessions_apart_and_deleted(s, raw).await;
}

#[tokio::test]
async fn device_store_keeps_sessions_apart_and_is_deleted_with_them_on_postgres() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let s = pg_store(&pg).await;
    let raw = Raw::Pg(sqlx::PgPool::connect(&pg.url).await.unwrap());
    sessions_apart_and_deleted(s, raw).await;
}
