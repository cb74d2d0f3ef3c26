//! A connect on a node whose fence of the session's shard is stale answers 421 (issue 7): the
//! engine finds the store's `Fenced` refusal among the client build error's sources.

use onwapp::store::fence::shard_of;

use crate::helpers::{Db, TestApp, spawn_with};

/// `POST /{session}/connect` on a node whose fence of the session's shard is stale (another
/// node raised it) answers 421, not 500: the first start of a client creates its device row,
/// a fenced write. No timing: the newer fence is raised in the database directly, and this
/// node keeps the epoch it had, so the request is still routed here.
#[tokio::test]
async fn a_connect_whose_device_write_is_fenced_answers_421() {
    let Some(app) = spawn_with(Db::Sqlite, |_| {}).await else {
        return;
    };
    app.create_session("stale").await;
    let store = app.store();
    let shard = shard_of("stale");
    let held = store
        .fences()
        .held(shard)
        .expect("a single node holds every shard");
    // Another owner's newer epoch in the table; this node still believes it holds `held`.
    assert!(store.acquire_fence(shard, held + 1000).await.unwrap());
    store.fences().hold(shard, held);

    let (code, body) = TestApp::call(app.post("/stale/connect")).await;
    assert_eq!(code, 421, "{body}");
    let msg = body["error"].as_str().unwrap_or_default();
    assert!(msg.contains(&format!("shard {shard}")), "{body}");
    assert_eq!(
        app.get_json("/stale/status").await["status"],
        "disconnected"
    );
}
