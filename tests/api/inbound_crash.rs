//! Inbound messages survive `kill -9` (issue 15): four simulated users stream hundreds of texts
//! to a paired session while the real binary running it is killed with SIGKILL twice, each time
//! started again at once on the same data directory and database, on SQLite and on Postgres.
//! Afterwards every text a user sent is in the session's chat history (once, with its text) and
//! reached the webhook as `message.received`; a text that reached it more than once (delivered,
//! then killed before the outcome was written) carried the same `X-Webhook-Id` every time.
//! WhatsApp (wamock) keeps a message until the device acknowledges it, so nothing is lost only
//! if the session acknowledges a message after it is stored, never before.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    process::Child,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Router, extract::State, http::HeaderMap, routing::post};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::helpers::{Db, GLOBAL_KEY, PgDatabase, eventually};
use crate::incoming_events::admin;
use crate::process::{post_json, spawn_on};
use crate::wa::user;

const SESSION: &str = "flood";
const ME: &str = "5511966661500";
pub(crate) const USERS: usize = 4;
/// Texts per user.
pub(crate) const TEXTS: usize = 100;
/// The most `GET /:session/chat/messages` lists at once.
const PAGE: usize = 200;
/// Between two texts of one user: spreads the stream over the kills, no correctness depends on it.
const PACE: Duration = Duration::from_millis(10);

/// A text a user sent, as wamock confirmed it: the user's chat, the text, its message id.
#[derive(Debug, Clone)]
pub(crate) struct Sent {
    chat: String,
    text: String,
    id: String,
}

/// One `message.received` the receiver got: the message id and text from the payload, and the
/// `X-Webhook-Id` it came with.
#[derive(Debug, Clone)]
pub(crate) struct Hit {
    msg: String,
    text: String,
    hook: String,
}

/// Every `message.received` request the receiver got, in arrival order.
pub(crate) type Log = Arc<Mutex<Vec<Hit>>>;

pub(crate) async fn receiver() -> (Log, String) {
    async fn hook(
        State(log): State<Log>,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> &'static str {
        let v: Value = serde_json::from_slice(&body).unwrap_or_default();
        if v["event"] == "message.received" {
            let msg = v["Info"]["ID"]
                .as_str()
                .or_else(|| v["message"]["id"].as_str())
                .unwrap_or_default()
                .to_string();
            let text = v["message"]["content"]
                .as_str()
                .or_else(|| v["Message"]["conversation"].as_str())
                .unwrap_or_default()
                .to_string();
            let hook = headers
                .get("x-webhook-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            log.lock().unwrap().push(Hit { msg, text, hook });
        }
        "ok"
    }
    let log: Log = Arc::default();
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (log, url)
}

/// The `onwapp` binary on a data directory, talking to wamock, delivering webhooks without
/// delay; killed (SIGKILL) and reaped when dropped, so no process outlives the test.
struct Binary {
    child: Child,
    base: String,
}

impl Binary {
    async fn start(dir: &std::path::Path, ws_url: &str, database_url: Option<&str>) -> Binary {
        let mut envs = vec![
            ("WHATSAPP_SERVER_URL", ws_url.to_string()),
            ("WEBHOOK_POLL_MS", "20".to_string()),
            ("WEBHOOK_BASE_DELAY_MS", "20".to_string()),
        ];
        if let Some(url) = database_url {
            envs.push(("DATABASE_URL", url.to_string()));
        }
        let (child, base) = spawn_on(dir, &envs).await;
        Binary { child, base }
    }

    /// SIGKILL: no shutdown, no goodbye to WhatsApp, whatever is in flight is lost. Panics if
    /// the process had already exited by itself.
    fn kill_9(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("the binary exited by itself: {status}");
        }
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET url` with the global key: the status and the JSON answer, `(0, null)` when nothing
/// answers.
async fn get(url: String) -> (u16, Value) {
    let sent = reqwest::Client::new()
        .get(url)
        .header("Authorization", GLOBAL_KEY)
        .timeout(Duration::from_secs(20))
        .send()
        .await;
    match sent {
        Ok(r) => {
            let code = r.status().as_u16();
            (code, r.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

/// Polls `GET base+path` until `done` accepts the body; panics with the last body after `limit`.
async fn wait_for(base: &str, path: &str, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let (_, b) = get(format!("{base}{path}")).await;
        if done(&b) {
            return b;
        }
        assert!(Instant::now() < deadline, "GET {path} never got there: {b}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Has the simulated user `phone` send `text` to `to`; the message id wamock answers.
async fn send_text(
    client: &reqwest::Client,
    wa: &str,
    phone: &str,
    to: &str,
    text: &str,
) -> Result<String, String> {
    let r = client
        .post(format!("{wa}/admin/users/{phone}/send"))
        .timeout(Duration::from_secs(30))
        .json(&json!({"to": to, "text": text}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let code = r.status();
    let b: Value = r.json().await.unwrap_or(Value::Null);
    match b["id"].as_str() {
        Some(id) if code.is_success() => Ok(id.to_string()),
        _ => Err(format!("{code} {b}")),
    }
}

/// User `k`'s stream: `TEXTS` texts `u{k}-{i}` to the session, one after the other, whether the
/// session is up or not (wamock queues for an offline device). A send wamock refuses is tried
/// again, a few times. The later texts wait for the kills (`kills` counts them), so the stream
/// spans both: at most half is sent before the first, two thirds before the second. What was
/// sent, and how many sends were tried again.
async fn stream(
    k: usize,
    phone: String,
    chat: String,
    wa: String,
    to: String,
    sent: Arc<AtomicUsize>,
    mut kills: watch::Receiver<u32>,
) -> (Vec<Sent>, usize) {
    let client = reqwest::Client::new();
    let mut out = Vec::with_capacity(TEXTS);
    let mut retries = 0;
    for i in 0..TEXTS {
        let need = if i >= TEXTS * 2 / 3 {
            2
        } else if i >= TEXTS / 2 {
            1
        } else {
            0
        };
        let _ = kills.wait_for(|n| *n >= need).await;
        let text = format!("u{k}-{i}");
        let mut attempt = 0;
        let id = loop {
            attempt += 1;
            match send_text(&client, &wa, &phone, &to, &text).await {
                Ok(id) => break id,
                Err(e) => {
                    assert!(attempt < 5, "{phone} could not send {text:?}: {e}");
                    retries += 1;
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
            }
        };
        sent.fetch_add(1, Ordering::SeqCst);
        out.push(Sent {
            chat: chat.clone(),
            text,
            id,
        });
        tokio::time::sleep(PACE).await;
    }
    (out, retries)
}

/// The users' streams (`stream`), side by side, to the session of phone `me`: users
/// `first_phone`, `first_phone + 1`, ... Answers them, the count of texts wamock took, and the
/// sender that lets the later texts go (the number of upsets so far: kills, a drain).
#[allow(clippy::type_complexity)]
pub(crate) async fn streams_to(
    wa: &wamock::Server,
    me: &str,
    first_phone: u64,
) -> (
    Vec<tokio::task::JoinHandle<(Vec<Sent>, usize)>>,
    Arc<AtomicUsize>,
    watch::Sender<u32>,
) {
    let to = format!("{me}@s.whatsapp.net");
    let sent = Arc::new(AtomicUsize::new(0));
    let (upsets, gate) = watch::channel(0u32);
    let mut streams = Vec::new();
    for k in 0..USERS {
        let phone = (first_phone + k as u64).to_string();
        let chat = user(wa, &phone).await;
        streams.push(tokio::spawn(stream(
            k,
            phone,
            chat,
            wa.http_url(),
            to.clone(),
            sent.clone(),
            gate.clone(),
        )));
    }
    (streams, sent, upsets)
}

/// The chat's stored messages, every page: message id → the contents stored under it.
async fn history(base: &str, session: &str, chat: &str) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for page in 0.. {
        let (_, b) = get(format!(
            "{base}/{session}/chat/messages?chatId={chat}&limit={PAGE}&offset={}",
            page * PAGE
        ))
        .await;
        let rows = b.as_array().cloned().unwrap_or_default();
        for m in &rows {
            if let Some(id) = m["msgId"].as_str() {
                out.entry(id.to_string())
                    .or_default()
                    .push(m["content"].as_str().unwrap_or_default().to_string());
            }
        }
        if rows.len() < PAGE {
            break;
        }
    }
    out
}

/// What is still missing, as `text id` labels: from the chat history (or stored with another
/// text), and from the webhook (or delivered with another text).
async fn gaps(base: &str, session: &str, truth: &[Sent], log: &Log) -> (Vec<String>, Vec<String>) {
    let chats: BTreeSet<&str> = truth.iter().map(|s| s.chat.as_str()).collect();
    let mut stored = HashMap::new();
    for chat in chats {
        stored.extend(history(base, session, chat).await);
    }
    let mut hooked: HashMap<String, Vec<String>> = HashMap::new();
    for h in log.lock().unwrap().iter() {
        hooked
            .entry(h.msg.clone())
            .or_default()
            .push(h.text.clone());
    }
    let (mut from_history, mut from_webhook) = (Vec::new(), Vec::new());
    for s in truth {
        match stored.get(&s.id) {
            None => from_history.push(format!("{} {}", s.text, s.id)),
            Some(c) if !c.contains(&s.text) => {
                from_history.push(format!("{} {} stored as {c:?}", s.text, s.id))
            }
            Some(_) => {}
        }
        match hooked.get(&s.id) {
            None => from_webhook.push(format!("{} {}", s.text, s.id)),
            Some(t) if !t.contains(&s.text) => {
                from_webhook.push(format!("{} {} delivered as {t:?}", s.text, s.id))
            }
            Some(_) => {}
        }
    }
    (from_history, from_webhook)
}

/// The first few of a list, for a failure message.
pub(crate) fn few<T>(v: &[T]) -> &[T] {
    &v[..v.len().min(5)]
}

/// Polls (up to 120 s) until every text of `truth` is in `session`'s chat history (asked at
/// `base`) and reached the webhook, then checks each is stored once and that a text delivered
/// again came with the same `X-Webhook-Id`. `what` says what happened, for the failure
/// message. Answers the deliveries and the texts delivered.
pub(crate) async fn all_stored_once(
    base: &str,
    session: &str,
    truth: &[Sent],
    log: &Log,
    what: &str,
) -> (usize, usize) {
    // Every text stored and delivered, in time.
    let (t, l) = (truth, log);
    let complete = eventually(Duration::from_secs(120), move || async move {
        let (history, webhook) = gaps(base, session, t, l).await;
        history.is_empty() && webhook.is_empty()
    })
    .await;
    if !complete {
        let (history, webhook) = gaps(base, session, truth, log).await;
        let (_, status) = get(format!("{base}/{session}/status")).await;
        panic!(
            "{} of {} texts missing from the chat history, {} from the webhook, 120 s after \
             the stream ({what}); from the history: {:?}; from the webhook: {:?}; session: \
             {status}",
            history.len(),
            truth.len(),
            webhook.len(),
            few(&history),
            few(&webhook),
        );
    }

    // Stored once each.
    let mut stored = HashMap::new();
    let chats: BTreeSet<&str> = truth.iter().map(|s| s.chat.as_str()).collect();
    for chat in chats {
        stored.extend(history(base, session, chat).await);
    }
    let twice: Vec<&Sent> = truth
        .iter()
        .filter(|s| stored.get(&s.id).is_some_and(|c| c.len() != 1))
        .collect();
    assert!(
        twice.is_empty(),
        "{} texts stored more than once: {:?}",
        twice.len(),
        few(&twice)
    );

    // A text delivered again came with the same X-Webhook-Id; an X-Webhook-Id names one text.
    let hits = log.lock().unwrap().clone();
    let mut hooks: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut texts: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for h in &hits {
        assert!(!h.hook.is_empty(), "a delivery without X-Webhook-Id: {h:?}");
        hooks.entry(&h.msg).or_default().insert(&h.hook);
        texts.entry(&h.hook).or_default().insert(&h.msg);
    }
    let mixed: Vec<_> = hooks.iter().filter(|(_, ids)| ids.len() != 1).collect();
    assert!(
        mixed.is_empty(),
        "{} texts reached the webhook under different X-Webhook-Ids: {:?}",
        mixed.len(),
        few(&mixed)
    );
    let shared: Vec<_> = texts.iter().filter(|(_, msgs)| msgs.len() != 1).collect();
    assert!(
        shared.is_empty(),
        "one X-Webhook-Id carried different messages: {:?}",
        few(&shared)
    );
    (hits.len(), hooks.len())
}

async fn stream_through_two_kills(db: Db) {
    let pg = match db {
        Db::Postgres => match PgDatabase::create().await {
            Some(pg) => Some(pg),
            None => return,
        },
        Db::Sqlite => None,
    };
    let url = pg.as_ref().map(|p| p.url.as_str());
    let wa = wamock::Server::start("127.0.0.1:0").await.unwrap();
    let ws = wa.ws_url();
    let dir = tempfile::tempdir().unwrap();
    let (log, hook) = receiver().await;

    // A session with a webhook for every received message, paired by QR.
    let mut bin = Binary::start(dir.path(), &ws, url).await;
    let (code, b) = post_json(
        format!("{}/sessions", bin.base),
        json!({"session": SESSION}),
    )
    .await;
    assert_eq!(code, 201, "{b}");
    let (code, b) = post_json(
        format!("{}/{SESSION}/webhook", bin.base),
        json!({"url": hook, "events": ["message.received"]}),
    )
    .await;
    assert_eq!(code, 200, "{b}");
    let (code, b) = post_json(format!("{}/{SESSION}/connect", bin.base), json!({})).await;
    assert_eq!(code, 200, "{b}");
    let qr = wait_for(
        &bin.base,
        &format!("/{SESSION}/qr"),
        Duration::from_secs(15),
        |b| b.get("code").is_some(),
    )
    .await;
    admin(&wa, "/scan-qr", json!({"qr": qr["code"], "phone": ME})).await;
    wait_for(
        &bin.base,
        &format!("/{SESSION}/status"),
        Duration::from_secs(40),
        |b| b["status"] == "connected",
    )
    .await;

    // The users stream side by side; `sent` counts the texts wamock took.
    let (streams, sent, kills) = streams_to(&wa, ME, 5511966661501).await;
    let total = USERS * TEXTS;

    // The first SIGKILL once a third is sent, and a restart at once on the same data.
    let deadline = Instant::now() + Duration::from_secs(120);
    while sent.load(Ordering::SeqCst) < total / 3 {
        assert!(
            Instant::now() < deadline,
            "the users sent only {} texts",
            sent.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    bin.kill_9();
    let first = sent.load(Ordering::SeqCst);
    kills.send_replace(1);
    bin = Binary::start(dir.path(), &ws, url).await;

    // The second once the new process has answered HTTP for 1.3 s (reconnecting, taking the
    // queued texts), and a restart at once again.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    bin.kill_9();
    let second = sent.load(Ordering::SeqCst);
    kills.send_replace(2);
    bin = Binary::start(dir.path(), &ws, url).await;

    let mut truth = Vec::with_capacity(total);
    let mut retries = 0;
    for s in streams {
        let (list, r) = s.await.expect("a user's stream failed");
        truth.extend(list);
        retries += r;
    }
    assert_eq!(truth.len(), total);

    let (deliveries, texts) = all_stored_once(
        &bin.base,
        SESSION,
        &truth,
        &log,
        &format!("killed after {first} and {second} sends"),
    )
    .await;
    eprintln!(
        "{db:?}: killed after {first} and {second} of {total} sends, {retries} sends tried again; \
         {deliveries} webhook deliveries for {texts} texts, repeats with the same X-Webhook-Id"
    );

    bin.kill_9();
    drop(bin);
    wa.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn texts_streamed_through_two_kill_9s_are_all_stored_and_delivered_on_sqlite() {
    stream_through_two_kills(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn texts_streamed_through_two_kill_9s_are_all_stored_and_delivered_on_postgres() {
    stream_through_two_kills(Db::Postgres).await;
}
