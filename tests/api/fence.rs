//! Epoch fencing of session writes (design section 4): a node that does not hold the epoch of a
//! session's shard writes nothing for it, a new owner's fence waits for the old owner's writes
//! in flight, and webhook delivery only claims sessions of held shards.

use std::{sync::Arc, time::Duration};

use onwapp::store::{
    self, ConnectOptions, NewSession, Store, StoreError,
    chat::MessageRow,
    events::NewEvent,
    fence::{SHARDS, shard_of},
};
use uuid::Uuid;

use crate::helpers::PgDatabase;

async fn sqlite(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    connect(&url).await
}

async fn connect(url: &str) -> Arc<dyn Store> {
    store::connect(&ConnectOptions {
        url: url.into(),
        max_connections: 4,
    })
    .await
    .expect("store")
}

async fn session(s: &dyn Store, name: &str) -> Uuid {
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

fn message(id: &str) -> MessageRow {
    MessageRow {
        msg_id: id.into(),
        chat_jid: "123@s.whatsapp.net".into(),
        sender_jid: Some("123@s.whatsapp.net".into()),
        push_name: None,
        timestamp: 1_700_000_000,
        kind: "text".into(),
        media_type: None,
        content: Some("hi".into()),
        from_me: false,
        is_group: false,
        quoted_id: None,
        status: "delivered".into(),
    }
}

fn event() -> NewEvent {
    NewEvent {
        name: "session.connected",
        payload: serde_json::json!({"event": "session.connected"}),
    }
}

async fn record(s: &dyn Store, id: Uuid, msg: &str) -> Result<bool, StoreError> {
    s.record_message(
        id,
        &message(msg),
        "message.received",
        &serde_json::json!({}),
    )
    .await
}

/// Not held: refused, and neither the message nor its outbox row is kept. Held: written.
/// A lower epoch cannot take the fence back; the same epoch again is ours.
async fn fenced_write_writes_nothing(s: Arc<dyn Store>) {
    let id = session(&*s, "fenced").await;
    let shard = shard_of("fenced");
    s.fences().enforce();
    let err = record(&*s, id, "m1").await.expect_err("not held: fenced");
    let StoreError::Fenced(msg) = &err else {
        panic!("expected Fenced, got {err:?}")
    };
    assert!(msg.contains(&format!("shard {shard}")), "{msg}");
    assert!(
        s.list_messages(id, "123@s.whatsapp.net", 10, 0)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.pending_events(id, 10).await.unwrap().is_empty());
    assert!(matches!(
        s.record_events(id, &[event()]).await,
        Err(StoreError::Fenced(_))
    ));
    let device = s.device_backend(id);
    assert!(
        device
            .put_identity("1@s.whatsapp.net", [7; 32])
            .await
            .is_err()
    );
    assert_eq!(
        device.load_identity("1@s.whatsapp.net").await.unwrap(),
        None
    );

    assert!(s.acquire_fence(shard, 3).await.unwrap());
    assert_eq!(s.fences().held(shard), Some(3));
    assert!(record(&*s, id, "m1").await.unwrap());
    assert_eq!(s.pending_events(id, 10).await.unwrap().len(), 1);
    device
        .put_identity("1@s.whatsapp.net", [7; 32])
        .await
        .unwrap();

    assert!(!s.acquire_fence(shard, 2).await.unwrap(), "a lower epoch");
    assert!(
        s.acquire_fence(shard, 3).await.unwrap(),
        "the same epoch again"
    );
    // This node holding a newer epoch than the table (not acquired yet) is refused too.
    s.fences().hold(shard, 4);
    let err = record(&*s, id, "m2")
        .await
        .expect_err("epoch 4 not acquired");
    assert!(
        err.to_string()
            .contains("is owned at epoch 3, this node holds 4"),
        "{err}"
    );
    s.fences().release(shard);
    assert!(s.fences().held(shard).is_none());
    let err = s.record_events(id, &[event()]).await.expect_err("released");
    assert!(err.to_string().contains("does not hold it"), "{err}");
}

#[tokio::test]
async fn sqlite_fenced_write_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    fenced_write_writes_nothing(sqlite(&dir).await).await;
}

#[tokio::test]
async fn postgres_fenced_write_writes_nothing() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    fenced_write_writes_nothing(connect(&pg.url).await).await;
}

/// Two nodes on one database: once the new owner raised the fence, every write of the old
/// owner (events, messages, the device store) is refused and reported, the new owner's land.
#[tokio::test]
async fn old_owner_is_fenced_once_the_new_owner_acquires() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let old = connect(&pg.url).await;
    let new = connect(&pg.url).await;
    old.fences().enforce();
    new.fences().enforce();
    let id = session(&*old, "moving").await;
    let shard = shard_of("moving");
    assert!(old.acquire_fence(shard, 1).await.unwrap());
    assert!(record(&*old, id, "before").await.unwrap());
    let old_device = old.device_backend(id);
    old_device.put_session("1.0", b"v1").await.unwrap();

    assert!(new.acquire_fence(shard, 2).await.unwrap());
    let mut refused = old.fences().subscribe_fenced();
    assert!(matches!(
        record(&*old, id, "late").await,
        Err(StoreError::Fenced(_))
    ));
    assert_eq!(refused.try_recv().ok(), Some(id), "the refusal is reported");
    assert!(matches!(
        old.record_events(id, &[event()]).await,
        Err(StoreError::Fenced(_))
    ));
    assert!(old_device.put_session("1.0", b"stale").await.is_err());
    assert!(
        old_device
            .put_sessions_batch(&[
                ("2.0".into(), bytes::Bytes::from_static(b"x")),
                ("3.0".into(), bytes::Bytes::from_static(b"y"))
            ])
            .await
            .is_err()
    );
    assert!(matches!(
        old.delete_device_store(id).await,
        Err(StoreError::Fenced(_))
    ));
    // The old owner cannot take it back.
    assert!(!old.acquire_fence(shard, 1).await.unwrap());

    assert!(record(&*new, id, "after").await.unwrap());
    new.record_events(id, &[event()]).await.unwrap();
    let new_device = new.device_backend(id);
    new_device.put_session("1.0", b"v2").await.unwrap();
    assert_eq!(
        new_device.get_session("1.0").await.unwrap().as_deref(),
        Some(&b"v2"[..])
    );
    let ids: Vec<String> = new
        .list_messages(id, "123@s.whatsapp.net", 10, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.msg_id)
        .collect();
    assert_eq!(sorted(ids), ["after", "before"]);
    assert_eq!(new.pending_events(id, 10).await.unwrap().len(), 3);
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// A write in flight under the old epoch holds its shard's fence row `FOR SHARE`: the new
/// owner's fence UPDATE waits until it commits, so nothing of the old owner lands after.
#[tokio::test]
async fn new_owner_waits_for_a_write_in_flight() {
    use sqlx::{Connection, Executor};
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let old = connect(&pg.url).await;
    let new = connect(&pg.url).await;
    old.fences().enforce();
    new.fences().enforce();
    let id = session(&*old, "inflight").await;
    let shard = shard_of("inflight");
    assert!(old.acquire_fence(shard, 1).await.unwrap());
    assert!(record(&*old, id, "first").await.unwrap());

    // A third connection holds the chat row, so the old owner's next message stops at its
    // chat upsert: after its fence check, before its commit.
    let mut blocker = sqlx::PgConnection::connect(&pg.url).await.unwrap();
    blocker.execute("BEGIN").await.unwrap();
    blocker
        .execute(sqlx::AssertSqlSafe(format!(
            "SELECT 1 FROM chats WHERE session_id = '{id}' FOR UPDATE"
        )))
        .await
        .unwrap();
    let writing = tokio::spawn({
        let old = old.clone();
        async move { record(&*old, id, "in-flight").await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!writing.is_finished(), "the write waits for the chat row");
    let acquiring = tokio::spawn({
        let new = new.clone();
        async move { new.acquire_fence(shard, 2).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !acquiring.is_finished(),
        "the fence UPDATE waits for the write in flight"
    );
    blocker.execute("COMMIT").await.unwrap();
    assert!(
        writing.await.unwrap().unwrap(),
        "the write in flight commits"
    );
    assert!(acquiring.await.unwrap().unwrap(), "then the fence moves");
    assert!(matches!(
        record(&*old, id, "late").await,
        Err(StoreError::Fenced(_))
    ));
    assert_eq!(new.pending_events(id, 10).await.unwrap().len(), 2);
}

/// Delivery claims only sessions of held shards (all while every shard is held).
async fn claims_only_held_shards(s: Arc<dyn Store>) {
    let id = session(&*s, "deliver").await;
    let shard = shard_of("deliver");
    let other = (shard + 1) % SHARDS;
    s.fences().enforce();
    assert!(s.acquire_fence(shard, 1).await.unwrap());
    assert!(s.acquire_fence(other, 1).await.unwrap());
    s.record_events(id, &[event()]).await.unwrap();
    let later = chrono::Utc::now() + chrono::Duration::seconds(5);

    s.fences().release(shard);
    assert!(
        s.claim_session(later).await.unwrap().is_none(),
        "shard not held: not delivered"
    );
    s.fences().hold(shard, 1);
    let claim = s
        .claim_session(later)
        .await
        .unwrap()
        .expect("held: claimed");
    assert_eq!(claim.session_id(), id);
    claim.release().await.unwrap();

    // Every shard held: no filter at all.
    assert!(s.acquire_all_fences(1).await.unwrap());
    assert!(s.fences().holds_all());
    let claim = s.claim_session(later).await.unwrap().expect("claimed");
    assert_eq!(claim.session_id(), id);
    claim.release().await.unwrap();
}

#[tokio::test]
async fn sqlite_claims_only_held_shards() {
    let dir = tempfile::tempdir().unwrap();
    claims_only_held_shards(sqlite(&dir).await).await;
}

#[tokio::test]
async fn postgres_claims_only_held_shards() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    claims_only_held_shards(connect(&pg.url).await).await;
}

#[test]
fn fenced_is_421() {
    let e = onwapp::error::ApiError::from(StoreError::Fenced("shard 3 moved".into()));
    assert_eq!(e.status().as_u16(), 421);
}

/// The cost of the fence on the device store's most frequent write (`put_session`, a Signal
/// session after each message), on Postgres, with commits flushed (the default) and without
/// (`synchronous_commit = off`, which leaves the round trips the fence adds):
/// `cargo test -p onwapp --test api fence::cost -- --ignored --nocapture`.
#[tokio::test]
#[ignore]
async fn cost() {
    use sqlx::{Connection, Executor};
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    for flushed in [true, false] {
        if !flushed {
            let mut c = sqlx::PgConnection::connect(&pg.url).await.unwrap();
            let db: String = sqlx::query_scalar("SELECT current_database()")
                .fetch_one(&mut c)
                .await
                .unwrap();
            c.execute(sqlx::AssertSqlSafe(format!(
                "ALTER DATABASE \"{db}\" SET synchronous_commit = off"
            )))
            .await
            .unwrap();
        }
        // Two nodes' stores on one database: one writes unfenced, the other fenced.
        let plain = connect(&pg.url).await;
        let fenced = connect(&pg.url).await;
        crate::helpers::hold_every_shard(&*fenced).await;
        let id = session(&*plain, &format!("bench-{flushed}")).await;
        let backends = [plain.device_backend(id), fenced.device_backend(id)];
        let mut total = [Duration::ZERO; 2];
        const ROUNDS: usize = 6;
        const N: usize = 300;
        for round in 0..ROUNDS {
            for (which, device) in backends.iter().enumerate() {
                let t = std::time::Instant::now();
                for i in 0..N {
                    device
                        .put_session(&format!("{}.0", i % 50), &[round as u8; 200])
                        .await
                        .unwrap();
                }
                if round > 0 {
                    total[which] += t.elapsed();
                }
            }
        }
        let writes = ((ROUNDS - 1) * N) as u32;
        let (p, f) = (total[0] / writes, total[1] / writes);
        eprintln!(
            "synchronous_commit {}: unfenced {p:?}, fenced {f:?} per put_session; fence +{:?} ({:.2}x)",
            if flushed { "on" } else { "off" },
            f.saturating_sub(p),
            f.as_secs_f64() / p.as_secs_f64()
        );
    }
}

/// The engine hook: a live session whose write is refused (another node owns its shard now)
/// stops its WhatsApp client, without logging out: its device keys stay for the new owner.
#[tokio::test]
async fn a_fenced_live_session_stops_its_client_and_keeps_its_keys() {
    use crate::helpers::{Db, eventually};
    let Some((app, wa)) = crate::wa::app_on(Db::Postgres).await else {
        return;
    };
    app.create_session("lost").await;
    crate::wa::pair(&app, &wa, "lost", "5511999990301").await;
    crate::wa::user(&wa, "5511988880301").await;
    let store = app.store();
    let id = store.get_session("lost").await.unwrap().unwrap().id;
    // The shard moved away: this node holds it no more.
    store.fences().release(shard_of("lost"));
    // The API no longer routes the session here (the fence is not held), so the refused write
    // is one the client makes by itself: storing a message it receives.
    crate::incoming_events::admin(
        &wa,
        "/users/5511988880301/send",
        serde_json::json!({"to": "5511999990301@s.whatsapp.net", "text": "after the move"}),
    )
    .await;
    let engine = app.engine();
    assert!(
        eventually(Duration::from_secs(20), || {
            let stopped = engine.state("lost") == onwapp::engine::State::Disconnected;
            async move { stopped }
        })
        .await,
        "the client stops"
    );
    assert!(
        store.device_backend(id).exists().await.unwrap(),
        "not logged out: the keys stay"
    );
}
