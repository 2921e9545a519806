//! `/v1/dead-letters`: deliveries that gave up, and replaying them. A replayed delivery keeps
//! its id, so the receiver sees the same `webhook-id` as on its first attempt.

// utoipa's expansion of `params(ListQuery)` qualifies the type needlessly.
#![allow(unused_qualifications)]

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::body::read_body;
use super::deliveries::{DeliveryPage, page};
use super::openapi::ErrorBody;
use super::query::{page_limit, parse_time, query_error};
use super::{ApiError, AppState};
use crate::clock::now_ms;
use crate::store::{DeliveryFilter, DeliveryStatus, ReplayFilter};

/// Query of `GET /v1/dead-letters`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this subscription's dead letters.
    subscription_id: Option<String>,
    /// Only deliveries created at or after this RFC 3339 time.
    #[param(format = DateTime)]
    since: Option<String>,
    /// Only deliveries created before this RFC 3339 time.
    #[param(format = DateTime)]
    until: Option<String>,
    /// The previous page's `next_before`.
    before: Option<String>,
    /// Page size, 1 to 1,000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// Lists dead letters, newest first.
#[utoipa::path(
    get, path = "/dead-letters", tag = "dead-letters", operation_id = "list_dead_letters",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of dead letters", body = DeliveryPage),
        (status = 400, description = "A query parameter is invalid", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<DeliveryPage>, ApiError> {
    let Query(q) = query.map_err(query_error)?;
    let filter = DeliveryFilter {
        subscription_id: q.subscription_id,
        status: Some(DeliveryStatus::DeadLetter),
        since_ms: parse_time("since", q.since.as_deref())?,
        until_ms: parse_time("until", q.until.as_deref())?,
        before: q.before,
        limit: page_limit(q.limit)?,
        ..Default::default()
    };
    page(&state, filter).await
}

/// Body of `POST /v1/dead-letters/replay`; every field optional (`{}` or no body replays
/// all).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Only this subscription's dead letters.
    subscription_id: Option<String>,
    /// Deliveries created at or after this RFC 3339 time.
    #[schema(format = DateTime)]
    since: Option<String>,
    /// Deliveries created before this RFC 3339 time.
    #[schema(format = DateTime)]
    until: Option<String>,
}

/// How many dead letters were replayed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Replayed {
    /// Dead letters made due again.
    pub replayed: u64,
}

/// Replays dead letters.
///
/// The matching dead letters become due now, each with a fresh retry budget. Each keeps
/// its id, so receivers see the same `webhook-id` as before.
#[utoipa::path(
    post, path = "/dead-letters/replay", tag = "dead-letters", operation_id = "replay_dead_letters",
    request_body(content = Option<ReplayRequest>, content_type = "application/json"),
    responses(
        (status = 202, description = "Replayed", body = Replayed),
        (status = 400, description = "The body is invalid", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn replay(
    State(state): State<AppState>,
    body: axum::body::Body,
) -> Result<(StatusCode, Json<Replayed>), ApiError> {
    let bytes = read_body(body, 64 << 10).await?;
    let request: ReplayRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        ReplayRequest::default()
    } else {
        serde_json::from_slice::<Option<ReplayRequest>>(&bytes)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.to_string()))?
            .unwrap_or_default()
    };
    let filter = ReplayFilter {
        subscription_id: request.subscription_id,
        since_ms: parse_time("since", request.since.as_deref())?,
        until_ms: parse_time("until", request.until.as_deref())?,
    };
    let replayed = state.store.replay_dead_letters(filter, now_ms()).await?;
    state.wake.notify_one();
    Ok((StatusCode::ACCEPTED, Json(Replayed { replayed })))
}
