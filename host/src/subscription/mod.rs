//! Subscriptions: who wants which events, where they go, through which adapter, and how they
//! are signed and retried.
//!
//! - `spec`: the stored spec, its validation, and the runtime `Subscription`.
//! - `catalog`: the routing snapshot and the service that rebuilds it from the store.
//! - `filter`: payload filters (CEL expressions over the event).
//! - `client_cert`: TLS client certificates for receivers that require mutual TLS.

mod catalog;
mod client_cert;
mod filter;
mod spec;

pub use catalog::{BuildError, Catalog, Subscriptions};
pub use client_cert::{CertificateInfo, ClientCertError, ClientCertificate, ClientIdentity};
pub use filter::{FilterError, FilterInput, PayloadFilter};
pub use spec::*;
