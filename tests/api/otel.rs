//! Traces over OpenTelemetry: three real nodes export to an OTLP/HTTP receiver on loopback that
//! decodes the real protocol (protobuf `ExportTraceServiceRequest` at `/v1/traces`). A send
//! made through a node that does not own the session is one trace across both nodes: the
//! entry node's request span, its forwarding hop, the owner's request span (a child of the
//! hop), the WhatsApp send under it; the webhook delivery the send caused is exported too.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Bytes, extract::State, http::header, routing};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse},
    common::v1::any_value,
    trace::v1::span::SpanKind,
};
use prost::Message;
use serde_json::json;

use crate::{
    cluster::{formed, paired_session, post, services, three_nodes_with},
    helpers::{GLOBAL_KEY, eventually},
};

/// One exported span, flattened.
#[derive(Debug, Clone)]
struct Got {
    /// `service.instance.id` of the exporting node.
    node: String,
    service: String,
    name: String,
    kind: i32,
    trace: String,
    id: String,
    parent: String,
    attrs: Vec<(String, String)>,
}

impl Got {
    fn attr(&self, k: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Got>>>,
    posts: Arc<Mutex<Vec<String>>>,
}

fn text(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// The OTLP/HTTP traces endpoint: decodes, keeps, answers an empty success as a collector does.
async fn traces(
    State(c): State<Collector>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> impl axum::response::IntoResponse {
    assert_eq!(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some("application/x-protobuf")
    );
    let req = ExportTraceServiceRequest::decode(body).expect("a valid ExportTraceServiceRequest");
    let mut got = Vec::new();
    for rs in req.resource_spans {
        let res = rs.resource.unwrap_or_default();
        let res_attr = |k: &str| {
            res.attributes
                .iter()
                .find(|a| a.key == k)
                .map(|a| text(&a.value))
                .unwrap_or_default()
        };
        let (node, service) = (res_attr("service.instance.id"), res_attr("service.name"));
        for ss in rs.scope_spans {
            for s in ss.spans {
                got.push(Got {
                    node: node.clone(),
                    service: service.clone(),
                    name: s.name.clone(),
                    kind: s.kind,
                    trace: hex::encode(&s.trace_id),
                    id: hex::encode(&s.span_id),
                    parent: hex::encode(&s.parent_span_id),
                    attrs: s
                        .attributes
                        .iter()
                        .map(|a| (a.key.clone(), text(&a.value)))
                        .collect(),
                });
            }
        }
    }
    c.spans.lock().unwrap().extend(got);
    (
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
}

async fn hook(State(c): State<Collector>, body: Bytes) -> &'static str {
    c.posts
        .lock()
        .unwrap()
        .push(String::from_utf8_lossy(&body).into_owned());
    "ok"
}

async fn start_collector() -> (Collector, String) {
    let c = Collector::default();
    let app = Router::new()
        .route("/v1/traces", routing::post(traces))
        .route("/hook", routing::post(hook))
        .with_state(c.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (c, format!("http://{addr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_send_is_one_trace_across_both_nodes_exported_over_otlp() {
    let Some(pg) = services().await else {
        return;
    };
    let (collector, base) = start_collector().await;
    let wa = wamock::Server::start("127.0.0.1:0").await.unwrap();
    let nodes = three_nodes_with(
        &pg.url,
        Some(&wa.ws_url()),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", base.clone()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
            ("WEBHOOK_POLL_MS", "50".into()),
        ],
    );
    formed(&nodes[0], Duration::from_secs(60)).await;
    let (me, them) = ("5511955550931", "5511955550932");
    let owner = paired_session(&nodes, &wa, "ot", me).await;
    crate::wa::user(&wa, them).await;
    let (code, b) = post(
        format!("{}/ot/webhook", nodes[0].base),
        json!({"url": format!("{base}/hook"), "events": ["message.sent"]}),
    )
    .await;
    assert_eq!(code, 200, "{b}");

    // The send, through a node that does not own the session, inside the caller's trace.
    let via = nodes.iter().find(|n| n.id != owner).unwrap();
    let trace = format!("{:032x}", rand::random::<u128>() | 1);
    let caller = format!("{:016x}", rand::random::<u64>() | 1);
    let r = reqwest::Client::new()
        .post(format!("{}/ot/message/send/text", via.base))
        .header("Authorization", GLOBAL_KEY)
        .header("traceparent", format!("00-{trace}-{caller}-01"))
        .json(&json!({"phone": them, "text": "traced"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let traceresponse = r
        .headers()
        .get("traceresponse")
        .and_then(|v| v.to_str().ok())
        .unwrap()
        .to_string();
    crate::wa::wait_inbox(&wa, them, 1).await;

    let of_trace = || -> Vec<Got> {
        collector
            .spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.trace == trace)
            .cloned()
            .collect()
    };
    let complete = eventually(Duration::from_secs(20), || async {
        let spans = of_trace();
        spans
            .iter()
            .filter(|s| s.kind == SpanKind::Server as i32)
            .count()
            >= 2
            && ["forward", "whatsapp.send"]
                .iter()
                .all(|n| spans.iter().any(|s| s.name == *n))
    })
    .await;
    let spans = of_trace();
    assert!(complete, "spans of the trace: {spans:#?}");
    let (via_id, owner_id) = (via.id.to_string(), owner.to_string());
    let entry = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32 && s.node == via_id)
        .expect("the entry node's request span");
    assert_eq!(
        entry.parent, caller,
        "the entry span continues the caller's"
    );
    assert_eq!(entry.service, "onwapp");
    assert_eq!(entry.attr("http.request.method"), Some("POST"));
    let hop = spans
        .iter()
        .find(|s| s.name == "forward")
        .expect("the forwarding hop");
    assert_eq!(hop.kind, SpanKind::Client as i32);
    assert_eq!(hop.node, via_id);
    assert_eq!(hop.parent, entry.id);
    assert_eq!(hop.attr("owner"), Some(owner_id.as_str()));
    let served = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32 && s.node == owner_id)
        .expect("the owner's request span");
    assert_eq!(served.parent, hop.id, "the owner's span is the hop's child");
    assert_eq!(served.name, "POST /{session}/message/send/text");
    assert_eq!(served.attr("http.response.status_code"), Some("200"));
    let send = spans
        .iter()
        .find(|s| s.name == "whatsapp.send")
        .expect("the WhatsApp send");
    assert_eq!(send.node, owner_id);
    assert_eq!(send.parent, served.id);
    assert!(send.attr("message.id").is_some_and(|id| !id.is_empty()));
    // The answer names the trace and the owner's span, as the owner's logs do.
    assert_eq!(traceresponse, format!("00-{trace}-{}-01", served.id));

    // The webhook delivery the send caused: its own trace, on the owner.
    let delivered = eventually(Duration::from_secs(20), || async {
        collector
            .spans
            .lock()
            .unwrap()
            .iter()
            .any(|s| s.name == "webhook.deliver" && s.attr("event") == Some("message.sent"))
    })
    .await;
    assert!(
        delivered,
        "no webhook.deliver span; hook got {:?}",
        collector.posts.lock().unwrap()
    );
    let spans = collector.spans.lock().unwrap().clone();
    let d = spans.iter().find(|s| s.name == "webhook.deliver").unwrap();
    // Whichever node's delivery worker claimed the session's queue.
    assert!(nodes.iter().any(|n| n.id.to_string() == d.node), "{d:?}");
    assert_eq!(d.kind, SpanKind::Client as i32);
    assert_eq!(d.attr("http.response.status_code"), Some("200"));
    assert_eq!(d.attr("server.address"), Some("127.0.0.1"));
}
