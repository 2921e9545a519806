//! `/v1/plugins`: what is loaded, what failed, and call counters.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::openapi::ErrorBody;
use crate::plugins::PluginInfo;
use crate::store::NodeStatus;

/// The plugins folder and what it holds.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginList {
    /// One per plugin name, on the node answering.
    pub data: Vec<PluginInfo>,
    /// The folder the engine watches.
    #[schema(value_type = String)]
    pub dir: std::path::PathBuf,
    /// Every node sharing the store, with the SHA-256 of each plugin it serves (as of its
    /// last heartbeat), so nodes whose folders disagree stand out. One entry with the
    /// embedded store.
    pub nodes: Vec<NodeStatus>,
    /// Whether the live nodes serve the same plugins with the same content.
    pub nodes_agree: bool,
}

/// Lists adapters: the serving version of each, its content hash, and load errors; and
/// the plugins of every node sharing the store.
#[utoipa::path(
    get, path = "/plugins", tag = "operations", operation_id = "list_plugins",
    responses(
        (status = 200, description = "Plugins", body = PluginList),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
    )
)]
pub async fn list(State(state): State<AppState>) -> Json<PluginList> {
    let nodes = state.cluster.nodes().as_ref().clone();
    let mut live = nodes.iter().filter(|n| n.live).map(|n| &n.plugins);
    let nodes_agree = match live.next() {
        Some(first) => live.all(|p| p == first),
        None => true,
    };
    Json(PluginList {
        data: state.registry.list(),
        dir: state.registry.dir().to_path_buf(),
        nodes,
        nodes_agree,
    })
}
