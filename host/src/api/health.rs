//! `/healthz` (answers once the engine is ready: the listener only opens when it is),
//! `/metrics` (Prometheus text format) and `/openapi.json`. None needs a token, unless
//! `[server] metrics_require_token` puts `/metrics` behind one.

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use super::openapi::ErrorBody;
use super::{ApiError, AppState};
use crate::clock::now_ms;
use crate::delivery::breaker::BreakerState;
use crate::metrics::{EndpointGauge, Snapshot};

/// The engine is up.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
    /// The engine's version.
    pub version: &'static str,
}

/// Liveness and readiness: answers once the engine serves requests.
#[utoipa::path(
    get, path = "/healthz", tag = "operations", operation_id = "healthz", security(()),
    responses((status = 200, description = "Ready", body = Health))
)]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// Prometheus metrics, in the OpenMetrics text format.
#[utoipa::path(
    get, path = "/metrics", tag = "operations", operation_id = "metrics", security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Metrics", body = String,
            content_type = "application/openmetrics-text"),
        (status = 401, description = "`[server] metrics_require_token` is set and the token is missing or wrong", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let snapshot = Snapshot {
        queue: state.store.queue_depth(now_ms()).await?,
        endpoints: state
            .endpoints
            .snapshot()
            .into_iter()
            .map(|e| EndpointGauge {
                circuit: match e.circuit {
                    BreakerState::Closed { .. } => 0,
                    BreakerState::HalfOpen => 1,
                    BreakerState::Open { .. } => 2,
                },
                in_flight: e.in_flight as i64,
                endpoint: e.endpoint,
            })
            .collect(),
        plugins: state.registry.list(),
    };
    Ok((
        [(
            http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(snapshot),
    ))
}

/// This document.
#[utoipa::path(
    get, path = "/openapi.json", tag = "operations", operation_id = "openapi", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object))
)]
pub async fn openapi() -> impl IntoResponse {
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        super::openapi::document_json(),
    )
}
