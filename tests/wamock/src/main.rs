//! `wamock --listen 127.0.0.1:7780`: the chat websocket at `/ws/chat` and the admin
//! API at `/admin/*` on one port.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(name = "wamock", about = "A WhatsApp server for tests")]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, env = "WAMOCK_LISTEN", default_value = "127.0.0.1:7780")]
    listen: String,
}

async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let server = match wamock::Server::start(&args.listen).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(listen = %args.listen, error = %e, "cannot start wamock");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(ws = %server.ws_url(), admin = %server.http_url(), "wamock ready");
    terminated().await;
    server.stop().await;
    ExitCode::SUCCESS
}
