//! `POST /v1/events` and `POST /v1/events/batch`: validate, route, store durably, then
//! answer `202`.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::read_body;
use super::openapi::ErrorBody;
use super::{ApiError, AppState};
use crate::event::{Event, check_type_len, new_id, now_ms, parse_event, parse_event_batch};
use crate::store::{IngestResult, NewDelivery, NewEvent};

/// Most events in one batch.
pub const MAX_BATCH_EVENTS: usize = 1000;

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
    /// Dot-separated segments of letters, digits, `_` and `-`: `host.enrolled`.
    #[serde(rename = "type")]
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"
    )]
    kind: String,
    /// The payload, a JSON object, passed to adapters and into the envelope byte for byte.
    /// Default: `{}`.
    #[schema(value_type = Option<Object>)]
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

/// Publishes one event.
///
/// The event and one delivery per matching subscription are stored in one transaction
/// and synced to disk before the answer. A subscription matches when one of its `events`
/// patterns matches the type and its `filter`, if any, is true for the event.
#[utoipa::path(
    post, path = "/events", tag = "events", operation_id = "publish_event",
    request_body(content = EventIn, content_type = "application/json"),
    responses(
        (status = 202, description = "Stored durably", body = Accepted),
        (status = 400, description = "Not a valid event (`invalid_json`, `missing_type`, `invalid_event_type`, `invalid_event_id`, `invalid_data`)", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 413, description = "Larger than `[limits] max_event_bytes` (`body_too_large`)", body = ErrorBody),
        (status = 503, description = "The store is unavailable; nothing was stored", body = ErrorBody),
    )
)]
pub async fn publish(
    State(state): State<AppState>,
    body: Body,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let bytes = read_body(body, state.limits.max_event_bytes).await?;
    let event = parse_event(&bytes, now_ms())?;
    check_type_len(&event, state.limits.max_event_type_bytes)?;
    let (new, warnings) = route(&state, event);
    let result = state
        .store
        .ingest(vec![new])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| {
            ApiError::from(crate::store::StoreError::Database(
                "the store answered no result".into(),
            ))
        })?;
    state.wake.notify_one();
    if !result.duplicate {
        state.metrics.ingested(1, u64::from(result.deliveries));
    }
    Ok((StatusCode::ACCEPTED, Json(Accepted { result, warnings })))
}

/// Publishes up to 1,000 events at once.
///
/// Each event is stored with its deliveries as by `POST /v1/events`, all under one
/// commit. Each event's `data` is held to `[limits] max_event_bytes`. If any event is
/// invalid, none is stored and the error names its index.
#[utoipa::path(
    post, path = "/events/batch", tag = "events", operation_id = "publish_events",
    request_body(content = Vec<EventIn>, content_type = "application/json"),
    responses(
        (status = 202, description = "All stored durably", body = BatchAccepted),
        (status = 400, description = "An event is invalid, or there are more than 1,000", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 413, description = "An event or the whole body is too large", body = ErrorBody),
        (status = 503, description = "The store is unavailable; nothing was stored", body = ErrorBody),
    )
)]
pub async fn publish_batch(
    State(state): State<AppState>,
    body: Body,
) -> Result<(StatusCode, Json<BatchAccepted>), ApiError> {
    let limit = state
        .limits
        .max_event_bytes
        .saturating_mul(MAX_BATCH_EVENTS)
        .min(64 << 20);
    let bytes = read_body(body, limit).await?;
    let indexed = |(index, e)| {
        let mut err = ApiError::from(e);
        err.message = format!("event {index}: {}", err.message);
        err
    };
    let events = parse_event_batch(&bytes, now_ms()).map_err(indexed)?;
    for (index, event) in events.iter().enumerate() {
        check_type_len(event, state.limits.max_event_type_bytes)
            .map_err(|e| indexed((index, e)))?;
    }
    if events.len() > MAX_BATCH_EVENTS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "batch_too_large",
            format!(
                "a batch holds at most {MAX_BATCH_EVENTS} events; this one has {}",
                events.len()
            ),
        ));
    }
    if let Some(index) = events
        .iter()
        .position(|e| e.data.len() > state.limits.max_event_bytes)
    {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!(
                "event {index}: its data is larger than the {}-byte limit",
                state.limits.max_event_bytes
            ),
        ));
    }
    let mut warnings = Vec::new();
    let batch: Vec<NewEvent> = events
        .into_iter()
        .map(|e| {
            let (new, w) = route(&state, e);
            warnings.extend(w);
            new
        })
        .collect();
    let results = state.store.ingest(batch).await?;
    state.wake.notify_one();
    let fresh = results.iter().filter(|r| !r.duplicate);
    let (events, deliveries) = fresh.fold((0, 0), |(e, d), r| (e + 1, d + u64::from(r.deliveries)));
    state.metrics.ingested(events, deliveries);
    warnings.sort();
    warnings.dedup();
    Ok((
        StatusCode::ACCEPTED,
        Json(BatchAccepted {
            data: results,
            warnings,
        }),
    ))
}

/// One delivery per matching subscription, plus a warning for each whose plugin is not
/// loaded (those deliveries are stored and wait for it).
fn route(state: &AppState, event: Event) -> (NewEvent, Vec<String>) {
    let catalog = state.subscriptions.catalog();
    let mut warnings = Vec::new();
    let deliveries = catalog
        .matching(&event)
        .into_iter()
        .map(|sub| {
            if let Some(plugin) = &sub.plugin
                && state.registry.get(plugin).is_none()
            {
                warnings.push(format!(
                    "subscription `{}`: plugin `{plugin}` is not loaded (no {plugin}.wasm in {}); its delivery waits until it is",
                    sub.id,
                    state.registry.dir().display()
                ));
            }
            NewDelivery {
                id: new_id("msg"),
                subscription_id: sub.id.clone(),
            }
        })
        .collect();
    (NewEvent { event, deliveries }, warnings)
}
