//! wasmhook: a webhook delivery engine with WebAssembly adapters.
//!
//! Producers publish events; the engine stores each one durably with one delivery per
//! matching subscription, runs the subscription's adapter (a WASM component) to shape the
//! request, signs it (Standard Webhooks) and delivers it at least once.
//!
//! # Layout
//!
//! - [`config`]: the TOML configuration, its defaults and environment overrides.
//! - [`event`]: published events, their validation and the default envelope.
//! - [`subscription`]: subscriptions, their payload filters and the
//!   [`subscription::Catalog`] that routes to them.
//! - [`router`]: the event-type pattern index behind the catalog.
//! - [`store`]: the durable store trait, the embedded SQLite backend and the PostgreSQL
//!   backend for several nodes.
//! - [`cluster`]: heartbeats, lease renewal and subscription changes between nodes.
//! - [`delivery`]: scheduler, attempts, retry policy, rate limits, circuit breakers,
//!   signing, HTTP client, SSRF guard.
//! - [`plugins`]: one module per WIT version (bindings, conversions, linker), manifests and
//!   settings checks, the sandbox and the plugin registry.
//! - [`metrics`]: Prometheus metrics.
//! - [`api`]: the HTTP API and its generated OpenAPI document.
//! - [`engine`]: wires everything together for `wasmhook serve`.
//! - [`cli`]: the `wasmhook` command line.
//! - [`secret`], [`text`]: small shared helpers.

pub mod api;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod delivery;
pub mod engine;
pub mod event;
pub mod metrics;
pub mod plugins;
pub mod router;
pub mod secret;
pub mod store;
pub mod subscription;
pub mod text;
