//! Durable state: events, deliveries (one per event and subscription) and attempts (one per
//! try). `Store` is the one trait every backend implements; `embedded` (SQLite, no server)
//! is the default.
//!
//! Times are Unix milliseconds supplied by the caller, so backends never read the clock
//! themselves and tests can pin time.

mod embedded;
mod model;

pub use embedded::EmbeddedStore;
pub use model::*;

use std::time::Duration;

use async_trait::async_trait;

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
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
}
