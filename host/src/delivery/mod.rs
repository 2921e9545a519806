//! Delivery: from a claimed delivery to a signed request at the receiver, and what happens
//! after.
//!
//! - `scheduler`: claims due deliveries and runs attempts within the concurrency limit.
//! - `attempt`: one attempt (adapter, sign, send, decide).
//! - `endpoints`: per-endpoint circuit breaker, concurrency limit and latency.
//! - `breaker`: the circuit breaker state machine, pure.
//! - `adapter_breakers`: backing off an adapter that keeps failing for a subscription.
//! - `rate_limit`: per-subscription rate limits (GCRA with reserved slots).
//! - `retry`: the retry policy, pure.
//! - `client`: the pooled HTTP client and its guarded connector.
//! - `proxy`: egress through an HTTP proxy, and which destinations bypass it.
//! - `ssrf`: which addresses the connector may reach, pure.

pub mod adapter_breakers;
pub mod attempt;
pub mod breaker;
pub mod client;
pub mod endpoints;
pub mod proxy;
pub mod rate_limit;
pub mod retry;
pub mod scheduler;
pub mod ssrf;

pub use attempt::Deliverer;
pub use client::HttpClient;
pub use endpoints::{EndpointLimits, Endpoints};
pub use scheduler::Scheduler;
