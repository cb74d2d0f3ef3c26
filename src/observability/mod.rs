//! Logs (console or JSON), the Prometheus metric catalogue and W3C trace context.

mod metrics;
pub mod trace_context;

pub use metrics::{ClusterGauges, Metrics};

use std::io::IsTerminal;

use crate::config::{Config, LogFormat};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Installs the global subscriber. `RUST_LOG`, when set, refines `LOG_LEVEL`.
pub fn init_tracing(cfg: &Config) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{},sqlx=warn,hyper=warn", cfg.log_level)));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match cfg.log_format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true),
            )
            .try_init(),
        LogFormat::Console => registry
            .with(fmt::layer().with_ansi(std::io::stdout().is_terminal()))
            .try_init(),
    };
}
