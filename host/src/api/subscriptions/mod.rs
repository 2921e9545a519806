//! `/v1/subscriptions`: create, read, change and delete subscriptions, rotate their signing
//! secret and send them a test event. The store is the source of truth; every change
//! rebuilds the routing catalog, so it takes effect without a restart.
//!
//! Secrets are shown once: in the answer to a create or a rotation. Reads show setting and
//! header values that are secret (declared in `secret_settings`, or named like a credential)
//! as `***`.
//!
//! - `types`: the request and answer bodies, as the OpenAPI document shows them.
//! - `view`: what reads show of a stored subscription, redacted.
//! - `handlers`: the endpoints.

mod handlers;
mod types;
mod view;

pub use handlers::*;
pub(crate) use types::SubscriptionView;
