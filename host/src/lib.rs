//! wasmhook: a webhook delivery engine with WebAssembly adapters.
//!
//! Producers publish events; the engine stores each one durably with one delivery per
//! matching subscription, runs the subscription's adapter (a WASM component) to shape the
//! request, signs it (Standard Webhooks) and delivers it at least once.
//!
//! # Layout
//!
//! - [`config`]: the TOML configuration, its defaults and environment overrides.
//! - [`clock`]: now, and the RFC 3339 times the engine writes and reads.
//! - [`event`]: published events, their validation and the default envelope.
//! - [`ingest`]: the one path every producer takes: validate, route, mint ids, store,
//!   wake the scheduler, count.
//! - [`feed`]: the live feed of accepted events and delivery outcomes behind
//!   `/v1/stream`.
//! - [`subscription`]: subscriptions, their payload filters and the
//!   [`subscription::Catalog`] that routes to them.
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
//! - [`engine`]: wires everything together for `wasmhook serve`.
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
pub mod store;
pub mod subscription;
pub mod text;
