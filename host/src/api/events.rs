//! `POST /v1/events` and `POST /v1/events/batch`: read the body, parse it, and hand the
//! drafts to the ingest service, which validates, routes and stores them durably; then
//! answer `202`.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use tracing::Instrument as _;
use utoipa::ToSchema;

use super::body::read_body;
use super::openapi::ErrorBody;
use super::{ApiError, AppState};
use crate::event::{parse_event, parse_event_batch};
use crate::store::IngestResult;
use crate::telemetry;

/// An event to publish. Documents what `event::parse_event` accepts; unknown fields are
/// refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // read by the OpenAPI derive only
pub struct EventIn {
    /// Your id for the event, which makes publishing idempotent: the same id again
    /// returns the first answer and delivers nothing new. Default: a fresh `evt_…`.
    #[schema(min_length = 1, max_length = 128, pattern = r"^[!-~]+$")]
    id: Option<String>,
    /// Dot-separated segments of letters, digits, `_` and `-`: `host.enrolled`. Types
    /// starting with `wasmhook.` are the engine's own.
    #[serde(rename = "type")]
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"
    )]
    kind: String,
    /// The payload, a JSON object (not `null`), passed to adapters and into the envelope
    /// byte for byte. Default: `{}`.
    #[schema(value_type = Object, required = false)]
    data: Option<serde_json::Value>,
}

/// The answer to a publish: the event is durable.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    /// The event.
    #[serde(flatten)]
    pub result: IngestResult,
    /// Problems that did not stop the event, such as a subscription whose plugin is not
    /// loaded (its delivery waits for it).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The answer to a batch publish: one result per event, in order.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchAccepted {
    /// One per event.
    pub data: Vec<IngestResult>,
    /// As for a single event.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The `ingest` span of a publish, continuing the producer's `traceparent` header if it
/// sent a valid one, and the `traceparent` to store with the events: the span's own when
/// traces are exported, else the producer's as it came.
fn ingest_span(headers: &HeaderMap) -> (tracing::Span, Option<String>) {
    let sent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(telemetry::valid_traceparent);
    let span = tracing::info_span!(
        telemetry::INGEST_SPAN,
        otel.name = "ingest",
        otel.kind = "server",
        event.id = tracing::field::Empty,
        event.type = tracing::field::Empty,
        events = tracing::field::Empty,
        deliveries = tracing::field::Empty,
    );
    telemetry::set_parent(&span, sent.as_deref());
    let traceparent = telemetry::traceparent_of(&span).or(sent);
    (span, traceparent)
}

/// Publishes one event.
///
/// The event and one delivery per matching subscription are stored in one transaction
/// and synced to disk before the answer. A subscription matches when one of its `events`
/// patterns matches the type and its `filter`, if any, is true for the event.
#[utoipa::path(
    post, path = "/events", tag = "events", operation_id = "publish_event",
    params(("traceparent" = Option<String>, Header, description = "A W3C trace context (`00-<trace id>-<span id>-<flags>`); the event's ingest and delivery attempt spans join that trace. Ignored when malformed.")),
    request_body(content = EventIn, content_type = "application/json"),
    responses(
        (status = 202, description = "Stored durably", body = Accepted),
        (status = 400, description = "Not a valid event (`invalid_json`, `missing_type`, `invalid_event_type`, `reserved_event_type`, `invalid_event_id`, `invalid_data`, `data_too_deep`, `invalid_unicode`, `invalid_number`)", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 413, description = "Larger than `[limits] max_event_bytes` (`body_too_large`)", body = ErrorBody),
        (status = 503, description = "The store is unavailable; nothing was stored", body = ErrorBody),
    )
)]
pub async fn publish(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let (span, traceparent) = ingest_span(&headers);
    let work = async {
        let bytes = read_body(body, state.limits.max_event_bytes).await?;
        let draft = parse_event(&bytes)?;
        tracing::Span::current().record("event.type", draft.kind.as_str());
        let accepted = state.ingest.publish(draft, traceparent).await?;
        let result = accepted.results.into_iter().next().ok_or_else(|| {
            ApiError::from(crate::store::StoreError::Database(
                "the store answered no result".into(),
            ))
        })?;
        Ok::<_, ApiError>((result, accepted.warnings))
    };
    let (result, warnings) = work.instrument(span.clone()).await?;
    span.record("event.id", result.id.as_str());
    span.record("deliveries", result.deliveries);
    let accepted = Accepted { result, warnings };
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

/// Publishes up to 1,000 events at once.
///
/// Each event is stored with its deliveries as by `POST /v1/events`, all under one
/// commit. Each event's `data` is held to `[limits] max_event_bytes`. If any event is
/// invalid, none is stored and the error names its index.
#[utoipa::path(
    post, path = "/events/batch", tag = "events", operation_id = "publish_events",
    params(("traceparent" = Option<String>, Header, description = "A W3C trace context, as for `POST /v1/events`; every event of the batch joins that trace.")),
    request_body(content = Vec<EventIn>, content_type = "application/json"),
    responses(
        (status = 202, description = "All stored durably", body = BatchAccepted),
        (status = 400, description = "An event is invalid (the codes of `POST /v1/events`, the message names its index), or there are more than 1,000 (`batch_too_large`)", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 413, description = "An event's `data` is larger than `[limits] max_event_bytes`, or the whole body than `[limits] max_batch_bytes` (`body_too_large`)", body = ErrorBody),
        (status = 503, description = "The store is unavailable; nothing was stored", body = ErrorBody),
    )
)]
pub async fn publish_batch(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<BatchAccepted>), ApiError> {
    let (span, traceparent) = ingest_span(&headers);
    let work = async {
        let bytes = read_body(body, state.limits.max_batch_bytes).await?;
        let drafts = parse_event_batch(&bytes).map_err(|(index, error)| {
            let mut err = ApiError::from(error);
            if err.code != "batch_too_large" {
                err.message = format!("event {index}: {}", err.message);
            }
            err
        })?;
        Ok::<_, ApiError>(state.ingest.publish_batch(drafts, traceparent).await?)
    };
    let accepted = work.instrument(span.clone()).await?;
    span.record("events", accepted.results.len());
    span.record(
        "deliveries",
        accepted.results.iter().map(|r| r.deliveries).sum::<u32>(),
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(BatchAccepted {
            data: accepted.results,
            warnings: accepted.warnings,
        }),
    ))
}
