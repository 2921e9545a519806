//! `/v1/deliveries`: list and inspect deliveries with their attempts, and retry one by hand.

// utoipa's expansion of `params(ListQuery)` qualifies the type needlessly.
#![allow(unused_qualifications)]

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::openapi::ErrorBody;
use super::query::{page_limit, parse_time, query_error};
use super::{ApiError, AppState};
use crate::clock::now_ms;
use crate::store::{DeliveryDetail, DeliveryFilter, DeliveryStatus, DeliverySummary, RetryOutcome};

/// Query of `GET /v1/deliveries`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this subscription's deliveries.
    subscription_id: Option<String>,
    /// Only deliveries in this state: `pending`, `delivered`, `dead_letter` or `skipped`.
    #[param(pattern = "^(pending|delivered|dead_letter|skipped)$")]
    status: Option<String>,
    /// Only deliveries of events of this type.
    event_type: Option<String>,
    /// Only deliveries of this event.
    event_id: Option<String>,
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

/// A page of deliveries, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPage {
    /// The deliveries.
    pub data: Vec<DeliverySummary>,
    /// Pass as `before` to get the next page; null on the last page.
    pub next_before: Option<String>,
}

/// Lists deliveries, newest first.
#[utoipa::path(
    get, path = "/deliveries", tag = "deliveries", operation_id = "list_deliveries",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of deliveries", body = DeliveryPage),
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
        limit: page_limit(q.limit)?,
    };
    page(&state, filter).await
}

/// Runs a list query and shapes the page.
pub async fn page(
    state: &AppState,
    filter: DeliveryFilter,
) -> Result<Json<DeliveryPage>, ApiError> {
    let limit = filter.limit;
    let data = state.store.list_deliveries(filter).await?;
    let next_before = (data.len() == limit)
        .then(|| data.last().map(|d| d.id.clone()))
        .flatten();
    Ok(Json(DeliveryPage { data, next_before }))
}

/// One delivery with its attempts.
#[utoipa::path(
    get, path = "/deliveries/{id}", tag = "deliveries", operation_id = "get_delivery",
    params(("id" = String, Path, description = "The delivery's `msg_…` id (its `webhook-id`)")),
    responses(
        (status = 200, description = "The delivery and its attempts, oldest first", body = DeliveryDetail),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such delivery (`delivery_not_found`)", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<DeliveryDetail>, ApiError> {
    match state.store.delivery(&id).await? {
        Some(detail) => Ok(Json(detail)),
        None => Err(not_found(&id)),
    }
}

/// Makes one delivery due now, with a fresh retry budget, whatever its state.
///
/// It keeps its id, so the receiver sees the same `webhook-id`.
#[utoipa::path(
    post, path = "/deliveries/{id}/retry", tag = "deliveries", operation_id = "retry_delivery",
    params(("id" = String, Path, description = "The delivery's `msg_…` id")),
    responses(
        (status = 202, description = "Due now", body = DeliverySummary),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such delivery (`delivery_not_found`)", body = ErrorBody),
        (status = 409, description = "An attempt is running right now (`delivery_in_flight`)", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn retry(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<DeliverySummary>), ApiError> {
    match state.store.retry_delivery(&id, now_ms()).await? {
        RetryOutcome::Scheduled(delivery) => {
            state.wake.notify_one();
            Ok((StatusCode::ACCEPTED, Json(*delivery)))
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
