use serde_json::Value;

use crate::helpers::{Db, spawn};

#[tokio::test]
async fn events_lists_the_61_event_names() {
    let Some(app) = spawn(Db::Sqlite).await else {
        return;
    };
    assert_eq!(
        app.client
            .get(app.url("/events"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let b: Value = app.get_json("/events").await;
    let all: Vec<&str> = b["all"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(all.len(), 61);
    assert_eq!(all[0], "session.connected");
    assert_eq!(all[60], "chat.label_association");
    let cats = b["categories"].as_object().unwrap();
    let keys: Vec<&String> = cats.keys().collect();
    assert_eq!(
        keys,
        [
            "call",
            "chat",
            "contact",
            "group",
            "message",
            "newsletter",
            "presence",
            "privacy",
            "session",
            "sync"
        ]
    );
    assert_eq!(cats["message"].as_array().unwrap().len(), 8);
    let total: usize = cats.values().map(|v| v.as_array().unwrap().len()).sum();
    assert_eq!(total, 61);
}
