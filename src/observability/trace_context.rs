//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>) across the forwarding hop.
//!
//! Every request gets a trace: the caller's `traceparent` when it sends a valid one, else a new
//! trace id. Each node that handles the request is one span of that trace, with its own span
//! id. The request's log span carries `trace_id` and `span_id`. A forwarded request carries
//! `traceparent` with the entry node's span as the parent, so the owner's logs join the same
//! trace. The answer's `traceresponse` header (Trace Context Level 2) names the trace and the
//! span that served it; a forwarded answer keeps the owner's.

use axum::{extract::Request, middleware::Next, response::Response};
use http::HeaderValue;
use tracing::{Instrument, field::display};

use super::otel;
use crate::http::middleware::RouteTemplate;

pub const TRACEPARENT: &str = "traceparent";
pub const TRACERESPONSE: &str = "traceresponse";

/// This node's span of a request's trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: u128,
    /// This node's span.
    pub span_id: u64,
    /// The caller's span, when it sent one.
    pub parent_id: Option<u64>,
    /// `01` when the caller sampled the trace (new traces are sampled).
    pub flags: u8,
}

impl TraceContext {
    /// Parses a version-00 `traceparent`: `00-<32 hex>-<16 hex>-<2 hex>`, ids not all zero.
    /// Unknown higher versions are read by the same first four fields, as the spec asks.
    pub fn parse_parent(value: &str) -> Option<(u128, u64, u8)> {
        let mut parts = value.trim().split('-');
        let version = parts.next().filter(|v| v.len() == 2)?;
        let version = u8::from_str_radix(version, 16).ok()?;
        let (trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?);
        if version == 0xff || (version == 0 && parts.next().is_some()) {
            return None;
        }
        let lower_hex = |s: &str, n: usize| {
            s.len() == n
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if !lower_hex(trace, 32) || !lower_hex(parent, 16) || !lower_hex(flags, 2) {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok().filter(|t| *t != 0)?;
        let parent_id = u64::from_str_radix(parent, 16).ok().filter(|p| *p != 0)?;
        Some((trace_id, parent_id, u8::from_str_radix(flags, 16).ok()?))
    }

    /// The context of a request that arrived with `traceparent` (or without one).
    pub fn continue_from(traceparent: Option<&str>) -> Self {
        Self::from_parent(traceparent.and_then(Self::parse_parent))
    }

    /// The context of a request whose caller's span is `parent` (from [`Self::parse_parent`]),
    /// with ids of our own (traces not exported).
    pub fn from_parent(parent: Option<(u128, u64, u8)>) -> Self {
        let span_id = nonzero_u64();
        match parent {
            Some((trace_id, parent, flags)) => TraceContext {
                trace_id,
                span_id,
                parent_id: Some(parent),
                flags,
            },
            None => TraceContext {
                trace_id: uuid::Uuid::new_v4().as_u128(),
                span_id,
                parent_id: None,
                flags: 1,
            },
        }
    }

    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// `traceparent` for a call this span makes (the forwarding hop): this span is the parent.
    pub fn child_traceparent(&self) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
}

fn nonzero_u64() -> u64 {
    loop {
        let v: u64 = rand::random();
        if v != 0 {
            return v;
        }
    }
}

/// The outermost layer: opens the request's log span (the span OpenTelemetry exports, when
/// traces are on), gives the request its [`TraceContext`] (an extension the forwarder reads) and
/// an `X-Request-Id` when it came without one, and the answer its `traceresponse`, unless a
/// forwarded answer has one.
pub async fn trace_context(mut req: Request, next: Next) -> Response {
    let parent = req
        .headers()
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceContext::parse_parent);
    if !req.headers().contains_key(REQUEST_ID) {
        let id = uuid::Uuid::new_v4().hyphenated().to_string();
        if let Ok(v) = HeaderValue::from_str(&id) {
            req.headers_mut().insert(REQUEST_ID, v);
        }
    }
    let span = request_span(&req);
    let traced = otel::enabled() && !span.is_disabled();
    if traced {
        // Before the span starts (`adopt`), while its kind and name can still be set.
        span.record("otel.kind", "server");
        span.record("otel.name", display(req.method()));
        span.record("http.request.method", display(req.method()));
    }
    let cx = match otel::adopt(&span, parent) {
        Some((trace_id, span_id, flags)) => TraceContext {
            trace_id,
            span_id,
            parent_id: parent.map(|(_, p, _)| p),
            flags,
        },
        None => TraceContext::from_parent(parent),
    };
    span.record("trace_id", display(format_args!("{:032x}", cx.trace_id)));
    span.record("span_id", display(format_args!("{:016x}", cx.span_id)));
    req.extensions_mut().insert(cx);
    let method = req.method().clone();
    let mut resp = next.run(req).instrument(span.clone()).await;
    if traced {
        let status = resp.status();
        span.record("http.response.status_code", status.as_u16());
        if let Some(RouteTemplate(route)) = resp.extensions().get::<RouteTemplate>() {
            span.record("http.route", route.as_str());
            otel::rename(&span, format!("{method} {route}"));
        }
        if status.is_server_error() {
            span.record("otel.status_code", "ERROR");
        }
    }
    if !resp.headers().contains_key(TRACERESPONSE)
        && let Ok(v) = HeaderValue::from_str(&cx.child_traceparent())
    {
        resp.headers_mut().insert(TRACERESPONSE, v);
    }
    resp
}

const REQUEST_ID: &str = "x-request-id";

/// The request's span; the ids are recorded once known.
fn request_span(req: &Request) -> tracing::Span {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        request_id = %id,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
        // Recorded only when traces are exported (the log lines need none of them).
        otel.name = tracing::field::Empty,
        otel.kind = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        http.request.method = tracing::field::Empty,
        http.route = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn continues_a_valid_parent() {
        let cx = TraceContext::continue_from(Some(SPEC_EXAMPLE));
        assert_eq!(cx.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(cx.parent_id, Some(0x00f0_67aa_0ba9_02b7));
        assert_eq!(cx.flags, 1);
        assert_ne!(cx.span_id, 0);
        let child = cx.child_traceparent();
        assert!(child.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(child.ends_with("-01"));
        assert_eq!(
            TraceContext::parse_parent(&child).map(|(_, p, _)| p),
            Some(cx.span_id)
        );
    }

    #[test]
    fn starts_a_new_trace_on_a_bad_or_missing_parent() {
        for bad in [
            None,
            Some(""),
            Some("garbage"),
            Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"),
            Some("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
            Some("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"),
            Some("00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01"),
        ] {
            let cx = TraceContext::continue_from(bad);
            assert_eq!(cx.parent_id, None, "{bad:?}");
            assert_ne!(cx.trace_id, 0);
            assert_ne!(cx.trace_id, 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736);
        }
    }

    #[test]
    fn a_later_version_is_read_by_its_first_fields() {
        let v = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next";
        assert!(TraceContext::parse_parent(v).is_some());
    }
}
