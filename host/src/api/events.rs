//! `POST /v1/events` and `POST /v1/events/batch`: validate, route, store durably, then
//! answer `202`.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::error::read_body;
use super::{ApiError, AppState};
use crate::event::{Event, new_id, now_ms, parse_event, parse_event_batch};
use crate::store::{IngestResult, NewDelivery, NewEvent};

/// Most events in one batch.
pub const MAX_BATCH_EVENTS: usize = 1000;

/// `POST /v1/events`
pub async fn publish(
    State(state): State<AppState>,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let bytes = read_body(body, state.limits.max_event_bytes).await?;
    let event = parse_event(&bytes, now_ms())?;
    let (new, warnings) = route(&state, event);
    let result = state.store.ingest(vec![new]).await?;
    state.wake.notify_one();
    if !result[0].duplicate {
        state.metrics.ingested(1, u64::from(result[0].deliveries));
    }
    let mut answer = result_json(&result[0]);
    if !warnings.is_empty() {
        answer["warnings"] = json!(warnings);
    }
    Ok((StatusCode::ACCEPTED, Json(answer)))
}

/// `POST /v1/events/batch`: a JSON array of up to 1,000 events, stored in one transaction
/// per event but one commit for all.
pub async fn publish_batch(
    State(state): State<AppState>,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let limit = state
        .limits
        .max_event_bytes
        .saturating_mul(MAX_BATCH_EVENTS)
        .min(64 << 20);
    let bytes = read_body(body, limit).await?;
    let events = parse_event_batch(&bytes, now_ms()).map_err(|(index, e)| {
        let mut err = ApiError::from(e);
        err.message = format!("event {index}: {}", err.message);
        err
    })?;
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
    let mut answer = json!({"data": results.iter().map(result_json).collect::<Vec<_>>()});
    if !warnings.is_empty() {
        answer["warnings"] = json!(warnings);
    }
    Ok((StatusCode::ACCEPTED, Json(answer)))
}

fn result_json(r: &IngestResult) -> Value {
    json!({"id": r.id, "deliveries": r.deliveries, "duplicate": r.duplicate})
}

/// One delivery per matching subscription, plus a warning for each whose plugin is not
/// loaded (those deliveries are stored and wait for it).
fn route(state: &AppState, event: Event) -> (NewEvent, Vec<String>) {
    let catalog = state.subscriptions.catalog();
    let mut warnings = Vec::new();
    let deliveries = catalog
        .matching(&event.kind)
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
