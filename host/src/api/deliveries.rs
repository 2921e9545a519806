//! `/v1/deliveries`: list and inspect deliveries with their attempts.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::store::{DeliveryFilter, DeliveryStatus};

/// Query of `GET /v1/deliveries`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    subscription_id: Option<String>,
    status: Option<String>,
    event_type: Option<String>,
    event_id: Option<String>,
    before: Option<String>,
    limit: Option<usize>,
}

/// `GET /v1/deliveries`: newest first; pass `next_before` back as `before` for the next page.
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
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
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let page = state
        .store
        .list_deliveries(DeliveryFilter {
            subscription_id: q.subscription_id,
            status,
            event_type: q.event_type,
            event_id: q.event_id,
            before: q.before,
            limit,
        })
        .await?;
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
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "delivery_not_found",
            format!("no delivery `{id}`"),
        )),
    }
}
