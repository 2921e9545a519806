//! `/v1/plugins`: what is loaded, what failed, and call counters; and a dry run of a
//! loaded adapter on an event.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::body::read_body;
use super::openapi::ErrorBody;
use super::{ApiError, AppState};
use crate::clock::now_ms;
use crate::event::{EventError, Publisher, parse_event};
use crate::plugins::{Action, OwnedCall, PluginInfo};
use crate::signing::{SigningKey, generate_secret};
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

/// Body of `POST /v1/plugins/{name}/dry-run`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DryRunRequest {
    /// The event, as it would be published (`{"type": …, "data": {…}}`).
    #[schema(value_type = Object)]
    event: serde_json::Value,
    /// The subscription settings the adapter gets (`channel`, `routing_key`, …).
    #[serde(default)]
    settings: BTreeMap<String, String>,
    /// The subscription URL the adapter gets. Default: `https://receiver.invalid/`.
    url: Option<String>,
}

/// What the adapter would do: the request it would send, or why it skips. Nothing is
/// sent and nothing is stored; the request is shown before signing.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum DryRunResult {
    /// The adapter returned a request.
    Deliver {
        /// The HTTP method.
        method: String,
        /// Where it would go.
        url: String,
        /// Its headers (before the engine's signature headers).
        headers: BTreeMap<String, String>,
        /// The body, as JSON when it is JSON, otherwise as text.
        #[schema(value_type = Object)]
        body: serde_json::Value,
    },
    /// The adapter chose to send nothing.
    Skip {
        /// Its reason.
        reason: String,
    },
}

/// Runs a loaded adapter on an event without sending anything (as `wasmhook plugin run`).
#[utoipa::path(
    post, path = "/plugins/{name}/dry-run", tag = "operations", operation_id = "dry_run_plugin",
    params(("name" = String, Path, description = "The plugin name")),
    request_body(content = DryRunRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "What the adapter would do", body = DryRunResult),
        (status = 400, description = "Not a valid request or event (`invalid_json`, `invalid_event`)", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such plugin is loaded (`plugin_not_found`)", body = ErrorBody),
        (status = 422, description = "The adapter failed (`adapter_failed`); the message names the plugin and version", body = ErrorBody),
    )
)]
pub async fn dry_run(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: axum::body::Body,
) -> Result<Json<DryRunResult>, ApiError> {
    let bytes = read_body(body, state.limits.max_event_bytes.saturating_add(64 << 10)).await?;
    let request: DryRunRequest = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.to_string()))?;
    let invalid =
        |e: EventError| ApiError::new(StatusCode::BAD_REQUEST, "invalid_event", e.to_string());
    let event = parse_event(request.event.to_string().as_bytes())
        .and_then(|d| d.validate(now_ms(), state.ingest.limits(), Publisher::Engine))
        .map_err(invalid)?;
    let plugin = state.registry.get(&name).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "plugin_not_found",
            format!("no plugin `{name}` is loaded; see GET /v1/plugins"),
        )
    })?;
    let url = request
        .url
        .unwrap_or_else(|| "https://receiver.invalid/".to_owned());
    let settings: Vec<(String, String)> = request.settings.into_iter().collect();
    let settings = match &plugin.manifest {
        Some(manifest) => manifest.with_defaults(&settings),
        None => settings,
    };
    // A throwaway key, so an adapter that signs through the host can run; the real
    // secrets are never handed to a dry run.
    let throwaway = SigningKey::from_secret(&generate_secret()).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            e.to_string(),
        )
    })?;
    let now = now_ms();
    let call = OwnedCall {
        label: plugin.label.clone(),
        event,
        subscription_id: "sub_dry_run".to_owned(),
        url: url.clone(),
        settings,
        attempt: 1,
        timestamp: now / 1000,
        signing_keys: vec![throwaway],
        delivery_id: "msg_dry_run".to_owned(),
        limits: state.registry.limits_for(&name),
    };
    let action = state
        .registry
        .sandbox()
        .run(plugin.prepared.clone(), call, false, std::future::pending())
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "adapter_failed",
                e.to_string(),
            )
        })?;
    Ok(Json(match action {
        Action::Deliver(req) => DryRunResult::Deliver {
            body: serde_json::from_slice(&req.body).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(&req.body).into_owned())
            }),
            method: req.method,
            url: req.url.unwrap_or(url),
            headers: req.headers.into_iter().collect(),
        },
        Action::Skip(reason) => DryRunResult::Skip { reason },
    }))
}
