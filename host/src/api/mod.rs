//! The HTTP API: `/v1/*` (bearer-token auth) and `/healthz`. One file per resource; errors
//! map to status codes in one place (`error.rs`).

mod auth;
mod dead_letters;
mod deliveries;
mod endpoints;
mod error;
mod events;
mod health;
mod plugins;
mod subscriptions;

pub use error::ApiError;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::delivery::ssrf::NetworkPolicy;
use tokio::sync::Notify;

use crate::config::LimitsConfig;
use crate::delivery::Endpoints;
use crate::metrics::Metrics;
use crate::plugins::Registry;
use crate::secret::Secret;
use crate::store::Store;
use crate::subscription::Subscriptions;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Durable state.
    pub store: Arc<dyn Store>,
    /// Subscriptions.
    pub subscriptions: Arc<Subscriptions>,
    /// Loaded plugins.
    pub registry: Arc<Registry>,
    /// Per-endpoint circuits.
    pub endpoints: Arc<Endpoints>,
    /// Counters.
    pub metrics: Metrics,
    /// Wakes the scheduler after ingest.
    pub wake: Arc<Notify>,
    /// Accepted bearer tokens for `/v1/*`; empty leaves the API open.
    pub api_tokens: Vec<Secret>,
    /// Input limits.
    pub limits: LimitsConfig,
    /// The SSRF policy, to refuse internal URLs when a subscription is created.
    pub network: NetworkPolicy,
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/events", post(events::publish))
        .route("/events/batch", post(events::publish_batch))
        .route("/deliveries", get(deliveries::list))
        .route("/deliveries/{id}", get(deliveries::get))
        .route("/deliveries/{id}/retry", post(deliveries::retry))
        .route("/dead-letters", get(dead_letters::list))
        .route("/dead-letters/replay", post(dead_letters::replay))
        .route("/endpoints", get(endpoints::list))
        .route("/plugins", get(plugins::list))
        .route(
            "/subscriptions",
            get(subscriptions::list).post(subscriptions::create),
        )
        .route(
            "/subscriptions/{id}",
            get(subscriptions::get)
                .patch(subscriptions::patch)
                .delete(subscriptions::delete),
        )
        .route(
            "/subscriptions/{id}/rotate-secret",
            post(subscriptions::rotate_secret),
        )
        .route("/subscriptions/{id}/test", post(subscriptions::test))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(health::metrics))
        .nest("/v1", v1)
        .fallback(error::not_found)
        .with_state(state)
}
