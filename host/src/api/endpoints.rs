//! `/v1/endpoints`: each receiver endpoint's circuit, load and latency.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::openapi::ErrorBody;
use crate::delivery::endpoints::EndpointInfo;

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
        data: state.endpoints.snapshot(),
    })
}
