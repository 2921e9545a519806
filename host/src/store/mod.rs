//! Durable state: events, deliveries (one per event and subscription) and attempts (one per
//! try). `Store` is the one trait every backend implements; `embedded` (SQLite, no server)
//! is the default.
//!
//! Times are Unix milliseconds supplied by the caller, so backends never read the clock
//! themselves and tests can pin time.

#[cfg(test)]
pub mod conformance;
mod embedded;
mod model;

pub use embedded::EmbeddedStore;
pub use model::*;

use std::time::Duration;

use async_trait::async_trait;

/// A store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error.
    #[error("database error: {0}")]
    Database(String),
    /// The store's writer has stopped (the engine is shutting down or the writer crashed).
    #[error("the store is closed")]
    Closed,
    /// The store could not be opened.
    #[error("cannot open the store at {path}: {reason}")]
    Open {
        /// Where.
        path: String,
        /// Why.
        reason: String,
    },
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Database(e.to_string())
    }
}

/// The persistence contract. Every method is atomic on its own.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Stores events and their deliveries, each event in the same transaction as its
    /// deliveries, and returns once they are durable. An event whose id already exists
    /// is not stored again: its result reports the original delivery count.
    async fn ingest(&self, batch: Vec<NewEvent>) -> Result<Vec<IngestResult>, StoreError>;

    /// Claims up to `limit` deliveries due at `now_ms`, leasing each for `lease`. A claimed
    /// delivery is not handed out again until it is recorded or its lease runs out.
    async fn claim_due(
        &self,
        now_ms: i64,
        limit: usize,
        lease: Duration,
    ) -> Result<Claim, StoreError>;

    /// Records finished attempts and moves each delivery to its next state. Durable
    /// before it returns.
    async fn record(&self, records: Vec<AttemptRecord>) -> Result<(), StoreError>;

    /// One delivery with its attempts.
    async fn delivery(&self, id: &str) -> Result<Option<DeliveryDetail>, StoreError>;

    /// A page of deliveries, newest first.
    async fn list_deliveries(
        &self,
        filter: DeliveryFilter,
    ) -> Result<Vec<DeliverySummary>, StoreError>;

    /// Makes one delivery due at `now_ms` with a fresh retry budget, whatever its state,
    /// unless an attempt is running right now.
    async fn retry_delivery(&self, id: &str, now_ms: i64) -> Result<RetryOutcome, StoreError>;

    /// Makes the matching dead letters due at `now_ms` with a fresh retry budget; returns
    /// how many. Each keeps its id, so receivers see the same `webhook-id`.
    async fn replay_dead_letters(
        &self,
        filter: ReplayFilter,
        now_ms: i64,
    ) -> Result<u64, StoreError>;

    /// Makes the deliveries parked on `key` (see `AttemptRecord::parked_on`) due at
    /// `now_ms`; returns how many.
    async fn unpark(&self, key: &str, now_ms: i64) -> Result<u64, StoreError>;

    /// Pending deliveries due by `now_ms` (or in flight), and later.
    async fn queue_depth(&self, now_ms: i64) -> Result<QueueDepth, StoreError>;

    /// Every subscription, by id.
    async fn subscriptions(&self) -> Result<Vec<StoredSubscription>, StoreError>;

    /// Creates or replaces one subscription.
    async fn put_subscription(&self, subscription: StoredSubscription) -> Result<(), StoreError>;

    /// Deletes one subscription; false when it did not exist.
    async fn delete_subscription(&self, id: &str) -> Result<bool, StoreError>;

    /// Makes the config-file subscriptions exactly `subscriptions`: upserts each (keeping
    /// its `enabled` state and creation time) and deletes config-sourced ones no longer
    /// listed. API-created subscriptions are left alone, except one with the same id as a
    /// config entry, which the config entry replaces.
    async fn sync_config_subscriptions(
        &self,
        subscriptions: Vec<StoredSubscription>,
    ) -> Result<(), StoreError>;

    /// Enables or disables one subscription; false when it does not exist.
    async fn set_subscription_enabled(
        &self,
        id: &str,
        enabled: bool,
        reason: Option<String>,
        now_ms: i64,
    ) -> Result<bool, StoreError>;
}
