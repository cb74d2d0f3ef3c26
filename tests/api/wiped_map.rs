//! A node that lost its data directory (its Raft log and so its shard map) on a database that
//! kept its fences at higher epochs, because the shards had moved many times before. The
//! rebuilt map numbers its epochs above the fences, so the node fences its shards and serves
//! again. Before, every fence refused the new map's low epochs and the node never came up
//! healthy.

use serde_json::json;

use crate::cluster::get;
use crate::helpers::PgDatabase;
use crate::process::{post_json, spawn_on};

#[tokio::test]
async fn a_node_with_a_wiped_data_directory_serves_again_above_the_databases_fences() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let envs = [("DATABASE_URL", pg.url.clone())];
    let first = tempfile::tempdir().unwrap();
    let (mut child, base) = spawn_on(first.path(), &envs).await;
    let (code, b) = post_json(format!("{base}/sessions"), json!({"session": "kept"})).await;
    assert_eq!(code, 201, "{b}");
    child.kill().unwrap();
    child.wait().unwrap();

    let db = sqlx::PgPool::connect(&pg.url).await.unwrap();
    sqlx::query("UPDATE shard_fence SET epoch = epoch + 100000")
        .execute(&db)
        .await
        .unwrap();
    db.close().await;

    let wiped = tempfile::tempdir().unwrap();
    let (mut child, base) = spawn_on(wiped.path(), &envs).await;
    let (code, _, body) = get(format!("{base}/kept/status")).await.unwrap();
    assert_eq!(code, 200, "{body}");
    // A fenced write lands (the webhook), and reads back.
    let (code, b) = post_json(
        format!("{base}/kept/webhook"),
        json!({"url": "http://127.0.0.1:9/hook", "events": []}),
    )
    .await;
    assert!((200..300).contains(&code), "{code} {b}");
    let (_, _, got) = get(format!("{base}/kept/webhook")).await.unwrap();
    assert_eq!(got["url"], "http://127.0.0.1:9/hook", "{got}");
    // The fences stand at the new map's epochs, above where they were.
    let db = sqlx::PgPool::connect(&pg.url).await.unwrap();
    let (min,): (i64,) = sqlx::query_as("SELECT MIN(epoch) FROM shard_fence")
        .fetch_one(&db)
        .await
        .unwrap();
    db.close().await;
    assert!(min > 100_000, "lowest fence epoch {min}");
    child.kill().unwrap();
    child.wait().unwrap();
}
