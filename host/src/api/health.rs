//! `/healthz` (answers once the engine is ready: the listener only opens when it is, and
//! `503` while the store cannot write), `/metrics` (Prometheus text format) and
//! `/openapi.json`. None needs a token, unless `[server] metrics_require_token` puts
//! `/metrics` behind one.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use super::openapi::ErrorBody;
use super::{ApiError, AppState};
use crate::clock::now_ms;
use crate::delivery::breaker::BreakerState;
use crate::metrics::{EndpointGauge, Snapshot};
use crate::store::Store;

/// How long one write probe's answer is reused: `/healthz` needs no token, so a flood of
/// it must not become a flood of commits.
const PROBE_REUSE: Duration = Duration::from_secs(1);
/// How long a write probe may take before the store counts as unable to write.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The engine is up.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
    /// The engine's version.
    pub version: &'static str,
}

/// Whether the store took a write lately: one probe at a time, its answer shared for
/// [`PROBE_REUSE`].
#[derive(Debug, Default)]
pub struct StoreProbe {
    last: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

impl StoreProbe {
    /// `Err(reason)` when the store cannot write.
    pub async fn check(&self, store: &dyn Store) -> Result<(), String> {
        let mut last = self.last.lock().await;
        if let Some((at, result)) = &*last
            && at.elapsed() < PROBE_REUSE
        {
            return result.clone();
        }
        let result = match tokio::time::timeout(PROBE_TIMEOUT, store.check_writable(now_ms())).await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "a write did not complete within {} s",
                PROBE_TIMEOUT.as_secs()
            )),
        };
        *last = Some((Instant::now(), result.clone()));
        result
    }
}

/// Liveness and readiness.
///
/// `200` once the engine serves requests, and `503` while the store cannot take writes
/// (events would be refused). Each check commits one tiny row; its answer is reused for a
/// second.
#[utoipa::path(
    get, path = "/healthz", tag = "operations", operation_id = "healthz", security(()),
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "The store cannot write (`store_unwritable`); the message says why", body = ErrorBody),
    )
)]
pub async fn healthz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    state
        .store_probe
        .check(state.store.as_ref())
        .await
        .map_err(|reason| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unwritable",
                format!(
                    "the store cannot write ({reason}); events are refused until it can: check the disk \
                     and the store's file-size and permission limits"
                ),
            )
        })?;
    Ok(Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    }))
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
        commits: state.store.commit_seconds(),
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
pub async fn openapi(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        super::event_types::document_with(state.ingest.event_types()),
    )
}
