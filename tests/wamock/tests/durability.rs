//! wamock keeps what a device has not acknowledged and delivers it again at its next login, as
//! WhatsApp does; so a client with whatsapp-rust's inbound durability hook loses nothing when
//! it cannot store a message: the hook refuses, no receipt goes out, the message stays on the
//! server, and after a restart it comes again and is acknowledged once stored. A message
//! acknowledged before is not delivered again.

mod common;

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, Ordering},
};
use std::time::Duration;

use common::{TestClient, create_user, init_tracing, pair_and_connect, user_send, wait_devices};
use wacore::store::InMemoryBackend;
use whatsapp_rust::{Client, InboundDurabilityHook, types::events::InboundMessage};

const WAIT: Duration = Duration::from_secs(15);

/// What the hook saw, and whether it refuses (a database that is down).
#[derive(Default)]
struct Shelf {
    refuse: AtomicBool,
    seen: Mutex<Vec<String>>,
}

impl Shelf {
    fn seen(&self, id: &str) -> usize {
        self.seen
            .lock()
            .map(|s| s.iter().filter(|x| *x == id).count())
            .unwrap_or(0)
    }
}

struct Hook(Arc<Shelf>);

#[async_trait::async_trait]
impl InboundDurabilityHook for Hook {
    async fn on_messages(&self, _: Arc<Client>, batch: &[InboundMessage]) -> anyhow::Result<()> {
        if let Ok(mut seen) = self.0.seen.lock() {
            seen.extend(batch.iter().map(|m| m.info.id.clone()));
        }
        if self.0.refuse.load(Ordering::SeqCst) {
            anyhow::bail!("the store is down");
        }
        Ok(())
    }
}

async fn wait_seen(shelf: &Shelf, id: &str, times: usize) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + WAIT;
    while shelf.seen(id) < times {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the hook saw {id} {} times, not {times}",
            shelf.seen(id)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_not_acknowledged_is_delivered_again_at_the_next_login() -> anyhow::Result<()> {
    init_tracing();
    let server = wamock::Server::start("127.0.0.1:0").await?;
    let http = server.http_url();
    let backend = Arc::new(InMemoryBackend::new());
    let shelf = Arc::new(Shelf::default());
    let session =
        TestClient::start_hooked(&server.ws_url(), backend.clone(), Hook(shelf.clone())).await?;
    pair_and_connect(&server, &session, "5511999990310").await?;
    let me = "5511999990310@s.whatsapp.net";
    create_user(&http, "5511999990320", "Dora").await?;

    // Stored: acknowledged, so nothing stays on the server.
    let kept = user_send(&http, "5511999990320", me, "stored at once").await?;
    wait_seen(&shelf, &kept, 1).await?;
    wait_devices(&http, WAIT, |d| d[0].get("unacked").is_none()).await?;

    // Not stored: no acknowledgement, the server keeps it.
    shelf.refuse.store(true, Ordering::SeqCst);
    let refused = user_send(&http, "5511999990320", me, "the store is down").await?;
    wait_seen(&shelf, &refused, 1).await?;
    let d = wait_devices(&http, WAIT, |d| d[0]["unacked"] == 1).await?;
    assert_eq!(d[0]["connected"], true, "{d}");

    // The next login delivers it again; stored this time, it is acknowledged. The message
    // acknowledged before does not come again.
    session.shutdown().await;
    wait_devices(&http, WAIT, |d| d[0]["connected"] == false).await?;
    shelf.refuse.store(false, Ordering::SeqCst);
    let session = TestClient::start_hooked(&server.ws_url(), backend, Hook(shelf.clone())).await?;
    wait_seen(&shelf, &refused, 2).await?;
    wait_devices(&http, WAIT, |d| {
        d[0]["connected"] == true && d[0].get("unacked").is_none()
    })
    .await?;
    assert_eq!(shelf.seen(&kept), 1, "an acknowledged message came again");
    session.shutdown().await;
    server.stop().await;
    Ok(())
}
