//! `/v1/deliveries`: list and inspect deliveries with their attempts, and retry one by hand.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{parse_time, query_error};
use super::{ApiError, AppState};
use crate::event::now_ms;
use crate::store::{DeliveryFilter, DeliveryStatus, RetryOutcome};

/// Query of `GET /v1/deliveries`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    subscription_id: Option<String>,
    status: Option<String>,
    event_type: Option<String>,
    event_id: Option<String>,
    since: Option<String>,
    until: Option<String>,
    before: Option<String>,
    limit: Option<usize>,
}

/// `GET /v1/deliveries`: newest first; pass `next_before` back as `before` for the next page.
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(query_error)?;
    let status = q
        .status
        .as_deref()
        .map(|s| {
            DeliveryStatus::parse(s).ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_status",
                    format!("unknown status `{s}`: use pending, delivered, dead_letter or skipped"),
                )
            })
        })
        .transpose()?;
    let filter = DeliveryFilter {
        subscription_id: q.subscription_id,
        status,
        event_type: q.event_type,
        event_id: q.event_id,
        since_ms: parse_time("since", q.since.as_deref())?,
        until_ms: parse_time("until", q.until.as_deref())?,
        before: q.before,
        limit: q.limit.unwrap_or(50).clamp(1, 1000),
    };
    page(&state, filter).await
}

/// Runs a list query and shapes the page.
pub async fn page(state: &AppState, filter: DeliveryFilter) -> Result<Json<Value>, ApiError> {
    let limit = filter.limit;
    let page = state.store.list_deliveries(filter).await?;
    let next = (page.len() == limit)
        .then(|| page.last().map(|d| d.id.clone()))
        .flatten();
    Ok(Json(json!({"data": page, "next_before": next})))
}

/// `GET /v1/deliveries/{id}`: the delivery and its attempts.
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match state.store.delivery(&id).await? {
        Some(detail) => Ok(Json(serde_json::to_value(detail).unwrap_or_default())),
        None => Err(not_found(&id)),
    }
}

/// `POST /v1/deliveries/{id}/retry`: due now, with a fresh retry budget, whatever its state.
pub async fn retry(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    match state.store.retry_delivery(&id, now_ms()).await? {
        RetryOutcome::Scheduled(delivery) => {
            state.wake.notify_one();
            Ok((
                StatusCode::ACCEPTED,
                Json(serde_json::to_value(delivery).unwrap_or_default()),
            ))
        }
        RetryOutcome::NotFound => Err(not_found(&id)),
        RetryOutcome::InFlight => Err(ApiError::new(
            StatusCode::CONFLICT,
            "delivery_in_flight",
            format!("delivery `{id}` is being attempted right now; retry after the attempt ends"),
        )),
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "delivery_not_found",
        format!("no delivery `{id}`"),
    )
}
