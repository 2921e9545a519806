//! `/v1/plugins`: what is loaded, what failed, and call counters.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::openapi::ErrorBody;
use crate::plugins::PluginInfo;

/// The plugins folder and what it holds.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginList {
    /// One per plugin name.
    pub data: Vec<PluginInfo>,
    /// The folder the engine watches.
    #[schema(value_type = String)]
    pub dir: std::path::PathBuf,
}

/// Lists adapters: the serving version of each, its content hash, and load errors.
#[utoipa::path(
    get, path = "/plugins", tag = "operations", operation_id = "list_plugins",
    responses(
        (status = 200, description = "Plugins", body = PluginList),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
    )
)]
pub async fn list(State(state): State<AppState>) -> Json<PluginList> {
    Json(PluginList {
        data: state.registry.list(),
        dir: state.registry.dir().to_path_buf(),
    })
}
