//! Forwarding (design section 3). A request for a session is served by the node that owns the
//! session's shard: any other node forwards it once, with `X-Onwapp-Forwarded-By`,
//! `X-Shard-Epoch` and the member proof, streaming the body both ways. The owner checks that it
//! still owns the shard at that epoch and answers 421 (with the owner it knows) if not; the
//! forwarder then waits for its map to move and tries again, a bounded number of times. An
//! owner that holds a request without answering (frozen, cut off) is given up as soon as the
//! map moves its shard away for an expired lease, and the request is routed again; the owner
//! serves only at the exact epoch it was forwarded at, so such a request, once the owner
//! wakes, is not served at a newer ownership. A forwarded request is never forwarded again
//! and is not rate-limited twice (the entry node spent the client's budget). The forwarded
//! request's `traceparent` names the entry node's span as the parent, so both nodes' logs
//! belong to one trace (`observability::trace_context`).

use std::time::Duration;

use axum::{
    body::Body,
    extract::Request,
    middleware::Next,
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use onwapp_cluster::{Owner, shard_of};
use serde_json::json;

use crate::observability::trace_context::{TRACEPARENT, TraceContext};
use tracing::Instrument;

use super::peer::{self, Payload, PeerError};
use super::{CLUSTER_AUTH, FORWARDED_BY, OWNER, ROUTE, Route, SERVED_EPOCH, SHARD_EPOCH, Shards};
use crate::http::middleware::RouteTemplate;

/// Extra tries after a 421 or an unreachable owner.
const RETRIES: usize = 3;
/// Bodies up to this size are held, so a 421 can be retried; larger ones are streamed once.
const BUFFER_LIMIT: usize = 1 << 20;
/// How long a request waits for a shard without an owner (failover, handoff) to get one.
const WAIT_FOR_OWNER: Duration = Duration::from_secs(5);

/// Request and response headers that belong to one connection, not to the message.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "host",
    "content-length",
    FORWARDED_BY,
    SHARD_EPOCH,
    CLUSTER_AUTH,
];

/// The session a matched route is about: the first segment of a `/{session}/...` route.
pub fn session_of(template: &str, path: &str) -> Option<String> {
    if !template.starts_with("/{session}") {
        return None;
    }
    let seg = path.trim_start_matches('/').split('/').next()?;
    let name = percent_decode(seg);
    (!name.is_empty()).then_some(name)
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

/// The owner's side: a member forwarded this request. `Ok` is the epoch to serve it at; `Err`
/// the 421 to answer when this node does not own the session's shard at the epoch the member
/// saw. A shard this node is still fencing is waited for briefly.
pub async fn misdirected_here(
    shards: &Shards,
    name: &str,
    headers: &HeaderMap,
) -> Result<u64, Response> {
    let seen = headers
        .get(SHARD_EPOCH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match shards.wait_route(name, Duration::from_secs(2)).await {
        // Exactly the epoch the member forwarded at: a request that waited somewhere (in the
        // socket of a frozen owner, say) is not served at a newer ownership the member never
        // saw; it has been routed again by then.
        Route::Local { epoch, .. } if seen.is_none_or(|s| epoch == s) => Ok(epoch),
        _ => Err(misdirected(shards, name, shard_of(name))),
    }
}

/// Serves `req` on this node, which owns the session's shard at `epoch`, and says so in the
/// answer ([`SERVED_EPOCH`]): operators and tests see which ownership served a request.
pub async fn serve_here(epoch: u64, req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    resp.headers_mut()
        .insert(SERVED_EPOCH, HeaderValue::from(epoch));
    resp
}

fn misdirected(shards: &Shards, name: &str, shard: u32) -> Response {
    let owner = shards
        .node()
        .owner_of(shard)
        .filter(|o| o.node != shards.node_id())
        .map(|o| o.addr);
    let mut resp = (
        StatusCode::MISDIRECTED_REQUEST,
        axum::Json(json!({
            "error": format!("session '{name}' (shard {shard}) is not served by this node"),
            "owner": owner,
        })),
    )
        .into_response();
    if let Some(v) = owner.and_then(|o| HeaderValue::from_str(&o).ok()) {
        resp.headers_mut().insert(OWNER, v);
    }
    resp
}

fn unavailable(message: String) -> Response {
    let mut resp = (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({ "error": message })),
    )
        .into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

/// The entry node's side: serve `req` here when this node owns `name`, else forward it.
pub async fn serve_or_forward(shards: &Shards, name: &str, req: Request, next: Next) -> Response {
    let owner = match shards.wait_route(name, WAIT_FOR_OWNER).await {
        Route::Local { epoch, .. } => return serve_here(epoch, req, next).await,
        Route::Unowned { shard } => {
            count(shards, "no_owner");
            return unavailable(format!(
                "no node serves session '{name}' (shard {shard}) right now; retry shortly"
            ));
        }
        Route::Remote { owner, .. } => owner,
    };
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let chunked = parts.headers.contains_key(header::TRANSFER_ENCODING);
    let held = if declared.is_some_and(|n| n <= BUFFER_LIMIT) || (declared.is_none() && !chunked) {
        match axum::body::to_bytes(body, BUFFER_LIMIT).await {
            Ok(b) => Held::Bytes(b),
            Err(_) => {
                return (
                    StatusCode::BAD_REQUEST,
                    axum::Json(json!({"error": "request body could not be read"})),
                )
                    .into_response();
            }
        }
    } else {
        Held::Stream(Some(body))
    };
    forward(shards, name, parts, held, owner, next).await
}

enum Held {
    Bytes(Bytes),
    /// Streamed to the first owner tried; not retried.
    Stream(Option<Body>),
}

async fn forward(
    shards: &Shards,
    name: &str,
    parts: http::request::Parts,
    mut held: Held,
    mut owner: Owner,
    next: Next,
) -> Response {
    let mut last_error = String::new();
    for attempt in 0..=RETRIES {
        let payload = match &mut held {
            Held::Bytes(b) => Payload::Bytes(b.clone()),
            Held::Stream(s) => match s.take() {
                Some(b) => Payload::Stream(b),
                None => break,
            },
        };
        let retryable = matches!(held, Held::Bytes(_)) && attempt < RETRIES;
        // Sent again elsewhere only what the owner cannot have run (a 421, a request that
        // never reached it) or what is safe to run twice; otherwise the client hears that
        // the outcome is unknown, never a second execution (a WhatsApp message sent twice).
        let repeatable = peer::is_safe(&parts.method);
        let sent = send(shards, &parts, &owner, payload);
        let answer = if retryable {
            // A frozen (or cut off) owner accepts the connection and never answers: stop
            // waiting once the map gave its shard away for an expired lease.
            tokio::select! {
                r = sent => Some(r),
                () = owner_gone(shards, shard_of(name), &owner) => None,
            }
        } else {
            Some(sent.await)
        };
        match answer {
            None if !repeatable => {
                count(shards, "outcome_unknown");
                tracing::warn!(session = name, owner = %owner.addr, "the owner's lease ran out while it held the request; its outcome is unknown");
                return outcome_unknown(name, &format!("{} stopped answering", owner.addr));
            }
            Some(Err(e)) if !e.never_reached() && !repeatable => {
                count(shards, "outcome_unknown");
                tracing::warn!(session = name, owner = %owner.addr, error = %causes(&e), "the owner failed to answer a request it may have run");
                return outcome_unknown(name, &format!("{}: {}", owner.addr, causes(&e)));
            }
            None => {
                count(shards, "owner_gone");
                tracing::info!(session = name, owner = %owner.addr, "the owner's lease ran out and its shard moved while it held the request; routing again");
                last_error = format!("{} stopped answering", owner.addr);
            }
            Some(Ok(r)) if r.status() == StatusCode::MISDIRECTED_REQUEST && retryable => {
                count(shards, "misdirected");
                tracing::debug!(session = name, owner = %owner.addr, "421 from the owner; the map moved");
                last_error = format!("{} no longer serves it", owner.addr);
            }
            Some(Ok(r)) => {
                count(shards, "relayed");
                return relay(r);
            }
            Some(Err(e)) if retryable => {
                count(shards, "unreachable");
                tracing::debug!(session = name, owner = %owner.addr, error = %e, "forwarding failed");
                last_error = format!("{} is unreachable", owner.addr);
            }
            Some(Err(e)) => {
                count(shards, "unreachable");
                last_error = format!("{} is unreachable: {}", owner.addr, causes(&e));
                break;
            }
        }
        // Wait a little for the map to move on, then route again.
        tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
        match shards.wait_route(name, WAIT_FOR_OWNER).await {
            Route::Local { epoch, .. } => {
                let Held::Bytes(b) = held else { break };
                count(shards, "served_here");
                return serve_here(epoch, Request::from_parts(parts, Body::from(b)), next).await;
            }
            Route::Remote { owner: o, .. } => owner = o,
            Route::Unowned { .. } => {}
        }
    }
    count(shards, "gave_up");
    unavailable(format!(
        "session '{name}' could not be reached ({last_error}); retry shortly"
    ))
}

/// 502: the owner may have run the request (it had all of it) but its answer never came.
/// Sending it again could run it twice, so the client decides (and can check the session's
/// history first).
fn outcome_unknown(name: &str, why: &str) -> Response {
    (
        StatusCode::BAD_GATEWAY,
        axum::Json(json!({
            "error": format!(
                "the node serving session '{name}' failed before answering ({why}); the request                  may or may not have been carried out"
            ),
        })),
    )
        .into_response()
}

/// Counts one forwarding try by outcome (`onwapp_cluster_forwards_total`).
fn count(shards: &Shards, outcome: &str) {
    shards
        .metrics()
        .cluster_forwards
        .with_label_values(&[outcome])
        .inc();
}

/// Resolves once the local map gives `owner`'s shard to another node or epoch while `owner`'s
/// lease has run out: a failover, so the owner (frozen, dead or cut off) will not answer. A
/// planned handoff does not count: there the old owner is alive and answers what it holds.
async fn owner_gone(shards: &Shards, shard: u32, owner: &Owner) {
    let mut watch = shards.node().map_watch();
    loop {
        let map = watch.borrow_and_update().map.clone();
        let moved = map
            .shard(shard)
            .is_none_or(|s| s.owner != Some(owner.node) || s.epoch != owner.epoch);
        let now_ms = chrono::Utc::now().timestamp_millis();
        let expired = map
            .nodes
            .get(&owner.node)
            .is_none_or(|n| i64::try_from(n.lease_until_ms).is_ok_and(|until| until < now_ms));
        if moved && expired {
            return;
        }
        if watch.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// An error and its sources, `a: b: c` (hyper's own message alone says little: "client error
/// (Connect)").
fn causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

async fn send(
    shards: &Shards,
    parts: &http::request::Parts,
    owner: &Owner,
    payload: Payload,
) -> Result<http::Response<Body>, PeerError> {
    let target = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    // The hop's own span (exported when traces are on); the owner's span is its child, or the
    // request span's when traces are off (W3C trace context across the hop).
    let span = if crate::observability::otel::enabled() {
        tracing::info_span!(
            "forward",
            otel.kind = "client",
            otel.name = "forward",
            owner = owner.node,
            shard.epoch = owner.epoch,
            server.address = %owner.addr,
            http.response.status_code = tracing::field::Empty,
        )
    } else {
        // Not exported: the request's log span says enough, and costs nothing more.
        tracing::Span::none()
    };
    let traceparent = match crate::observability::otel::ids(&span) {
        Some((trace, id, flags)) => Some(format!("00-{trace:032x}-{id:016x}-{flags:02x}")),
        None => parts
            .extensions
            .get::<TraceContext>()
            .map(TraceContext::child_traceparent),
    };
    let epoch = owner.epoch.to_string();
    let client = parts
        .headers
        .iter()
        .filter(|(k, _)| {
            !HOP_BY_HOP.contains(&k.as_str()) && (traceparent.is_none() || *k != TRACEPARENT)
        })
        .map(|(k, v)| (k.as_str().as_bytes(), v.as_bytes()));
    let ours = [
        (FORWARDED_BY.as_bytes(), shards.node_id_header().as_bytes()),
        (SHARD_EPOCH.as_bytes(), epoch.as_bytes()),
        (CLUSTER_AUTH.as_bytes(), shards.member_proof().as_bytes()),
    ];
    let trace = traceparent
        .as_deref()
        .map(|t| (TRACEPARENT.as_bytes(), t.as_bytes()));
    let answer = shards
        .peers()
        .send(
            &owner.addr,
            &parts.method,
            target,
            client.chain(trace).chain(ours),
            payload,
        )
        .instrument(span.clone())
        .await;
    if let Ok(r) = &answer {
        span.record("http.response.status_code", r.status().as_u16());
    }
    answer
}

/// Marks an answer relayed from the owner.
#[derive(Clone, Copy)]
pub struct Relayed;

fn relay(r: http::Response<Body>) -> Response {
    let (mut parts, body) = r.into_parts();
    let hop =
        |k: &header::HeaderName| HOP_BY_HOP.contains(&k.as_str()) && k != header::CONTENT_LENGTH;
    if parts.headers.keys().any(hop) {
        let mut kept = HeaderMap::with_capacity(parts.headers.len());
        for (k, v) in &parts.headers {
            if !hop(k) {
                kept.append(k.clone(), v.clone());
            }
        }
        parts.headers = kept;
    }
    // The route the owner matched, for this node's metrics; not for the client.
    if let Some(route) = parts.headers.remove(ROUTE)
        && let Ok(t) = route.to_str()
    {
        parts.extensions.insert(RouteTemplate(t.to_string()));
    }
    parts.extensions.insert(Relayed);
    Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_is_the_first_segment_of_session_routes() {
        assert_eq!(
            session_of(
                "/{session}/message/send/text",
                "/shop%201/message/send/text"
            ),
            Some("shop 1".into())
        );
        assert_eq!(
            session_of("/{session}/status", "/a+b/status"),
            Some("a+b".into())
        );
        assert_eq!(session_of("/sessions", "/sessions"), None);
        assert_eq!(session_of("/health", "/health"), None);
    }
}
