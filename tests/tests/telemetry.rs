//! OpenTelemetry on the real binary: a small OTLP/HTTP receiver written here (protobuf,
//! decoded with `opentelemetry-proto`) collects the engine's spans; an event published with
//! a `traceparent` yields an ingest span and a delivery attempt span in the producer's trace.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message as _;
use serde_json::json;
use tokio::net::TcpListener;
use wasmhook_tests::{Engine, Receiver, SECRET, Workdir, base_config};

const WAIT: Duration = Duration::from_secs(30);

/// One span as exported.
#[derive(Debug, Clone)]
struct Span {
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: Vec<(String, String)>,
    service: String,
}

impl Span {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn text(value: Option<&AnyValue>) -> String {
    match value {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// Accepts `POST /v1/traces` (OTLP/HTTP protobuf) and keeps every span.
struct Collector {
    addr: std::net::SocketAddr,
    spans: Arc<Mutex<Vec<Span>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Collector {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let spans = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&spans);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let kept = Arc::clone(&kept);
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let kept = Arc::clone(&kept);
                        async move {
                            let path = req.uri().path().to_owned();
                            let body = req.into_body().collect().await?.to_bytes();
                            let status = if path != "/v1/traces" {
                                404
                            } else if let Ok(export) = ExportTraceServiceRequest::decode(body) {
                                kept.lock().expect("lock").extend(flatten(export));
                                200
                            } else {
                                400
                            };
                            Ok::<_, hyper::Error>(
                                hyper::Response::builder()
                                    .status(status)
                                    .header("content-type", "application/x-protobuf")
                                    .body(Full::new(Bytes::new()))
                                    .expect("response"),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, spans, task }
    }

    /// Polls until `found` picks what it wants out of the spans; panics after `WAIT`.
    async fn wait_for<T>(&self, what: &str, found: impl Fn(&[Span]) -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            let spans = self.spans.lock().expect("lock").clone();
            if let Some(got) = found(&spans) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} after {WAIT:?}; spans: {spans:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn flatten(export: ExportTraceServiceRequest) -> Vec<Span> {
    let mut out = Vec::new();
    for resource_spans in export.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .map(|kv| text(kv.value.as_ref().and_then(|v| v.value.as_ref())))
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                out.push(Span {
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    attributes: span
                        .attributes
                        .iter()
                        .map(|kv| {
                            (
                                kv.key.clone(),
                                text(kv.value.as_ref().and_then(|v| v.value.as_ref())),
                            )
                        })
                        .collect(),
                    service: service.clone(),
                });
            }
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_traceparent_links_the_ingest_and_attempt_spans_in_one_trace() {
    let collector = Collector::start().await;
    let receiver = Receiver::start().await;
    let work = Workdir::new();
    let config = work.write_config(&format!(
        "{}\n[telemetry]\notlp_endpoint = \"http://{}\"\nservice_name = \"wasmhook-test\"\n\n\
         [[subscriptions]]\nid = \"traced\"\nurl = \"{}\"\nevents = [\"a.*\"]\nsecret = \"{SECRET}\"\n",
        base_config(),
        collector.addr,
        receiver.url("/traced"),
    ));
    // Export every 100 ms instead of every 5 s (the SDK's standard variable).
    let engine = Engine::start(&config, &[("OTEL_BSP_SCHEDULE_DELAY", "100")]).await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let producer_span = "00f067aa0ba902b7";
    let answer = reqwest::Client::new()
        .post(format!("{}/v1/events", engine.base))
        .header("traceparent", format!("00-{trace_id}-{producer_span}-01"))
        .json(&json!({"type": "a.b", "data": {"traced": true}}))
        .send()
        .await
        .expect("publish");
    assert_eq!(answer.status(), 202);
    let event: serde_json::Value = answer.json().await.expect("answer");
    receiver.wait_for("/traced", 1, WAIT).await;

    let in_trace = |name: &'static str| {
        move |spans: &[Span]| {
            spans
                .iter()
                .find(|s| s.name == name && s.trace_id == trace_id)
                .cloned()
        }
    };
    let ingest = collector.wait_for("ingest span", in_trace("ingest")).await;
    assert_eq!(
        ingest.parent_span_id, producer_span,
        "the ingest span continues the producer's: {ingest:?}"
    );
    assert_eq!(ingest.attribute("event.id"), event["id"].as_str());
    assert_eq!(ingest.attribute("event.type"), Some("a.b"));
    assert_eq!(ingest.service, "wasmhook-test");

    let attempt = collector
        .wait_for("attempt span", in_trace("delivery attempt"))
        .await;
    assert_eq!(
        attempt.parent_span_id, ingest.span_id,
        "the attempt is a child of the ingest: {attempt:?}"
    );
    assert_eq!(
        attempt.attribute("outcome"),
        Some("succeeded"),
        "{attempt:?}"
    );
    assert_eq!(attempt.attribute("plugin"), Some("none"), "{attempt:?}");
    assert_eq!(
        attempt.attribute("http.response.status_code"),
        Some("200"),
        "{attempt:?}"
    );
    let endpoint = attempt.attribute("endpoint").unwrap_or_default();
    assert!(
        endpoint.contains(&receiver.addr().port().to_string()),
        "{attempt:?}"
    );
    assert_eq!(attempt.attribute("subscription.id"), Some("traced"));

    // A failing receiver: the attempt span says so.
    receiver.set_default("/traced", wasmhook_tests::Reply::Status(500));
    let failing = reqwest::Client::new()
        .post(format!("{}/v1/events", engine.base))
        .header(
            "traceparent",
            format!("00-{}-{producer_span}-01", "a".repeat(32)),
        )
        .json(&json!({"type": "a.c"}))
        .send()
        .await
        .expect("publish");
    assert_eq!(failing.status(), 202);
    let failed = collector
        .wait_for("failed attempt span", |spans| {
            spans
                .iter()
                .find(|s| s.name == "delivery attempt" && s.trace_id == "a".repeat(32))
                .cloned()
        })
        .await;
    assert_eq!(failed.attribute("outcome"), Some("failed"), "{failed:?}");
    assert_eq!(failed.attribute("http.response.status_code"), Some("500"));

    // A batch: one ingest span, and every event's attempt is its child.
    let batch_trace = "b".repeat(32);
    let answer = reqwest::Client::new()
        .post(format!("{}/v1/events/batch", engine.base))
        .header(
            "traceparent",
            format!("00-{batch_trace}-{producer_span}-01"),
        )
        .json(&json!([{"type": "a.d"}, {"type": "a.e"}]))
        .send()
        .await
        .expect("publish batch");
    assert_eq!(answer.status(), 202);
    let (ingest, attempts) = collector
        .wait_for("batch spans", |spans| {
            let ingest = spans
                .iter()
                .find(|s| s.name == "ingest" && s.trace_id == batch_trace)?;
            let attempts: Vec<Span> = spans
                .iter()
                .filter(|s| s.name == "delivery attempt" && s.trace_id == batch_trace)
                .cloned()
                .collect();
            let types: std::collections::BTreeSet<_> = attempts
                .iter()
                .filter_map(|s| s.attribute("event.type"))
                .collect();
            (types.len() == 2).then(|| (ingest.clone(), attempts.clone()))
        })
        .await;
    assert_eq!(ingest.parent_span_id, producer_span);
    assert_eq!(ingest.attribute("events"), Some("2"), "{ingest:?}");
    for attempt in &attempts {
        assert_eq!(attempt.parent_span_id, ingest.span_id, "{attempt:?}");
    }
}
