//! OpenTelemetry traces over OTLP/HTTP (protobuf), off unless `[telemetry] otlp_endpoint`
//! is set: the exporter, the W3C `traceparent` an event carries from its producer to its
//! delivery attempts, and the span names and attributes the engine records.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_rustls::ConfigBuilderExt as _;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::config::TelemetryConfig;

/// The OTLP path of traces, added to an endpoint given without it.
const TRACES_PATH: &str = "/v1/traces";

/// The span of each publish (`api::events`).
pub const INGEST_SPAN: &str = "ingest";
/// The span of each delivery attempt (`delivery::trace`).
pub const ATTEMPT_SPAN: &str = "delivery.attempt";
/// Spans made once per event or per attempt. They are for trace export alone: log lines
/// leave them out (`cli::logging`), as those inside them name their delivery themselves,
/// and without an exporter nothing makes them at all, where the log formatted the fields
/// of two spans per event (docs/BENCHMARKS.md, "Logging as served").
pub const PER_EVENT_SPANS: [&str; 2] = [INGEST_SPAN, ATTEMPT_SPAN];

/// The URL traces are posted to: `endpoint` as given when it already ends in
/// `/v1/traces`, else with it appended (as `OTEL_EXPORTER_OTLP_ENDPOINT` works).
pub fn traces_url(endpoint: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    if base.ends_with(TRACES_PATH) {
        base.to_owned()
    } else {
        format!("{base}{TRACES_PATH}")
    }
}

/// `value` when it is a valid W3C `traceparent` of version `00`
/// (`00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`, ids not all zero), lowercased.
pub fn valid_traceparent(value: &str) -> Option<String> {
    let value = value.trim().to_ascii_lowercase();
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
    match parts.as_slice() {
        [version, trace, span, flags]
            if *version == "00"
                && hex(trace, 32)
                && nonzero(trace)
                && hex(span, 16)
                && nonzero(span)
                && hex(flags, 2) =>
        {
            Some(value)
        }
        _ => None,
    }
}

/// One header, for the propagator.
struct One<'a>(Option<&'a str>);

impl Extractor for One<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == "traceparent").then_some(self.0).flatten()
    }
    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

/// Collects what the propagator writes.
#[derive(Default)]
struct Written(Option<String>);

impl Injector for Written {
    fn set(&mut self, key: &str, value: String) {
        if key == "traceparent" {
            self.0 = Some(value);
        }
    }
}

/// Makes `traceparent` (when valid) the parent of `span`.
pub fn set_parent(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent else {
        return;
    };
    let cx = TraceContextPropagator::new().extract(&One(Some(traceparent)));
    if cx.span().span_context().is_valid() {
        // Fails only when the span is already closed or tracing is off: nothing to do.
        let _ = span.set_parent(cx);
    }
}

/// The `traceparent` of `span` when traces are exported, to hand on to what it causes.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut out = Written::default();
    TraceContextPropagator::new().inject_context(&cx, &mut out);
    out.0
}

/// The OTLP exporter's HTTP client: hyper with rustls (so an `https://` collector works),
/// on a runtime of its own, since the SDK's batch processor exports from its own thread.
#[derive(Debug)]
struct OtlpClient {
    runtime: Arc<tokio::runtime::Runtime>,
    client: Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Full<Bytes>,
    >,
    timeout: Duration,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OtlpClient {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, opentelemetry_http::HttpError> {
        let client = self.client.clone();
        let timeout = self.timeout;
        let request = request.map(Full::new);
        let exchange = async move {
            let response = client.request(request).await?;
            let (parts, body) = response.into_parts();
            // A collector answers with a small status message; 1 MiB bounds a wrong one.
            let body = http_body_util::Limited::new(body, 1 << 20)
                .collect()
                .await?;
            Ok::<_, opentelemetry_http::HttpError>(http::Response::from_parts(
                parts,
                body.to_bytes(),
            ))
        };
        self.runtime
            .spawn(async move {
                tokio::time::timeout(timeout, exchange)
                    .await
                    .map_err(|_| format!("the OTLP collector did not answer within {timeout:?}"))?
            })
            .await?
    }
}

/// The exporting tracer provider; traces flush when it is shut down.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Builds the exporter from `config`, or `None` when tracing is off (no endpoint).
    pub fn start(config: &TelemetryConfig) -> anyhow::Result<Option<Self>> {
        let Some(endpoint) = &config.otlp_endpoint else {
            return Ok(None);
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("wasmhook-otlp")
            .enable_all()
            .build()?;
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_native_roots()?
        .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let client = OtlpClient {
            runtime: Arc::new(runtime),
            client: Client::builder(TokioExecutor::new()).build(https),
            timeout: config.timeout.0,
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_endpoint(traces_url(endpoint))
            .with_timeout(config.timeout.0)
            .with_headers(config.headers.clone().into_iter().collect())
            .build()?;
        let resource = opentelemetry_sdk::Resource::builder_empty()
            .with_service_name(config.service_name.clone())
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        Ok(Some(Self { provider }))
    }

    /// The tracer for the `tracing` layer that turns spans into OpenTelemetry spans.
    pub fn tracer(&self) -> opentelemetry_sdk::trace::Tracer {
        use opentelemetry::trace::TracerProvider as _;
        self.provider.tracer("wasmhook")
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        // Sends the spans still batched; a collector that is gone costs the timeout once.
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!("could not flush traces to the OTLP collector: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_path_is_added_once() {
        assert_eq!(traces_url("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(traces_url("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(
            traces_url("https://c/otlp/v1/traces"),
            "https://c/otlp/v1/traces"
        );
    }

    #[test]
    fn only_a_well_formed_traceparent_is_kept() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(valid_traceparent(good).as_deref(), Some(good));
        assert_eq!(
            valid_traceparent(&good.to_uppercase()).as_deref(),
            Some(good)
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        ] {
            assert_eq!(valid_traceparent(bad), None, "{bad}");
        }
    }
}
