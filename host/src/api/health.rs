//! `/healthz`: answers once the engine is ready (the listener only opens when it is).

use axum::Json;
use serde_json::{Value, json};

/// `200 {"status":"ok"}`.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}
