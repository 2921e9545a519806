//! wasmhook: a webhook delivery engine with WebAssembly adapters.
//!
//! Producers publish events; the engine stores each one durably with one delivery per
//! matching subscription, runs the subscription's adapter (a WASM component) to shape the
//! request, signs it (Standard Webhooks) and delivers it at least once.
//!
//! # Embedding
//!
//! A Rust program can run the engine in its own process and publish without any HTTP or
//! TCP listener: build an [`Engine`] from a [`config::Config`] value (the same TOML
//! `wasmhook serve` reads), call [`Engine::publish`], which returns once the event is
//! durable, and [`Engine::shutdown`] at the end. `wasmhook serve` is this same engine with
//! the HTTP API in front ([`engine::run`]). `examples/embedded` is a complete program.
//!
//! ```no_run
//! use wasmhook::config::{Config, ProcessEnv};
//! use wasmhook::event::EventDraft;
//! use wasmhook::Engine;
//!
//! # async fn demo() -> anyhow::Result<()> {
//! let config = Config::parse(r#"
//!     [storage]
//!     path = "/var/lib/my-service/webhooks"
//!
//!     [[subscriptions]]
//!     id = "billing"
//!     url = "https://billing.example.com/hooks"
//!     events = ["order.*"]
//!     secret_env = "BILLING_WEBHOOK_SECRET"
//! "#)?;
//! let engine = Engine::start(config, &ProcessEnv).await?;
//!
//! let draft = EventDraft::new("order.paid", &serde_json::json!({"order": 42}))
//!     .with_id("order-42-paid"); // the idempotency key
//! let accepted = engine.publish(draft).await?; // durable once this returns
//! assert_eq!(accepted.results.len(), 1);
//!
//! engine.shutdown().await?; // attempts in flight finish within [delivery] shutdown_grace
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! - [`config`]: the TOML configuration, its defaults and environment overrides.
//! - [`clock`]: now, and the RFC 3339 times the engine writes and reads.
//! - [`event`]: published events, their validation, the default envelope and the
//!   declared event type catalog (`[[event_types]]`).
//! - [`ingest`]: the one path every producer takes: validate, route, mint ids, store,
//!   wake the scheduler, count.
//! - [`feed`]: the live feed of accepted events and delivery outcomes behind
//!   `/v1/stream`.
//! - [`subscription`]: subscriptions, their payload filters and the
//!   [`subscription::Catalog`] that routes to them.
//! - [`source`]: `[[sources]]`, producers the engine pulls from (NATS JetStream), each
//!   feeding ingest and acknowledging only what is committed.
//! - [`retention`]: purging what `[retention]` no longer keeps, in small steps.
//! - [`router`]: the event-type pattern index behind the catalog.
//! - [`store`]: the durable store trait, the embedded SQLite backend and the PostgreSQL
//!   backend for several nodes.
//! - [`cluster`]: heartbeats, lease renewal and subscription changes between nodes.
//! - [`delivery`]: scheduler, attempts, retry policy, rate limits, circuit breakers,
//!   signing, HTTP client, SSRF guard.
//! - [`plugins`]: one module per WIT version (bindings, conversions, linker), manifests and
//!   settings checks, the sandbox and the plugin registry.
//! - [`metrics`]: Prometheus metrics.
//! - [`ops`]: the engine's own `wasmhook.*` events, published through ingest.
//! - [`api`]: the HTTP API and its generated OpenAPI document.
//! - [`engine`]: wires everything together into an [`Engine`], embedded in a program or
//!   served over HTTP by `wasmhook serve`.
//! - [`cli`]: the `wasmhook` command line.
//! - [`keyring`]: the keys that encrypt secrets at rest, and sealing with them.
//! - [`signing`]: Standard Webhooks signatures and secrets; used by delivery, the CLI's
//!   `verify`, subscription validation and the adapters' host signing import.
//! - [`outbound`]: the rules every outbound request follows: receiver URLs, endpoint
//!   keys, headers only the engine sets.
//! - [`secret`], [`text`]: small shared helpers.

pub mod api;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod delivery;
pub mod engine;
pub mod event;
pub mod feed;
pub mod ingest;
pub mod keyring;
pub mod metrics;
pub mod ops;
pub mod outbound;
pub mod plugins;
pub mod retention;
pub mod router;
pub mod secret;
pub mod signing;
pub mod source;
pub mod store;
pub mod subscription;
pub mod telemetry;
pub mod text;

pub use engine::Engine;
