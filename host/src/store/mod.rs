//! Durable state: events, deliveries (one per event and subscription) and attempts (one per
//! try). `Store` is the one trait every backend implements, one file per backend:
//! `embedded` (SQLite, no server, the default; `checkpoint` keeps its WAL bounded) and
//! `postgres` (several engine nodes on one database). `conformance` is the one test suite
//! both pass; `health` is what both keep per subscription (the last attempt, the run of
//! failures, hourly counts), computed purely.
//!
//! Times are Unix milliseconds supplied by the caller, so backends never read the clock
//! themselves and tests can pin time.

mod checkpoint;
#[cfg(test)]
pub mod conformance;
mod embedded;
pub mod health;
pub mod migrate;
mod model;
mod pg_tls;
mod postgres;
mod sealed;
mod syncer;

pub use embedded::EmbeddedStore;
#[cfg(test)]
pub(crate) use embedded::store_with_padded_events;
pub use health::{DisablePolicy, StoredHealth, SubscriptionHealth};
pub use model::*;
pub use pg_tls::PgTls;
pub use postgres::{PostgresOptions, PostgresStore, default_node_id, redact_url};
pub use sealed::SealedStore;

use prometheus_client::metrics::histogram::Histogram;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use async_trait::async_trait;

/// What `Store::ingest_announcing` runs at an ingest's commit.
pub type Committed = Box<dyn FnOnce(&[IngestResult]) + Send>;

/// A store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error.
    #[error("database error: {0}")]
    Database(String),
    /// The store's writer has stopped (the engine is shutting down or the writer crashed).
    #[error("the store is closed")]
    Closed,
    /// A stored subscription could not be decrypted with the configured keys.
    #[error("cannot decrypt subscription `{id}`: {reason}")]
    Undecryptable {
        /// The subscription.
        id: String,
        /// Why, and which key it needs.
        reason: String,
    },
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

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        // The server's own message (constraint, syntax, …) is more useful than the kind.
        match e.as_db_error() {
            Some(db) => Self::Database(format!("{}: {}", db.code().code(), db.message())),
            None => Self::Database(e.to_string()),
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Database(format!("no database connection: {e}"))
    }
}

/// The persistence contract. Every method is atomic on its own.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Stores events and their deliveries, each event in the same transaction as its
    /// deliveries, and returns once they are durable. An event whose id already exists
    /// is not stored again: its result reports the original delivery count.
    async fn ingest(&self, batch: Vec<NewEvent>) -> Result<Vec<IngestResult>, StoreError>;

    /// Like `ingest`, and runs `committed` with the results once the batch is committed,
    /// before any of its deliveries can be claimed. The embedded store runs it on its
    /// writer thread at the commit (the scheduler may take the deliveries while the commit
    /// is still being synced, see `ingest_commits`), so what `committed` announces comes
    /// before the deliveries' outcomes; by default it runs once `ingest` returns.
    async fn ingest_announcing(
        &self,
        batch: Vec<NewEvent>,
        committed: Committed,
    ) -> Result<Vec<IngestResult>, StoreError> {
        let results = self.ingest(batch).await?;
        committed(&results);
        Ok(results)
    }

    /// Claims up to `limit` deliveries due at `now_ms`, leasing each for `lease`. A claimed
    /// delivery is not handed out again until it is recorded or its lease runs out.
    /// `Duration::MAX` holds it until it is recorded (or the process ends): right for a
    /// store one process owns, where no other node could take over a lease.
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

    /// Creates one subscription unless its id exists; false when it does (nothing is
    /// changed). Atomic: of concurrent creates with one id, exactly one succeeds.
    async fn create_subscription(
        &self,
        subscription: StoredSubscription,
    ) -> Result<bool, StoreError>;

    /// Deletes one subscription and cancels its pending deliveries (status `cancelled`);
    /// false when it did not exist.
    async fn delete_subscription(&self, id: &str, now_ms: i64) -> Result<bool, StoreError>;

    /// The health of one subscription, or of all (`None`), as kept by `record`, with the
    /// hourly counts of the last 25 hours before `now_ms`.
    async fn subscription_health(
        &self,
        id: Option<&str>,
        now_ms: i64,
    ) -> Result<HashMap<String, StoredHealth>, StoreError>;

    /// Makes the config-file subscriptions exactly `subscriptions`: upserts each (keeping
    /// its `enabled` state and creation time) and deletes config-sourced ones no longer
    /// listed. API-created subscriptions are left alone, except one with the same id as a
    /// config entry, which the config entry replaces.
    async fn sync_config_subscriptions(
        &self,
        subscriptions: Vec<StoredSubscription>,
    ) -> Result<(), StoreError>;

    /// Replaces the stored text of specs in place, each only while it still reads `old` (so
    /// a concurrent change wins), without counting as a change to the subscriptions; the
    /// backend also scrubs the old text where it can. Used to encrypt specs again (with a
    /// new key, or for the first time). Returns how many rows changed.
    async fn rewrite_specs(&self, rewrites: Vec<SpecRewrite>) -> Result<u64, StoreError>;

    /// One step of purging deliveries: looks at up to `limit` deliveries after `cursor`, in
    /// creation order, and deletes the finished ones the cutoffs allow, with their
    /// attempts. Never touches a pending delivery.
    async fn purge_deliveries(
        &self,
        cutoffs: PurgeCutoffs,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<Purged, StoreError>;

    /// One step of purging events: looks at up to `limit` events after `cursor` and
    /// deletes those created before `cutoffs.events_before` with no delivery left. Also
    /// drops the hourly health counts `cutoffs.counts_before` allows (on the first step).
    async fn purge_events(
        &self,
        cutoffs: PurgeCutoffs,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<Purged, StoreError>;

    /// Gives purged space back to the file system where the backend can (the embedded
    /// store's incremental vacuum; PostgreSQL's autovacuum does this by itself), one
    /// bounded step at a time: true when this step gave some back and more is left.
    async fn reclaim(&self) -> Result<bool, StoreError>;

    /// Enables or disables one subscription; false when it does not exist.
    async fn set_subscription_enabled(
        &self,
        id: &str,
        enabled: bool,
        reason: Option<String>,
        now_ms: i64,
    ) -> Result<bool, StoreError>;

    /// Called by the engine every few seconds: renews this node's leases, records that it is
    /// alive with the plugins it serves, and answers every node seen lately (this one
    /// included). The embedded store has one node, this one.
    async fn heartbeat(
        &self,
        now_ms: i64,
        report: NodeReport,
    ) -> Result<Vec<NodeStatus>, StoreError>;

    /// A number that changes whenever any node changes a subscription, so a node can tell
    /// that its catalog is stale.
    async fn subscriptions_version(&self) -> Result<i64, StoreError>;

    /// Signalled as soon as another node may have changed subscriptions (PostgreSQL
    /// `LISTEN`/`NOTIFY`); `None` when no other node can. Callers still poll
    /// `subscriptions_version`, in case a signal was missed.
    fn subscription_changes(&self) -> Option<Arc<Notify>>;

    /// Signalled by the store itself when an ingest commits, before the ingest is
    /// answered, so the scheduler takes the fresh deliveries while the commit is still
    /// being synced, and once per batch of ingests rather than once per caller; `None`
    /// when the store does not, and the ingest service wakes the scheduler once `ingest`
    /// returns.
    fn ingest_commits(&self) -> Option<Arc<Notify>>;

    /// This node's id in the store (`heartbeat`, `claimed_by`).
    fn node_id(&self) -> &str;

    /// How long each of the embedded store's write batches took, from its start to its
    /// callers' answers (transaction, commit, `fsync`), for `/metrics`. The writer runs one
    /// batch at a time, so a slow one holds up every write queued behind it. `None` where
    /// the database server commits (PostgreSQL).
    fn commit_seconds(&self) -> Option<Histogram> {
        None
    }

    /// Writes one tiny row and commits it, to tell `/healthz` whether the store can take
    /// writes (a full disk, a file-size limit or a read-only database fail it). The
    /// embedded store also fails it for 30 s after any write the disk refused, since a
    /// tiny row may still fit where an event does not.
    async fn check_writable(&self, now_ms: i64) -> Result<(), StoreError>;
}
