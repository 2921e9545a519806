//! `/healthz` (answers once the engine is ready: the listener only opens when it is) and
//! `/metrics` (Prometheus text format).

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::event::now_ms;
use crate::metrics::Snapshot;

/// `200 {"status":"ok"}`.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}

/// `GET /metrics`
pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let snapshot = Snapshot {
        queue: state.store.queue_depth(now_ms()).await?,
        endpoints: state.endpoints.snapshot(),
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
