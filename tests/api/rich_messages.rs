//! Rich messages through whatsapp-rust against wamock: polls, buttons, lists, templates,
//! interactive messages and carousels as a simulated user decrypts them; poll votes both
//! ways; asking the phone for an undecryptable message.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Db, TestApp};
use crate::wa::{app_on, app_with_wamock, pair, poll, user, user_inbox, wait_inbox};

/// The inbox entry with message id `id`.
fn by_id<'a>(inbox: &'a Value, id: &str) -> &'a Value {
    inbox
        .as_array()
        .and_then(|a| a.iter().find(|m| m["id"] == id))
        .unwrap_or_else(|| panic!("{id} not in {inbox}"))
}

async fn send(app: &TestApp, path: &str, body: &Value) -> String {
    let (code, b) = TestApp::call(app.post(path).json(body)).await;
    assert_eq!(code, 200, "{path}: {b}");
    assert!(
        b["timestamp"].as_i64().is_some_and(|t| t > 1_700_000_000),
        "{b}"
    );
    b["messageId"].as_str().expect("messageId").to_string()
}

/// The simulated user `from` sends through wamock's admin API.
async fn user_sends(wa: &wamock::Server, from: &str, body: Value) -> String {
    let r = reqwest::Client::new()
        .post(format!("{}/admin/users/{from}/send", wa.http_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let b: Value = r.json().await.unwrap();
    assert!(status.is_success(), "{b}");
    b["id"].as_str().unwrap().to_string()
}

const TO: &str = "5511988880601";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rich_messages_reach_the_simulated_user_decrypted() {
    let Some((app, wa)) = app_with_wamock().await else {
        return;
    };
    app.create_session("rich").await;
    pair(&app, &wa, "rich", "5511999990601").await;
    let user_jid = user(&wa, TO).await;

    let poll_id = send(
        &app,
        "/rich/message/send/poll",
        &json!({"phone": TO, "name": "Favorite color?", "options": ["Red", "Blue", "Green"]}),
    )
    .await;
    let multi_id = send(
        &app,
        "/rich/message/send/poll",
        &json!({"phone": TO, "name": "Toppings", "options": ["Ham", "Olives", "Egg"], "selectableCount": 2,
                "quoted": {"messageId": poll_id}}),
    )
    .await;
    let buttons_id = send(
        &app,
        "/rich/message/send/buttons",
        &json!({"phone": TO, "contentText": "Choose:", "headerText": "Menu", "footerText": "bye",
                "quoted": {"messageId": poll_id},
                "buttons": [{"buttonId": "1", "displayText": "Option 1"}, {"buttonId": "2", "displayText": "Option 2"}]}),
    )
    .await;
    let list_id = send(
        &app,
        "/rich/message/send/list",
        &json!({"phone": TO, "title": "Menu", "description": "Select an option", "buttonText": "View",
                "footerText": "f",
                "sections": [{"title": "Products", "rows": [
                    {"title": "Item 1", "rowId": "1", "description": "first"},
                    {"title": "Item 2", "rowId": "2"}]}]}),
    )
    .await;
    let interactive_id = send(
        &app,
        "/rich/message/send/interactive",
        &json!({"phone": TO, "title": "Shop", "body": "Check out!", "footer": "ft",
                "quoted": {"messageId": poll_id},
                "buttons": [{"name": "quick_reply", "params": {"display_text": "Buy", "id": "buy"}},
                            {"name": "cta_url", "params": {"display_text": "Site", "url": "https://example.com"}}]}),
    )
    .await;
    let template_id = send(
        &app,
        "/rich/message/send/template",
        &json!({"phone": TO, "title": "Hello", "content": "Pick one", "footer": "tf",
                "buttons": [
                    {"quickReply": {"displayText": "Yes", "id": "yes"}},
                    {"index": 5, "urlButton": {"displayText": "Docs", "url": "https://example.com/docs"}},
                    {"callButton": {"displayText": "Call", "phoneNumber": "+5511999999999"}}]}),
    )
    .await;
    let carousel_id = send(
        &app,
        "/rich/message/send/carousel",
        &json!({"phone": TO, "body": "Our picks", "cards": [
            {"header": {"title": "Card A"}, "body": "A body", "footer": "A foot",
             "buttons": [{"name": "quick_reply", "params": {"display_text": "Want A", "id": "a"}}]},
            {"header": {"title": "Card B"}, "body": "B body"}]}),
    )
    .await;

    let inbox = wait_inbox(&wa, TO, 7).await;
    let p = by_id(&inbox, &poll_id);
    assert_eq!(p["type"], "poll", "{p}");
    assert_eq!(p["name"], "Favorite color?");
    assert_eq!(p["options"], json!(["Red", "Blue", "Green"]));
    assert_eq!(p["selectableCount"], 1);
    assert_eq!(
        (p["pollVersion"].clone(), p["hasSecret"].clone()),
        (json!(3), json!(true))
    );
    let m = by_id(&inbox, &multi_id);
    assert_eq!(
        (m["selectableCount"].clone(), m["pollVersion"].clone()),
        (json!(2), json!(1)),
        "{m}"
    );

    // Replies quote the first poll, whatever their kind.
    for id in [&multi_id, &buttons_id, &interactive_id] {
        assert_eq!(by_id(&inbox, id)["quotedId"], poll_id.as_str(), "{inbox}");
    }
    let b = by_id(&inbox, &buttons_id);
    assert_eq!(b["type"], "buttons", "{b}");
    assert_eq!(b["viewOnce"], true);
    assert_eq!(
        (
            b["contentText"].clone(),
            b["headerText"].clone(),
            b["footerText"].clone()
        ),
        (json!("Choose:"), json!("Menu"), json!("bye"))
    );
    assert_eq!(
        b["buttons"],
        json!([{"buttonId": "1", "displayText": "Option 1"}, {"buttonId": "2", "displayText": "Option 2"}])
    );

    let l = by_id(&inbox, &list_id);
    assert_eq!(
        (l["type"].clone(), l["viewOnce"].clone()),
        (json!("list"), json!(true)),
        "{l}"
    );
    assert_eq!(
        (
            l["title"].clone(),
            l["description"].clone(),
            l["buttonText"].clone(),
            l["footerText"].clone()
        ),
        (
            json!("Menu"),
            json!("Select an option"),
            json!("View"),
            json!("f")
        )
    );
    assert_eq!(
        l["sections"],
        json!([{"title": "Products", "rows": [
            {"title": "Item 1", "rowId": "1", "description": "first"},
            {"title": "Item 2", "rowId": "2"}]}])
    );

    let i = by_id(&inbox, &interactive_id);
    assert_eq!(i["type"], "interactive", "{i}");
    assert!(
        i.get("viewOnce").is_none(),
        "interactive messages go unwrapped: {i}"
    );
    assert_eq!(
        (i["title"].clone(), i["body"].clone(), i["footer"].clone()),
        (json!("Shop"), json!("Check out!"), json!("ft"))
    );
    assert_eq!(
        i["buttons"],
        json!([{"name": "quick_reply", "params": {"display_text": "Buy", "id": "buy"}},
               {"name": "cta_url", "params": {"display_text": "Site", "url": "https://example.com"}}])
    );

    let t = by_id(&inbox, &template_id);
    assert_eq!(
        (t["type"].clone(), t["viewOnce"].clone()),
        (json!("template"), json!(true)),
        "{t}"
    );
    assert_eq!(
        (
            t["title"].clone(),
            t["content"].clone(),
            t["footer"].clone()
        ),
        (json!("Hello"), json!("Pick one"), json!("tf"))
    );
    assert_eq!(
        t["buttons"],
        json!([
            {"index": 1, "quickReply": {"displayText": "Yes", "id": "yes"}},
            {"index": 5, "urlButton": {"displayText": "Docs", "url": "https://example.com/docs"}},
            {"index": 3, "callButton": {"displayText": "Call", "phoneNumber": "+5511999999999"}}])
    );

    let c = by_id(&inbox, &carousel_id);
    assert_eq!(
        (c["type"].clone(), c["body"].clone()),
        (json!("interactive"), json!("Our picks")),
        "{c}"
    );
    assert_eq!(
        c["cards"],
        json!([
            {"title": "Card A", "body": "A body", "footer": "A foot",
             "buttons": [{"name": "quick_reply", "params": {"display_text": "Want A", "id": "a"}}]},
            {"title": "Card B", "body": "B body", "buttons": []}])
    );

    // The session stored what it sent, with the contract's types and contents.
    let path = format!("/rich/chat/messages?chatId={user_jid}");
    let stored = poll(&app, &path, Duration::from_secs(10), |b| {
        b.as_array().is_some_and(|a| a.len() >= 7)
    })
    .await;
    let row = |id: &str| {
        stored
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["msgId"] == id)
            .map(|m| (m["type"].clone(), m["content"].clone(), m["fromMe"].clone()))
            .unwrap_or_else(|| panic!("{id} not stored: {stored}"))
    };
    assert_eq!(
        row(&poll_id),
        (json!("poll"), json!("Favorite color?"), json!(true))
    );
    assert_eq!(
        row(&buttons_id),
        (json!("buttons"), json!("Choose:"), json!(true))
    );
    assert_eq!(
        row(&list_id),
        (json!("list"), json!("Select an option"), json!(true))
    );
    assert_eq!(
        row(&interactive_id),
        (json!("interactive"), json!("Check out!"), json!(true))
    );
    assert_eq!(
        row(&template_id),
        (json!("template"), json!("Pick one"), json!(true))
    );
    assert_eq!(
        row(&carousel_id),
        (json!("interactive"), json!("Our picks"), json!(true))
    );

    // Bad input: 400 naming the field (501 for media headers), and nothing sent.
    let refused: Vec<(&str, Value, &str)> = vec![
        ("poll", json!({"name": "Q", "options": ["a", "b"]}), "phone"),
        (
            "poll",
            json!({"phone": "abc", "name": "Q", "options": ["a", "b"]}),
            "phone",
        ),
        (
            "poll",
            json!({"phone": TO, "name": " ", "options": ["a", "b"]}),
            "name",
        ),
        ("poll", json!({"phone": TO, "name": "Q"}), "options"),
        (
            "poll",
            json!({"phone": TO, "name": "Q", "options": ["a"]}),
            "options",
        ),
        (
            "poll",
            json!({"phone": TO, "name": "Q", "options": (0..13).map(|i| i.to_string()).collect::<Vec<_>>()}),
            "options",
        ),
        (
            "poll",
            json!({"phone": TO, "name": "Q", "options": ["a", "a"]}),
            "options",
        ),
        (
            "poll",
            json!({"phone": TO, "name": "Q", "options": ["a", ""]}),
            "options[1]",
        ),
        (
            "poll",
            json!({"phone": TO, "name": "Q", "options": ["a", "b"], "selectableCount": 3}),
            "selectableCount",
        ),
        (
            "poll",
            json!({"phone": TO, "name": "Q", "options": ["a", "b"], "selectableCount": "x"}),
            "selectableCount",
        ),
        (
            "buttons",
            json!({"phone": TO, "buttons": [{"buttonId": "1", "displayText": "x"}]}),
            "contentText",
        ),
        (
            "buttons",
            json!({"phone": TO, "contentText": "c", "buttons": []}),
            "buttons",
        ),
        (
            "buttons",
            json!({"phone": TO, "contentText": "c", "buttons": [
            {"buttonId": "1", "displayText": "a"}, {"buttonId": "2", "displayText": "b"},
            {"buttonId": "3", "displayText": "c"}, {"buttonId": "4", "displayText": "d"}]}),
            "buttons",
        ),
        (
            "buttons",
            json!({"phone": TO, "contentText": "c", "buttons": [{"buttonId": "1", "displayText": ""}]}),
            "buttons[0].displayText",
        ),
        (
            "buttons",
            json!({"phone": TO, "contentText": "c", "buttons": [{"buttonId": "1"}]}),
            "buttons[0]",
        ),
        (
            "buttons",
            json!({"phone": TO, "contentText": "c", "buttons": [
            {"buttonId": "1", "displayText": "a"}, {"buttonId": "1", "displayText": "b"}]}),
            "buttonId",
        ),
        (
            "list",
            json!({"phone": TO, "description": "d", "buttonText": "b", "sections": [{"rows": [{"title": "t", "rowId": "1"}]}]}),
            "title",
        ),
        (
            "list",
            json!({"phone": TO, "title": "t", "description": "d", "buttonText": "", "sections": [{"rows": [{"title": "t", "rowId": "1"}]}]}),
            "buttonText",
        ),
        (
            "list",
            json!({"phone": TO, "title": "t", "description": "d", "buttonText": "b", "sections": []}),
            "sections",
        ),
        (
            "list",
            json!({"phone": TO, "title": "t", "description": "d", "buttonText": "b", "sections": [{"rows": []}]}),
            "sections[0].rows",
        ),
        (
            "list",
            json!({"phone": TO, "title": "t", "description": "d", "buttonText": "b", "sections": [{"rows": [{"title": "t", "rowId": ""}]}]}),
            "sections[0].rows[0].rowId",
        ),
        (
            "interactive",
            json!({"phone": TO, "buttons": [{"name": "quick_reply"}]}),
            "body",
        ),
        (
            "interactive",
            json!({"phone": TO, "body": "b", "buttons": []}),
            "buttons",
        ),
        (
            "interactive",
            json!({"phone": TO, "body": "b", "buttons": [{"name": ""}]}),
            "buttons[0].name",
        ),
        (
            "interactive",
            json!({"phone": TO, "body": "b", "buttons": [{"name": "x", "params": [1]}]}),
            "buttons[0].params",
        ),
        (
            "template",
            json!({"phone": TO, "buttons": [{"quickReply": {"displayText": "a", "id": "a"}}]}),
            "content",
        ),
        (
            "template",
            json!({"phone": TO, "content": "c", "buttons": []}),
            "buttons",
        ),
        (
            "template",
            json!({"phone": TO, "content": "c", "buttons": [{"index": 1}]}),
            "buttons[0]",
        ),
        (
            "template",
            json!({"phone": TO, "content": "c", "buttons": [{"urlButton": {"displayText": "a", "url": "not a url"}}]}),
            "buttons[0].urlButton.url",
        ),
        (
            "template",
            json!({"phone": TO, "content": "c", "buttons": [{"callButton": {"displayText": "a", "phoneNumber": ""}}]}),
            "buttons[0].callButton.phoneNumber",
        ),
        ("carousel", json!({"phone": TO, "cards": []}), "cards"),
        ("carousel", json!({"phone": TO, "cards": [{}]}), "cards[0]"),
        (
            "carousel",
            json!({"phone": TO, "cards": [{"body": "b", "buttons": [{"name": ""}]}]}),
            "cards[0].buttons[0].name",
        ),
        (
            "carousel",
            json!({"phone": "", "cards": [{"body": "b"}]}),
            "phone",
        ),
    ];
    for (path, bad, field) in &refused {
        let url = format!("/rich/message/send/{path}");
        let (code, e) = TestApp::call(app.post(&url).json(bad)).await;
        assert_eq!(code, 400, "{path} {bad}: {e}");
        let msg = e["error"].as_str().unwrap_or_default();
        assert!(msg.contains(field), "{path} {bad}: {e} should name {field}");
    }
    // Header files: refused before anything is uploaded.
    let refused_files: Vec<(&str, Value, &str)> = vec![
        (
            "interactive",
            json!({"phone": TO, "body": "b", "buttons": [{"name": "x"}], "image": "aGk=", "video": "aGk="}),
            "image, video",
        ),
        (
            "interactive",
            json!({"phone": TO, "body": "b", "buttons": [{"name": "x"}], "image": "not base64!"}),
            "image",
        ),
        (
            "template",
            json!({"phone": TO, "title": "t", "content": "c", "image": "aGk=", "buttons": [{"quickReply": {"displayText": "a", "id": "a"}}]}),
            "title",
        ),
        (
            "carousel",
            json!({"phone": TO, "cards": [{"header": {"image": "not base64!"}, "body": "b"}]}),
            "cards[0].header.image",
        ),
    ];
    for (path, bad, field) in &refused_files {
        let url = format!("/rich/message/send/{path}");
        let (code, e) = TestApp::call(app.post(&url).json(bad)).await;
        assert_eq!(code, 400, "{path} {bad}: {e}");
        let msg = e["error"].as_str().unwrap_or_default();
        assert!(msg.contains(field), "{path} {bad}: {e} should name {field}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = user_inbox(&wa, TO).await;
    assert_eq!(
        after.as_array().unwrap().len(),
        7,
        "refused input sent nothing: {after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn votes_on_polls_reach_the_poll_author_decrypted_on_sqlite() {
    votes(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn votes_on_polls_reach_the_poll_author_decrypted_on_postgres() {
    votes(Db::Postgres).await;
}

/// The user's poll reaches the session (stored with its secret); the session's votes on it and
/// on its own poll reach the user, who decrypts them. Each vote is also recorded as others'
/// votes are: a `poll_vote` message with the names, `message.sent` with `pollVote`, and the
/// session's latest vote in `poll_votes`.
async fn votes(db: Db) {
    use crate::incoming_events::{outbox, wait_event};
    let Some((app, wa)) = app_on(db).await else {
        return;
    };
    const U: &str = "5511988880701";
    const ME: &str = "5511999990701@s.whatsapp.net";
    app.create_session("vote").await;
    pair(&app, &wa, "vote", "5511999990701").await;
    let user_jid = user(&wa, U).await;
    let session = app.store().get_session("vote").await.unwrap().unwrap().id;

    // The user asks; the session receives and stores the poll.
    let asked = user_sends(
        &wa,
        U,
        json!({"to": "5511999990701", "poll": {"name": "Lunch?", "options": ["Pizza", "Sushi", "Salad"], "selectableCount": 2}}),
    )
    .await;
    let path = format!("/vote/chat/messages?chatId={user_jid}");
    let got = poll(&app, &path, Duration::from_secs(20), |b| {
        b.as_array()
            .is_some_and(|a| a.iter().any(|m| m["msgId"] == asked.as_str()))
    })
    .await;
    assert_eq!(
        (
            got[0]["type"].clone(),
            got[0]["content"].clone(),
            got[0]["fromMe"].clone()
        ),
        (json!("poll"), json!("Lunch?"), json!(false)),
        "{got}"
    );

    // The session votes over HTTP; the user's client decrypts the vote with its poll's secret.
    let vote = json!({"phone": U, "pollMessageId": asked, "selectedOptions": ["Sushi", "Pizza"]});
    let vote_id = send(&app, "/vote/message/poll/vote", &vote).await;
    let inbox = wait_inbox(&wa, U, 1).await;
    let v = by_id(&inbox, &vote_id);
    assert_eq!(v["type"], "poll_vote", "{v}");
    assert_eq!(v["pollId"], asked.as_str());
    assert!(v.get("voteError").is_none(), "{v}");
    let mut chosen: Vec<String> = serde_json::from_value(v["options"].clone()).unwrap();
    chosen.sort();
    assert_eq!(chosen, ["Pizza", "Sushi"]);

    // The session's own vote follows others' path: message.sent with pollVote (voter: the
    // session's phone JID), stored as a poll_vote message with the names.
    let ev = wait_event(&app, session, "message.sent", |p| {
        p["message"]["id"] == vote_id.as_str()
    })
    .await;
    assert_eq!(
        ev["pollVote"],
        json!({"pollMessageId": asked, "voter": ME, "selectedOptions": ["Sushi", "Pizza"]}),
        "{ev}"
    );
    assert_eq!(
        (
            ev["message"]["type"].clone(),
            ev["message"]["content"].clone(),
            ev["message"]["fromMe"].clone(),
            ev["message"]["chat"].clone()
        ),
        (
            json!("poll_vote"),
            json!("Sushi, Pizza"),
            json!(true),
            json!(user_jid)
        ),
        "{ev}"
    );
    assert!(
        ev.get("Info").is_some() && ev.get("Message").is_some(),
        "{ev}"
    );
    let listed = app.get_json(&path).await;
    let m = listed
        .as_array()
        .and_then(|a| a.iter().find(|m| m["msgId"] == vote_id.as_str()))
        .unwrap_or_else(|| panic!("{vote_id} not listed: {listed}"));
    assert_eq!(
        (m["type"].clone(), m["content"].clone(), m["fromMe"].clone()),
        (json!("poll_vote"), json!("Sushi, Pizza"), json!(true)),
        "{m}"
    );
    let kept = app
        .store()
        .poll_votes(session, &user_jid, &asked)
        .await
        .unwrap();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(
        (
            kept[0].voter_jid.as_str(),
            kept[0].options.as_str(),
            kept[0].vote_msg_id.as_str()
        ),
        (ME, r#"["Sushi","Pizza"]"#, vote_id.as_str())
    );

    // A changed mind: one option, then none (the vote withdrawn).
    let one = send(
        &app,
        "/vote/message/poll/vote",
        &json!({"phone": U, "pollMessageId": asked, "selectedOptions": ["Salad"]}),
    )
    .await;
    let none = send(
        &app,
        "/vote/message/poll/vote",
        &json!({"phone": U, "pollMessageId": asked, "selectedOptions": []}),
    )
    .await;
    let inbox = wait_inbox(&wa, U, 3).await;
    assert_eq!(by_id(&inbox, &one)["options"], json!(["Salad"]), "{inbox}");
    assert_eq!(by_id(&inbox, &none)["options"], json!([]), "{inbox}");
    // The withdrawn vote is kept as others' are: an empty selection, the latest per voter.
    let ev = wait_event(&app, session, "message.sent", |p| {
        p["message"]["id"] == none.as_str()
    })
    .await;
    assert_eq!(
        (ev["pollVote"].clone(), ev["message"]["content"].clone()),
        (
            json!({"pollMessageId": asked, "voter": ME, "selectedOptions": []}),
            json!("")
        ),
        "{ev}"
    );
    let kept = app
        .store()
        .poll_votes(session, &user_jid, &asked)
        .await
        .unwrap();
    assert_eq!(
        kept.iter()
            .map(|v| (
                v.voter_jid.as_str(),
                v.options.as_str(),
                v.vote_msg_id.as_str()
            ))
            .collect::<Vec<_>>(),
        [(ME, "[]", none.as_str())]
    );

    // A vote on the session's own poll: single choice, decrypted by the user who received it.
    let own = send(
        &app,
        "/vote/message/send/poll",
        &json!({"phone": U, "name": "Mine", "options": ["Yes", "No"]}),
    )
    .await;
    let mine = send(
        &app,
        "/vote/message/poll/vote",
        &json!({"phone": U, "pollMessageId": own, "selectedOptions": ["No"]}),
    )
    .await;
    let inbox = wait_inbox(&wa, U, 5).await;
    let v = by_id(&inbox, &mine);
    assert_eq!(
        (v["pollId"].clone(), v["options"].clone()),
        (json!(own), json!(["No"])),
        "{v}"
    );
    let kept = app
        .store()
        .poll_votes(session, &user_jid, &own)
        .await
        .unwrap();
    assert_eq!(
        kept.iter()
            .map(|v| (
                v.voter_jid.as_str(),
                v.options.as_str(),
                v.vote_msg_id.as_str()
            ))
            .collect::<Vec<_>>(),
        [(ME, r#"["No"]"#, mine.as_str())]
    );

    // Refused: 400 naming the field, nothing sent.
    for (bad, field) in [
        (
            json!({"pollMessageId": asked, "selectedOptions": ["Pizza"]}),
            "phone",
        ),
        (
            json!({"phone": "abc", "pollMessageId": asked, "selectedOptions": ["Pizza"]}),
            "phone",
        ),
        (
            json!({"phone": U, "selectedOptions": ["Pizza"]}),
            "pollMessageId",
        ),
        (
            json!({"phone": U, "pollMessageId": "", "selectedOptions": ["Pizza"]}),
            "pollMessageId",
        ),
        (
            json!({"phone": U, "pollMessageId": "3EB0UNKNOWN", "selectedOptions": ["Pizza"]}),
            "pollMessageId",
        ),
        (
            json!({"phone": "5511988880799", "pollMessageId": asked, "selectedOptions": ["Pizza"]}),
            "pollMessageId",
        ),
        (
            json!({"phone": U, "pollMessageId": asked}),
            "selectedOptions",
        ),
        (
            json!({"phone": U, "pollMessageId": asked, "selectedOptions": ["Pasta"]}),
            "selectedOptions",
        ),
        (
            json!({"phone": U, "pollMessageId": asked, "selectedOptions": ["Pizza", "Pizza"]}),
            "selectedOptions",
        ),
        (
            json!({"phone": U, "pollMessageId": asked, "selectedOptions": ["Pizza", "Sushi", "Salad"]}),
            "selectedOptions",
        ),
        (
            json!({"phone": U, "pollMessageId": own, "selectedOptions": ["Yes", "No"]}),
            "selectedOptions",
        ),
    ] {
        let (code, e) = TestApp::call(app.post("/vote/message/poll/vote").json(&bad)).await;
        // A poll that is not known (in that chat) is 404; a bad field 400.
        let unknown = bad["pollMessageId"] == "3EB0UNKNOWN" || bad["phone"] == "5511988880799";
        assert_eq!(code, if unknown { 404 } else { 400 }, "{bad}: {e}");
        let msg = e["error"].as_str().unwrap_or_default();
        assert!(msg.contains(field), "{bad}: {e} should name {field}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = user_inbox(&wa, U).await;
    assert_eq!(
        after.as_array().unwrap().len(),
        5,
        "refused votes sent nothing: {after}"
    );
    // One message.sent with pollVote per vote sent, none for the refused ones.
    let announced = outbox(&app, session)
        .await
        .into_iter()
        .filter(|(n, p)| n == "message.sent" && p.get("pollVote").is_some())
        .count();
    assert_eq!(announced, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_unavailable_reaches_the_phone() {
    let Some((app, wa)) = app_with_wamock().await else {
        return;
    };
    const PHONE: &str = "5511999990801";
    app.create_session("unav").await;
    pair(&app, &wa, "unav", PHONE).await;
    // The account's phone, as a client of its own: it receives the peer request. wamock's
    // post-pairing key share came from a throwaway Signal store, so the phone first writes
    // to its own chat: the companion then holds a session the phone's client really has.
    user(&wa, PHONE).await;
    user_sends(&wa, PHONE, json!({"to": PHONE, "text": "note to self"})).await;
    let own_chat = format!("/unav/chat/messages?chatId={PHONE}@s.whatsapp.net");
    poll(&app, &own_chat, Duration::from_secs(20), |b| {
        b.as_array().is_some_and(|a| !a.is_empty())
    })
    .await;

    let body =
        json!({"chatJid": "5511988880801@s.whatsapp.net", "messageId": "3EB0AABBCCDDEEFF001122"});
    let (code, b) = TestApp::call(app.post("/unav/message/request-unavailable").json(&body)).await;
    assert_eq!(code, 200, "{b}");
    assert_eq!(b["message"], "unavailable message request sent", "{b}");
    let request_id = b["id"].as_str().unwrap_or_default().to_string();
    assert!(
        !request_id.is_empty() && request_id != "3EB0AABBCCDDEEFF001122",
        "the id is the peer request's own: {b}"
    );
    let inbox = wait_inbox(&wa, PHONE, 1).await;
    let req = inbox
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m.get("placeholderResend").is_some())
        .unwrap_or_else(|| panic!("no peer request in {inbox}"));
    assert_eq!(req["id"], request_id.as_str(), "{req}");
    assert_eq!(req["type"], "protocol", "{req}");
    assert_eq!(
        req["peerRequestType"], "PLACEHOLDER_MESSAGE_RESEND",
        "{req}"
    );
    let key = &req["placeholderResend"][0];
    assert_eq!(key["id"], "3EB0AABBCCDDEEFF001122", "{req}");
    assert_eq!(key["fromMe"], false, "{req}");
    assert!(
        key["remoteJid"].as_str().is_some_and(|j| !j.is_empty()),
        "{req}"
    );
    // whatsapp-rust asks once per message: the same request again is refused, nothing sent.
    let (code, e) = TestApp::call(app.post("/unav/message/request-unavailable").json(&body)).await;
    assert_eq!(code, 409, "{e}");
    assert!(
        e["error"]
            .as_str()
            .unwrap_or_default()
            .contains("messageId"),
        "{e}"
    );

    // OnWapp's spelling `chatId` works too; a group needs the author.
    let alias = json!({"chatId": "5511988880801", "messageId": "3EB0AABBCCDDEEFF001133"});
    let (code, b) = TestApp::call(app.post("/unav/message/request-unavailable").json(&alias)).await;
    assert_eq!(code, 200, "{b}");
    assert!(b["id"].as_str().is_some_and(|i| i != request_id), "{b}");
    for (bad, field) in [
        (json!({"messageId": "X"}), "chatJid"),
        (json!({"chatJid": "abc", "messageId": "X"}), "chatJid"),
        (json!({"chatJid": "5511988880801"}), "messageId"),
        (
            json!({"chatJid": "5511988880801", "messageId": " "}),
            "messageId",
        ),
        (
            json!({"chatJid": "120363000000000001@g.us", "messageId": "X"}),
            "senderJid",
        ),
        (
            json!({"chatJid": "5511988880801", "messageId": "X", "senderJid": "abc"}),
            "senderJid",
        ),
    ] {
        let (code, e) =
            TestApp::call(app.post("/unav/message/request-unavailable").json(&bad)).await;
        assert_eq!(code, 400, "{bad}: {e}");
        let msg = e["error"].as_str().unwrap_or_default();
        assert!(msg.contains(field), "{bad}: {e} should name {field}");
    }
}

fn sha(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// Polls the inbox until the entry `id` has its header file downloaded (or failed).
async fn downloaded(wa: &wamock::Server, phone: &str, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let inbox = user_inbox(wa, phone).await;
        if let Some(e) = inbox.as_array().and_then(|a| {
            a.iter()
                .find(|e| e["id"] == id && (e["sha256"].is_string() || e["mediaError"].is_string()))
        }) {
            return e.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} never downloaded: {inbox}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_files_are_uploaded_and_the_user_downloads_them() {
    use base64::Engine as _;
    let Some((app, wa)) = app_with_wamock().await else {
        return;
    };
    const U: &str = "5511988880901";
    app.create_session("hdr").await;
    pair(&app, &wa, "hdr", "5511999990901").await;
    user(&wa, U).await;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend((0..5000u32).map(|i| (i * 7 % 251) as u8));
    let pdf: Vec<u8> = (0..3000u32).map(|i| (i % 13) as u8 + b'a').collect();
    let mut card_png = png.clone();
    card_png.extend_from_slice(b"card");

    let interactive = send(
        &app,
        "/hdr/message/send/interactive",
        &json!({"phone": U, "title": "Look", "body": "New!", "image": b64(&png),
                "buttons": [{"name": "quick_reply", "params": {"display_text": "Buy", "id": "buy"}}]}),
    )
    .await;
    let template = send(
        &app,
        "/hdr/message/send/template",
        &json!({"phone": U, "content": "Your invoice", "document": b64(&pdf), "filename": "invoice.pdf",
                "buttons": [{"quickReply": {"displayText": "Thanks", "id": "ok"}}]}),
    )
    .await;
    let carousel = send(
        &app,
        "/hdr/message/send/carousel",
        &json!({"phone": U, "body": "Pick", "cards": [
            {"header": {"title": "One", "image": format!("data:image/png;base64,{}", b64(&card_png))}, "body": "first"}]}),
    )
    .await;

    let i = downloaded(&wa, U, &interactive).await;
    assert_eq!(
        i["sha256"],
        sha(&png),
        "the user's client downloaded the header: {i}"
    );
    assert_eq!(
        i["headerFile"],
        json!({"type": "image", "mimetype": "image/png", "fileSha256": sha(&png), "fileLength": png.len()})
    );
    assert_eq!(
        (i["title"].clone(), i["body"].clone()),
        (json!("Look"), json!("New!"))
    );

    let t = downloaded(&wa, U, &template).await;
    assert_eq!(t["sha256"], sha(&pdf), "{t}");
    assert_eq!(
        t["headerFile"],
        json!({"type": "document", "mimetype": "application/pdf", "fileSha256": sha(&pdf),
               "fileLength": pdf.len(), "fileName": "invoice.pdf"})
    );
    assert!(t.get("title").is_none(), "{t}");

    let inbox = wait_inbox(&wa, U, 3).await;
    let c = by_id(&inbox, &carousel);
    assert_eq!(
        c["cards"][0]["headerFile"],
        json!({"type": "image", "mimetype": "image/png", "fileSha256": sha(&card_png), "fileLength": card_png.len()}),
        "{c}"
    );
    assert_eq!(c["cards"][0]["title"], "One");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn votes_of_others_are_decrypted_stored_and_announced_on_sqlite() {
    votes_of_others(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn votes_of_others_are_decrypted_stored_and_announced_on_postgres() {
    votes_of_others(Db::Postgres).await;
}

/// The session's poll reaches the user, who votes (twice: a changed mind) through its own
/// whatsapp-rust client; the session decrypts each vote with the poll's secret: stored as a
/// `poll_vote` message with the option names, announced in `message.received` with
/// `pollVote`, and the voter's latest vote kept in `poll_votes`.
async fn votes_of_others(db: Db) {
    use crate::incoming_events::{admin, outbox, wait_event};
    let Some((app, wa)) = app_on(db).await else {
        return;
    };
    const U: &str = "5511988880702";
    const S: &str = "5511999990702";
    app.create_session("others").await;
    pair(&app, &wa, "others", S).await;
    let user_jid = user(&wa, U).await;
    let session = app.store().get_session("others").await.unwrap().unwrap().id;

    let asked = send(
        &app,
        "/others/message/send/poll",
        &json!({"phone": U, "name": "Colour?", "options": ["Red", "Green", "Blue"], "selectableCount": 2}),
    )
    .await;
    wait_inbox(&wa, U, 1).await;

    let vote_path = format!("/users/{U}/vote");
    let vote = |options: Value| {
        admin(
            &wa,
            &vote_path,
            json!({"to": S, "pollId": asked, "options": options}),
        )
    };
    let first = vote(json!(["Green", "Blue"])).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let ev = wait_event(&app, session, "message.received", |p| {
        p["message"]["id"] == first.as_str()
    })
    .await;
    assert_eq!(
        ev["pollVote"],
        json!({"pollMessageId": asked, "voter": user_jid, "selectedOptions": ["Green", "Blue"]}),
        "{ev}"
    );
    assert_eq!(
        (
            ev["message"]["type"].clone(),
            ev["message"]["content"].clone()
        ),
        (json!("poll_vote"), json!("Green, Blue")),
        "{ev}"
    );
    // OnWapp's keys stay beside ours.
    assert!(
        ev.get("Info").is_some() && ev.get("Message").is_some(),
        "{ev}"
    );

    let second = vote(json!(["Red"])).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let ev = wait_event(&app, session, "message.received", |p| {
        p["message"]["id"] == second.as_str()
    })
    .await;
    assert_eq!(ev["pollVote"]["selectedOptions"], json!(["Red"]), "{ev}");

    // Stored messages show the names.
    let stored = app
        .store()
        .get_message(session, &user_jid, &first)
        .await
        .unwrap()
        .expect("first vote stored");
    assert_eq!(
        (stored.kind.as_str(), stored.content.as_deref()),
        ("poll_vote", Some("Green, Blue"))
    );
    let path = format!("/others/chat/messages?chatId={user_jid}");
    let listed = poll(&app, &path, Duration::from_secs(10), |b| {
        b.as_array()
            .is_some_and(|a| a.iter().any(|m| m["msgId"] == second.as_str()))
    })
    .await;
    let m = listed
        .as_array()
        .and_then(|a| a.iter().find(|m| m["msgId"] == second.as_str()))
        .unwrap();
    assert_eq!(
        (m["type"].clone(), m["content"].clone()),
        (json!("poll_vote"), json!("Red")),
        "{m}"
    );

    // The latest vote per voter.
    let votes = app
        .store()
        .poll_votes(session, &user_jid, &asked)
        .await
        .unwrap();
    assert_eq!(votes.len(), 1, "{votes:?}");
    assert_eq!(
        (
            votes[0].voter_jid.as_str(),
            votes[0].options.as_str(),
            votes[0].vote_msg_id.as_str()
        ),
        (user_jid.as_str(), r#"["Red"]"#, second.as_str())
    );
    let announced = outbox(&app, session)
        .await
        .into_iter()
        .filter(|(_, p)| p.get("pollVote").is_some())
        .count();
    assert_eq!(announced, 2);
}
