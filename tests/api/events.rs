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

/// `notEmitted` is exact: every other listed name is emitted somewhere in the engine (as a
/// literal), and none of the names it lists is.
#[tokio::test]
async fn events_says_which_names_are_never_emitted() {
    let Some(app) = spawn(Db::Sqlite).await else {
        return;
    };
    let b: Value = app.get_json("/events").await;
    let never = b["notEmitted"].as_object().expect("notEmitted");
    assert_eq!(never.len(), 9, "{never:?}");
    let mut engine = String::new();
    let mut dirs = vec![std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/engine")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                engine.push_str(&std::fs::read_to_string(p).unwrap());
            }
        }
    }
    for name in b["all"].as_array().unwrap() {
        let name = name.as_str().unwrap();
        let emitted = engine.contains(&format!("\"{name}\""));
        assert_eq!(
            emitted,
            !never.contains_key(name),
            "{name}: emitted by the engine = {emitted}"
        );
    }
}
