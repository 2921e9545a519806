//! Subscriptions: who wants which events, where they go, through which adapter, and how they
//! are signed and retried.
//!
//! - `spec`: the stored spec, its validation, and the runtime `Subscription`.
//! - `catalog`: the routing snapshot and the service that rebuilds it from the store.

mod catalog;
mod spec;

pub use catalog::{Catalog, Subscriptions};
pub use spec::*;
