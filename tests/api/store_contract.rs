//! One contract suite for every storage implementation: the same operations must give the
//! same answers on SQLite and on Postgres.

use std::sync::Arc;

use onwapp::store::{
    self, ConnectOptions, NewSession, SettingsPatch, Store, StoreError, WebhookConfig,
};

use crate::helpers::PgDatabase;

fn new_session(name: &str, key: &str) -> NewSession {
    NewSession {
        name: name.into(),
        api_key: key.into(),
        api_key_hash: onwapp::auth::hash_key(key),
    }
}

async fn contract(s: Arc<dyn Store>) {
    s.ping().await.unwrap();
    // As the server runs it: every write fenced, every shard held.
    crate::helpers::hold_every_shard(&*s).await;
    // Sessions.
    let a = s
        .create_session(new_session("a", "key-a-0123456789"))
        .await
        .unwrap();
    assert_eq!((a.name.as_str(), a.status.as_str()), ("a", "disconnected"));
    assert_eq!(a.created_at, a.updated_at);
    let b = s
        .create_session(new_session("b", "key-b-0123456789"))
        .await
        .unwrap();
    assert!(matches!(
        s.create_session(new_session("a", "key-c-0123456789")).await,
        Err(StoreError::Conflict(m)) if m == "session a already exists"
    ));
    assert!(matches!(
        s.create_session(new_session("c", "key-a-0123456789")).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.get_session("a").await.unwrap(), Some(a.clone()));
    assert_eq!(s.get_session("zzz").await.unwrap(), None);
    let names: Vec<_> = s
        .list_sessions()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["a", "b"]);
    let by_key = s
        .session_by_key_hash(&onwapp::auth::hash_key("key-b-0123456789"))
        .await
        .unwrap();
    assert_eq!(by_key, Some(b.clone()));
    assert_eq!(s.session_by_key_hash("00").await.unwrap(), None);

    // Settings exist from creation.
    let st = s.get_settings(a.id).await.unwrap().unwrap();
    assert_eq!(st.session_id, a.id);
    assert!(!st.always_online && st.sync_history);
    assert_eq!(st.last_seen, "all");
    assert_eq!(st.default_disappearing_timer, "off");
    assert_eq!(st.privacy_synced_at, None);
    let unchanged = s
        .update_settings(a.id, &SettingsPatch::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(unchanged, st);
    let p = SettingsPatch {
        always_online: Some(true),
        last_seen: Some("none".into()),
        ..Default::default()
    };
    let up = s.update_settings(a.id, &p).await.unwrap().unwrap();
    assert!(up.always_online);
    assert_eq!(up.last_seen, "none");
    assert_eq!(up.online, "all");
    assert!(up.updated_at >= st.updated_at);
    assert_eq!(s.get_settings(a.id).await.unwrap(), Some(up));
    assert_eq!(
        s.update_settings(uuid::Uuid::new_v4(), &p).await.unwrap(),
        None
    );

    // Webhooks.
    assert_eq!(s.get_webhook(a.id).await.unwrap(), None);
    let cfg = WebhookConfig {
        url: "https://example.com/h".into(),
        events: vec!["message.received".into()],
        enabled: true,
        secret: Some("s".into()),
    };
    assert_eq!(s.replace_webhook(a.id, &cfg).await.unwrap(), None);
    let w = s.upsert_webhook(a.id, &cfg).await.unwrap();
    assert_eq!(
        (w.url.as_str(), w.events.0.clone(), w.secret.clone()),
        (
            "https://example.com/h",
            cfg.events.clone(),
            Some("s".into())
        )
    );
    let cfg2 = WebhookConfig {
        url: "http://x.example".into(),
        events: vec![],
        enabled: false,
        secret: None,
    };
    let w2 = s.upsert_webhook(a.id, &cfg2).await.unwrap();
    assert_eq!(w2.id, w.id, "upsert keeps one row per session");
    assert_eq!((w2.enabled, w2.secret.clone()), (false, None));
    let w3 = s.replace_webhook(a.id, &cfg).await.unwrap().unwrap();
    assert_eq!(w3.id, w.id);
    assert_eq!(s.get_webhook(a.id).await.unwrap(), Some(w3));
    assert!(s.delete_webhook(a.id).await.unwrap());
    assert!(!s.delete_webhook(a.id).await.unwrap());

    // Deleting a session removes what belongs to it.
    s.upsert_webhook(b.id, &cfg).await.unwrap();
    assert!(s.delete_session("b").await.unwrap());
    assert!(!s.delete_session("b").await.unwrap());
    assert_eq!(s.get_settings(b.id).await.unwrap(), None);
    assert_eq!(s.get_webhook(b.id).await.unwrap(), None);
    assert_eq!(
        s.session_by_key_hash(&onwapp::auth::hash_key("key-b-0123456789"))
            .await
            .unwrap(),
        None
    );
    // The name is free again.
    s.create_session(new_session("b", "key-b2-0123456789"))
        .await
        .unwrap();
}

#[tokio::test]
async fn sqlite_store_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let s = store::connect(&ConnectOptions {
        url,
        max_connections: 4,
    })
    .await
    .unwrap();
    assert_eq!(s.kind(), "sqlite");
    contract(s).await;
}

#[tokio::test]
async fn postgres_store_meets_the_contract() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let s = store::connect(&ConnectOptions {
        url: pg.url.clone(),
        max_connections: 4,
    })
    .await
    .unwrap();
    assert_eq!(s.kind(), "postgres");
    contract(s).await;
}

#[tokio::test]
async fn migrations_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let opts = ConnectOptions {
        url,
        max_connections: 2,
    };
    let s = store::connect(&opts).await.unwrap();
    s.create_session(new_session("keep", "key-keep-0123456789"))
        .await
        .unwrap();
    drop(s);
    let s = store::connect(&opts).await.unwrap();
    assert!(s.get_session("keep").await.unwrap().is_some());
    if let Some(pg) = PgDatabase::create().await {
        let o = ConnectOptions {
            url: pg.url.clone(),
            max_connections: 2,
        };
        drop(store::connect(&o).await.unwrap());
        store::connect(&o).await.unwrap();
    }
}
