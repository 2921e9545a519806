//! `/v1/endpoints`: each receiver endpoint's circuit, load and latency.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::openapi::ErrorBody;
use crate::clock::rfc3339;
use crate::delivery::breaker::BreakerState;
use crate::delivery::endpoints::EndpointStatus;

/// What `/v1/endpoints` and the metrics show for one endpoint.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EndpointInfo {
    /// `scheme://host:port`.
    pub endpoint: String,
    /// `closed`, `open` or `half_open`.
    #[schema(value_type = String, pattern = "^(closed|open|half_open)$")]
    pub circuit: &'static str,
    /// Failures in a row (closed only).
    pub consecutive_failures: u32,
    /// When the open circuit lets a probe through, RFC 3339.
    #[schema(format = DateTime)]
    pub open_until: Option<String>,
    /// Attempts in flight now.
    pub in_flight: usize,
    /// The concurrency limit.
    pub concurrency_limit: usize,
    /// Smoothed attempt latency, ms.
    pub latency_ms: f64,
}

impl From<EndpointStatus> for EndpointInfo {
    fn from(e: EndpointStatus) -> Self {
        let (circuit, consecutive_failures, open_until) = match e.circuit {
            BreakerState::Closed {
                consecutive_failures,
            } => ("closed", consecutive_failures, None),
            BreakerState::Open { until_ms } => ("open", 0, Some(rfc3339(until_ms))),
            BreakerState::HalfOpen => ("half_open", 0, None),
        };
        Self {
            endpoint: e.endpoint,
            circuit,
            consecutive_failures,
            open_until,
            in_flight: e.in_flight,
            concurrency_limit: e.concurrency_limit,
            latency_ms: e.latency_us as f64 / 1e3,
        }
    }
}

/// Every endpoint the engine has sent to.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointList {
    /// One per `scheme://host:port`.
    pub data: Vec<EndpointInfo>,
}

/// Lists receiver endpoints with their circuit state, load and latency.
#[utoipa::path(
    get, path = "/endpoints", tag = "operations", operation_id = "list_endpoints",
    responses(
        (status = 200, description = "Endpoints", body = EndpointList),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
    )
)]
pub async fn list(State(state): State<AppState>) -> Json<EndpointList> {
    Json(EndpointList {
        data: state
            .endpoints
            .snapshot()
            .into_iter()
            .map(EndpointInfo::from)
            .collect(),
    })
}
