//! `/v1/dead-letters`: deliveries that gave up, and replaying them. A replayed delivery keeps
//! its id, so the receiver sees the same `webhook-id` as on its first attempt.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::deliveries::page;
use super::error::{parse_time, query_error, read_body};
use super::{ApiError, AppState};
use crate::event::now_ms;
use crate::store::{DeliveryFilter, DeliveryStatus, ReplayFilter};

/// Query of `GET /v1/dead-letters`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    subscription_id: Option<String>,
    since: Option<String>,
    until: Option<String>,
    before: Option<String>,
    limit: Option<usize>,
}

/// `GET /v1/dead-letters`: dead letters, newest first.
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(query_error)?;
    let filter = DeliveryFilter {
        subscription_id: q.subscription_id,
        status: Some(DeliveryStatus::DeadLetter),
        since_ms: parse_time("since", q.since.as_deref())?,
        until_ms: parse_time("until", q.until.as_deref())?,
        before: q.before,
        limit: q.limit.unwrap_or(50).clamp(1, 1000),
        ..Default::default()
    };
    page(&state, filter).await
}

/// Body of `POST /v1/dead-letters/replay`; every field optional (`{}` replays all).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayRequest {
    subscription_id: Option<String>,
    /// Deliveries created at or after this RFC 3339 time.
    since: Option<String>,
    /// Deliveries created before this RFC 3339 time.
    until: Option<String>,
}

/// `POST /v1/dead-letters/replay`: makes the matching dead letters due now, each with a
/// fresh retry budget. Answers how many.
pub async fn replay(
    State(state): State<AppState>,
    body: axum::body::Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let bytes = read_body(body, 64 << 10).await?;
    let request: ReplayRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        ReplayRequest::default()
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.to_string()))?
    };
    let filter = ReplayFilter {
        subscription_id: request.subscription_id,
        since_ms: parse_time("since", request.since.as_deref())?,
        until_ms: parse_time("until", request.until.as_deref())?,
    };
    let replayed = state.store.replay_dead_letters(filter, now_ms()).await?;
    state.wake.notify_one();
    Ok((StatusCode::ACCEPTED, Json(json!({"replayed": replayed}))))
}
