//! The `onwapp` binary: parse the configuration, build the app, serve until a signal.

use std::process::ExitCode;

use onwapp::{
    app::{App, shutdown_signal},
    auth::keys_file_hint,
    cli::{self, Command},
    config::Config,
    observability,
};

/// mimalloc: measurably faster than the system allocator for this request mix (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    // Every file and directory the server creates is its user's alone (0600/0700): they hold
    // session keys and every device's WhatsApp keys.
    // SAFETY: umask(2) only sets the process's file mode mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match Command::parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("onwapp: {e}");
            return ExitCode::from(2);
        }
    };
    if command == Command::Version {
        // Before the configuration: a bad variable does not hide the version.
        println!("onwapp-rs {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("onwapp: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Command::Drain { timeout_seconds } = command {
        return match cli::drain(&config, timeout_seconds).await {
            Ok(answer) => {
                println!("{answer}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("onwapp drain: {e}");
                ExitCode::from(1)
            }
        };
    }
    // Flushes the spans still queued when it drops, at the end of `main`.
    let _traces = match observability::init_tracing(&config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("onwapp: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(file) = &config.dotenv {
        tracing::info!(file = %file.display(), "read variables the environment does not set from .env");
    }
    for (var, why) in &config.without_effect {
        tracing::warn!("{var} is set but has no effect in onwapp-rs: {why}");
    }
    let (bind, port) = (config.bind_address, config.port);
    let app = match App::build(config).await {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("start-up failed: {e:#}");
            eprintln!("onwapp: start-up failed: {e:#}");
            return ExitCode::from(1);
        }
    };
    if app
        .state
        .config
        .global_api_key
        .as_ref()
        .is_some_and(|k| k.len() < 16)
    {
        tracing::warn!("GLOBAL_API_KEY is shorter than 16 characters: easy to guess");
    }
    if app.global_key_generated {
        tracing::warn!(
            "GLOBAL_API_KEY is not set: generated one and stored it; read it with `{}`",
            keys_file_hint(&app.state.config.data_dir)
        );
    }
    let listener = match tokio::net::TcpListener::bind((bind, port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("onwapp: BIND_ADDRESS={bind} PORT={port}: cannot listen: {e}");
            return ExitCode::from(1);
        }
    };
    tracing::info!(
        port,
        database = app.state.store.kind(),
        rate_limiter = app.state.limiter.backend(),
        version = env!("CARGO_PKG_VERSION"),
        "onwapp listening"
    );
    match app.serve(listener, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("server error: {e:#}");
            ExitCode::from(1)
        }
    }
}
