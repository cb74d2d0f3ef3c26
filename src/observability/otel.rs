//! Traces over OpenTelemetry (OTLP/HTTP, protobuf) when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set.
//!
//! The `tracing` spans the server already makes become OpenTelemetry spans through
//! `tracing-opentelemetry`: `request` (one per HTTP request on each node it reaches, kind
//! server), `forward` (the hop to the session's owner, kind client), `whatsapp.send` and
//! `webhook.deliver`. The ids are OpenTelemetry's: the request span continues the caller's
//! `traceparent`, the forwarding hop sends its own span as the owner's parent, and the answer's
//! `traceresponse` and the log lines carry the same ids, so one trace spans both nodes.
//!
//! The standard variables are honoured by the SDK and the exporter: `OTEL_SERVICE_NAME`
//! (default `onwapp`), `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` and `_ARG`,
//! `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_BSP_*` (batching),
//! `OTEL_SDK_DISABLED`. The exporter speaks `http/protobuf` over plain HTTP (a collector beside
//! the node or in the cluster); other protocols and `https://` are refused at start-up by name.
//!
//! Disabled (no endpoint), no OpenTelemetry layer is installed and [`enabled`] is one relaxed
//! load: the request path pays nothing for it.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use bytes::Bytes;
use opentelemetry::{
    KeyValue,
    trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider,
    },
};
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported (an OpenTelemetry layer is installed).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Where and how traces go, read from the `OTEL_*` variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtelSettings {
    /// The endpoint variable that was set (traces-specific first), for messages.
    pub endpoint: String,
}

/// The exporter's settings, or `None` when traces are off; a variable the exporter cannot honour
/// is an error naming it.
pub fn settings_from(
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<OtelSettings>, crate::config::ConfigError> {
    let err = |var: &'static str, value: &str, reason: &str| crate::config::ConfigError {
        var,
        value: value.to_string(),
        reason: reason.to_string(),
    };
    if get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    if let Some(v) = get("OTEL_TRACES_EXPORTER") {
        match v.as_str() {
            "none" => return Ok(None),
            "otlp" => {}
            _ => return Err(err("OTEL_TRACES_EXPORTER", &v, "must be otlp or none")),
        }
    }
    let endpoint = [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .into_iter()
    .find_map(|var| get(var).map(|v| (var, v)));
    let Some((var, endpoint)) = endpoint else {
        return Ok(None);
    };
    match url::Url::parse(&endpoint) {
        Ok(u) if u.scheme() == "http" && u.host().is_some() => {}
        Ok(u) if u.scheme() == "https" => {
            return Err(err(
                var,
                &crate::config::redact_url(&endpoint),
                "https is not supported: export over http to a collector beside the node",
            ));
        }
        _ => {
            return Err(err(
                var,
                &crate::config::redact_url(&endpoint),
                "must be an http:// URL with a host",
            ));
        }
    }
    for var in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Some(p) = get(var) {
            if p != "http/protobuf" {
                return Err(err(var, &p, "only http/protobuf is supported"));
            }
            break;
        }
    }
    Ok(Some(OtelSettings { endpoint }))
}

/// Builds the tracer provider; the caller installs its layer and keeps [`Traces`].
pub(super) fn provider(node_id: u64) -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_http_client(Exporter::new()?)
        .with_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let mut resource = Resource::builder().with_attributes([
        KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        KeyValue::new("service.instance.id", node_id.to_string()),
    ]);
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.trim().is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| v.contains("service.name="));
    if !named {
        resource = resource.with_service_name("onwapp");
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

pub(super) fn tracer(provider: &SdkTracerProvider) -> opentelemetry_sdk::trace::SdkTracer {
    ENABLED.store(true, Ordering::Relaxed);
    provider.tracer("onwapp")
}

/// Keeps the tracer provider; dropping it flushes the spans still queued (at most 5 s).
pub struct Traces {
    provider: Option<SdkTracerProvider>,
}

impl Traces {
    pub(super) fn new(provider: Option<SdkTracerProvider>) -> Self {
        Traces { provider }
    }
}

impl Drop for Traces {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            ENABLED.store(false, Ordering::Relaxed);
            if let Err(e) = p.shutdown_with_timeout(Duration::from_secs(5)) {
                eprintln!("onwapp: flushing traces: {e}");
            }
        }
    }
}

/// Makes `span` continue the caller's trace (`trace_id`, its `parent` span, `flags`), and
/// answers the ids OpenTelemetry gave it: `(trace_id, span_id, flags)`. `None` when traces are
/// off or the span is disabled.
pub fn adopt(span: &tracing::Span, parent: Option<(u128, u64, u8)>) -> Option<(u128, u64, u8)> {
    if !enabled() || span.is_disabled() {
        return None;
    }
    if let Some((trace, parent, flags)) = parent {
        let remote = SpanContext::new(
            TraceId::from(trace),
            SpanId::from(parent),
            TraceFlags::new(flags),
            true,
            TraceState::default(),
        );
        // Only fails for a span already started, which this one is not.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
    ids(span)
}

/// Names the exported span of `span` (once started, its `otel.name` field no longer renames it).
pub fn rename(span: &tracing::Span, name: String) {
    if enabled() {
        span.context().span().update_name(name);
    }
}

/// The OpenTelemetry ids of `span`: `(trace_id, span_id, flags)`.
pub fn ids(span: &tracing::Span) -> Option<(u128, u64, u8)> {
    if !enabled() {
        return None;
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| {
        (
            u128::from_be_bytes(sc.trace_id().to_bytes()),
            u64::from_be_bytes(sc.span_id().to_bytes()),
            sc.trace_flags().to_u8(),
        )
    })
}

/// The exporter's HTTP client: our reqwest, run on the server's tokio runtime (the SDK's batch
/// processor exports from a thread of its own, outside any runtime).
#[derive(Debug)]
struct Exporter {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

/// Largest answer read from a collector (its answers are a few bytes).
const MAX_ANSWER: usize = 64 * 1024;

impl Exporter {
    fn new() -> Result<Self, String> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "traces need the tokio runtime".to_string())?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Exporter { client, runtime })
    }
}

#[async_trait::async_trait]
impl HttpClient for Exporter {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let task = self.runtime.spawn(async move {
            let (parts, body) = request.into_parts();
            let mut req = client
                .request(parts.method, parts.uri.to_string())
                .body(body);
            for (k, v) in &parts.headers {
                req = req.header(k, v);
            }
            let mut resp = req.send().await?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await? {
                if body.len() + chunk.len() > MAX_ANSWER {
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            let mut out = Response::builder().status(status);
            if let Some(h) = out.headers_mut() {
                *h = headers;
            }
            Ok::<_, HttpError>(out.body(Bytes::from(body))?)
        });
        task.await?
    }
}
