//! The HTTP API: `/v1/*` (bearer-token auth), `/healthz`, `/metrics` and `/openapi.json`.
//! One file per resource; errors map to status codes in one place (`error.rs`); the
//! OpenAPI document is generated from the handlers' annotations (`openapi.rs`).

mod auth;
mod dead_letters;
mod deliveries;
mod endpoints;
mod error;
mod events;
mod health;
pub mod openapi;
mod plugins;
mod subscriptions;

pub use error::ApiError;

use std::sync::Arc;

use axum::Router;
use tokio::sync::Notify;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::cluster::Cluster;
use crate::config::LimitsConfig;
use crate::delivery::Endpoints;
use crate::delivery::ssrf::NetworkPolicy;
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
    /// The nodes sharing the store, with the plugins each serves.
    pub cluster: Arc<Cluster>,
    /// Per-endpoint circuits.
    pub endpoints: Arc<Endpoints>,
    /// Counters.
    pub metrics: Metrics,
    /// Wakes the scheduler after ingest.
    pub wake: Arc<Notify>,
    /// Accepted bearer tokens for `/v1/*`; empty leaves the API open.
    pub api_tokens: Vec<Secret>,
    /// Whether `/metrics` needs a token too.
    pub metrics_require_token: bool,
    /// Input limits.
    pub limits: LimitsConfig,
    /// The SSRF policy, to refuse internal URLs when a subscription is created.
    pub network: NetworkPolicy,
}

/// Every route, each with its OpenAPI operation. A handler is mounted only through
/// `routes!`, which also documents it, so the document lists exactly what is served.
fn routes() -> OpenApiRouter<AppState> {
    let v1 = OpenApiRouter::new()
        .routes(routes!(events::publish))
        .routes(routes!(events::publish_batch))
        .routes(routes!(subscriptions::list, subscriptions::create))
        .routes(routes!(
            subscriptions::get,
            subscriptions::patch,
            subscriptions::delete
        ))
        .routes(routes!(subscriptions::rotate_secret))
        .routes(routes!(subscriptions::test))
        .routes(routes!(deliveries::list))
        .routes(routes!(deliveries::get))
        .routes(routes!(deliveries::retry))
        .routes(routes!(dead_letters::list))
        .routes(routes!(dead_letters::replay))
        .routes(routes!(endpoints::list))
        .routes(routes!(plugins::list));
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(health::healthz))
        .routes(routes!(health::metrics))
        .routes(routes!(health::openapi))
        .nest("/v1", v1)
}

/// The OpenAPI document of [`routes`].
pub fn document() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let (router, _) = routes().split_for_parts();
    router
        .fallback(error::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .with_state(state)
}
