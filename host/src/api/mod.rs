//! The HTTP API: `/v1/*` (bearer tokens with scopes), `/healthz`, `/metrics` and
//! `/openapi.json`, and the operator console at `/ui` (`ui/`).
//! One file per resource; errors map to status codes in one place (`error.rs`); the
//! OpenAPI document is generated from the handlers' annotations (`openapi.rs`).

mod auth;
mod body;
pub mod browser;
mod dead_letters;
mod deliveries;
mod endpoints;
mod error;
mod event_types;
mod events;
mod health;
pub mod openapi;
mod plugins;
mod query;
pub mod serve;
mod stream;
mod subscriptions;
pub mod ui;

pub use error::ApiError;
pub use health::StoreProbe;

use std::sync::Arc;

use axum::Router;
use tokio::sync::Notify;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::cluster::Cluster;
use crate::config::{ApiToken, LimitsConfig};
use crate::delivery::Endpoints;
use crate::delivery::ssrf::NetworkPolicy;
use crate::feed::Feed;
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::ops::OpsEmitter;
use crate::plugins::Registry;
use crate::store::Store;
use crate::subscription::Subscriptions;

/// What every handler can reach, behind one `Arc`: axum clones the state for each
/// middleware layer and extractor of every request, and a field-by-field clone (a dozen
/// `Arc`s, the tokens' strings, the policies) was about 2% of the engine's CPU on
/// single-event POSTs (perf, `profile-mixed-single`).
#[derive(Debug, Clone)]
pub struct AppState(Arc<AppStateInner>);

impl AppState {
    /// Shares `inner` with every handler.
    pub fn new(inner: AppStateInner) -> Self {
        Self(Arc::new(inner))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppStateInner;

    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

/// The fields of [`AppState`].
#[derive(Debug)]
pub struct AppStateInner {
    /// Durable state.
    pub store: Arc<dyn Store>,
    /// Where every published event goes.
    pub ingest: Arc<Ingest>,
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
    /// Accepted bearer tokens for `/v1/*`, each with its name and scope; empty leaves the
    /// API open.
    pub api_tokens: Vec<ApiToken>,
    /// Whether `/metrics` needs a token too.
    pub metrics_require_token: bool,
    /// Input limits.
    pub limits: LimitsConfig,
    /// The SSRF policy, to refuse internal URLs when a subscription is created.
    pub network: NetworkPolicy,
    /// Origin, Host and content-type checks against web pages.
    pub browser: browser::BrowserPolicy,
    /// The write probe behind `/healthz`.
    pub store_probe: Arc<StoreProbe>,
    /// Where operational events go (an operator disabling a subscription).
    pub ops: OpsEmitter,
    /// Accepted events and delivery outcomes as they happen, for `/v1/stream`.
    pub feed: Feed,
    /// Console sessions; `None` when `[ui] enabled = false`.
    pub sessions: Option<Arc<ui::Sessions>>,
    /// Flips to true when shutdown begins; open streams end then.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

/// Every route, each with its OpenAPI operation. A handler is mounted only through
/// `routes!`, which also documents it, so the document lists exactly what is served.
fn routes() -> OpenApiRouter<AppState> {
    let v1 = OpenApiRouter::new()
        .routes(routes!(events::publish))
        .routes(routes!(events::publish_batch))
        .routes(routes!(event_types::list))
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
        .routes(routes!(plugins::list))
        .routes(routes!(plugins::dry_run))
        .routes(routes!(stream::stream));
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(health::healthz))
        .routes(routes!(health::metrics))
        .routes(routes!(health::openapi))
        .nest("/v1", v1)
}

/// The OpenAPI document of [`routes`].
pub fn document() -> utoipa::openapi::OpenApi {
    let mut document = routes().split_for_parts().1;
    openapi::add_scopes(&mut document);
    openapi::add_guard_answers(&mut document);
    document
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let (router, _) = routes().split_for_parts();
    let router = match &state.sessions {
        Some(_) => router.merge(ui::router(state.clone())),
        None => router,
    };
    let router = router
        .fallback(error::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            browser::guard,
        ))
        .with_state(state);
    catch_panics(router)
}

/// Turns a panicking handler into a `500 internal_error` answer instead of a dropped
/// connection; the panic is logged.
fn catch_panics(router: Router) -> Router {
    router.layer(tower_http::catch_panic::CatchPanicLayer::custom(
        error::panic_response,
    ))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::get;
    use http_body_util::BodyExt;
    use tower_service::Service;

    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_gets_a_500_with_the_error_shape() {
        let mut app = catch_panics(Router::new().route(
            "/boom",
            get(|| async {
                panic!("deliberate");
                #[allow(unreachable_code)]
                ""
            }),
        ));
        let req = http::Request::get("/boom").body(Body::empty()).unwrap();
        let resp = app.call(req).await.unwrap();
        assert_eq!(resp.status(), http::StatusCode::INTERNAL_SERVER_ERROR);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["code"], "internal_error");
        assert!(json["message"].as_str().unwrap().contains("keeps running"));
    }
}
