//! `/v1/endpoints`: each receiver endpoint's circuit, load and latency.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::AppState;

/// `GET /v1/endpoints`
pub async fn list(State(state): State<AppState>) -> Json<Value> {
    Json(json!({"data": state.endpoints.snapshot()}))
}
