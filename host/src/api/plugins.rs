//! `/v1/plugins`: what is loaded, what failed, and call counters.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::AppState;

/// `GET /v1/plugins`
pub async fn list(State(state): State<AppState>) -> Json<Value> {
    Json(json!({"data": state.registry.list(), "dir": state.registry.dir()}))
}
