//! Logs (console or JSON), the Prometheus metric catalogue, W3C trace context and
//! OpenTelemetry traces.

mod metrics;
pub mod otel;
pub mod trace_context;

pub use metrics::{ClusterGauges, Metrics};
pub use otel::Traces;

use std::io::IsTerminal;

use crate::config::{Config, LogFormat};
use tracing_subscriber::{EnvFilter, Layer, filter::Targets, fmt, prelude::*};

/// The log filter of a `LOG_LEVEL`: sqlx and hyper at `warn`; openraft's state dumps (its
/// `info` lines print whole Raft states) only at `debug` and `trace`, where they help.
pub fn default_filter(level: &str) -> String {
    let raft = if matches!(level, "debug" | "trace") {
        level
    } else {
        "warn"
    };
    format!("{level},sqlx=warn,hyper=warn,openraft={raft}")
}

/// Installs the global subscriber: logs filtered by `LOG_LEVEL` (`RUST_LOG`, when set, refines
/// it) and, when an OTLP endpoint is configured, the server's own spans exported whatever the
/// log level. Keep the answer for the life of the process: dropping it flushes the traces.
pub fn init_tracing(cfg: &Config) -> Result<Traces, String> {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(default_filter(&cfg.log_level)));
    let logs = match cfg.log_format {
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_filter(filter)
            .boxed(),
        LogFormat::Console => fmt::layer()
            .with_ansi(std::io::stdout().is_terminal())
            .with_filter(filter)
            .boxed(),
    };
    let provider = match &cfg.otel {
        Some(_) => Some(otel::provider(cfg.cluster.node_id).map_err(|e| format!("traces: {e}"))?),
        None => None,
    };
    let traces = provider.as_ref().map(|p| {
        // What the request path pays per span, trimmed: no source location, thread, target or
        // busy/idle timing attributes, and no OpenTelemetry context entered with each span (no
        // other OpenTelemetry instrumentation reads it); `docs/benchmarks.md` has the cost.
        tracing_opentelemetry::layer()
            .with_tracer(otel::tracer(p))
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_context_activation(false)
            .with_filter(Targets::new().with_target("onwapp", tracing::Level::INFO))
    });
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init();
    Ok(Traces::new(provider))
}

#[cfg(test)]
mod tests {
    use super::default_filter;

    #[test]
    fn raft_state_dumps_only_when_debugging() {
        assert_eq!(
            default_filter("info"),
            "info,sqlx=warn,hyper=warn,openraft=warn"
        );
        assert_eq!(
            default_filter("debug"),
            "debug,sqlx=warn,hyper=warn,openraft=debug"
        );
    }
}
