//! The PostgreSQL store: several engine nodes share one database.
//!
//! - **Claims** take due deliveries with `FOR UPDATE SKIP LOCKED`, so nodes never wait on
//!   each other, and lease them: `claimed_by` names the node, and `next_attempt_at` and
//!   `lease_until` move to the lease's end. A live node renews its leases at every
//!   heartbeat; a dead one stops, and its deliveries are due again for any node when the
//!   lease runs out. A record only moves a delivery its own node still holds (or nobody
//!   does), so a node that lost a lease cannot overwrite the new holder's outcome.
//! - **Migrations** are numbered and run at start inside a transaction holding a
//!   transaction-scoped advisory lock, so nodes starting together apply each one once.
//! - **Subscription changes** bump a sequence and send `NOTIFY wasmhook_subscriptions` in
//!   the same transaction; every node `LISTEN`s on a connection of its own and reloads its
//!   catalog, and polls the sequence in case a notification was missed.
//! - **Nodes** write a heartbeat row with the plugins they serve (name and SHA-256), which
//!   `/v1/plugins` shows so an operator can see nodes that disagree.
//!
//! Connections come from a `deadpool-postgres` pool, over TLS as `pg_tls` decides. Bulk writes (a batch of events, a
//! batch of attempt records) are one statement each, over `UNNEST`ed arrays, so a batch
//! costs a round trip, not one per row.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::Notify;
use tokio_postgres::types::ToSql;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::health::{HOUR_MS, StoredHealth, fold};
use super::pg_tls::{self, PgTls};
use super::{
    AttemptInfo, AttemptRecord, Claim, ClaimedDelivery, DeliveryDetail, DeliveryFilter,
    DeliveryStatus, DeliverySummary, IngestResult, NewEvent, NextState, NodeReport, NodeStatus,
    QueueDepth, ReplayFilter, RetryOutcome, SpecRewrite, Store, StoreError, StoredSubscription,
    SubscriptionSource,
};
use super::{PurgeCutoffs, Purged};
use crate::clock::{rfc3339, rfc3339_millis};
use crate::event::Event;

/// Channel of subscription-change notifications.
const CHANNEL: &str = "wasmhook_subscriptions";
/// Key of the advisory lock that serialises migrations across nodes.
const MIGRATION_LOCK: i64 = 0x7761_736d_686f_6f6b; // "wasmhook"
/// A node whose heartbeat is older than this many heartbeat intervals counts as gone.
const LIVE_INTERVALS: i64 = 3;
/// Heartbeat rows of nodes gone this long are deleted.
const FORGET_NODES_MS: i64 = 24 * 3600 * 1000;

/// The schema, one entry per version. Never edit a published entry: add the next one.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        "
CREATE TABLE events (
    id             TEXT PRIMARY KEY,
    type           TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    data           TEXT NOT NULL,
    delivery_count INTEGER NOT NULL
);
CREATE TABLE deliveries (
    id               TEXT PRIMARY KEY,
    event_id         TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    subscription_id  TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    run_start        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    claimed_by       TEXT,
    lease_until      BIGINT,
    last_error       TEXT,
    last_status      INTEGER,
    parked_on        TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_claimed ON deliveries (claimed_by) WHERE claimed_by IS NOT NULL;
CREATE INDEX deliveries_parked ON deliveries (parked_on) WHERE parked_on IS NOT NULL;
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE INDEX deliveries_subscription ON deliveries (subscription_id, id);
CREATE TABLE attempts (
    delivery_id    TEXT NOT NULL,
    attempt        INTEGER NOT NULL,
    started_at     BIGINT NOT NULL,
    latency_us     BIGINT NOT NULL,
    status_code    INTEGER,
    error          TEXT,
    response_body  TEXT,
    plugin_version TEXT,
    PRIMARY KEY (delivery_id, attempt)
);
CREATE TABLE subscriptions (
    id              TEXT PRIMARY KEY,
    source          TEXT NOT NULL,
    spec            TEXT NOT NULL,
    enabled         BOOLEAN NOT NULL,
    disabled_reason TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE SEQUENCE subscriptions_version;
CREATE TABLE nodes (
    id           TEXT PRIMARY KEY,
    started_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    plugins      TEXT NOT NULL
);
",
    ),
    (
        2,
        "
CREATE TABLE subscription_health (
    subscription_id      TEXT PRIMARY KEY,
    last_attempt_at      BIGINT NOT NULL,
    last_success         BOOLEAN NOT NULL,
    last_status          INTEGER,
    last_error           TEXT,
    last_success_at      BIGINT,
    consecutive_failures INTEGER NOT NULL,
    failing_since        BIGINT
);
CREATE TABLE subscription_stats (
    subscription_id TEXT NOT NULL,
    hour            BIGINT NOT NULL,
    succeeded       INTEGER NOT NULL,
    failed          INTEGER NOT NULL,
    PRIMARY KEY (subscription_id, hour)
);
CREATE INDEX events_created ON events (created_at, id);
",
    ),
    (3, "ALTER TABLE events ADD COLUMN traceparent TEXT;"),
];

/// `<host>-<pid>-<random>`: unique per process, readable in `/v1/plugins` and logs.
pub fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into());
    let random: u32 = rand::random();
    format!("{host}-{}-{random:08x}", std::process::id())
}

/// How to reach the database and how this node behaves in it.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// `postgres://user:password@host:port/database?...`
    pub url: String,
    /// Connections in the pool.
    pub pool_size: usize,
    /// This node's id.
    pub node_id: String,
    /// How often the engine calls `heartbeat`; a node silent for three of these counts as
    /// gone.
    pub heartbeat: Duration,
    /// How long a lease lasts from its last renewal; a heartbeat renews this node's.
    pub lease: Duration,
    /// TLS settings from `[storage]`; the URL's `sslmode` applies where they are silent.
    pub tls: PgTls,
}

/// The PostgreSQL-backed store.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    node_id: String,
    heartbeat_ms: i64,
    lease_ms: i64,
    changes: Arc<Notify>,
    /// Stops the `LISTEN` task when the last clone is dropped.
    _listener: Arc<ListenerGuard>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the URL: it may hold a password.
        f.debug_struct("PostgresStore")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

struct ListenerGuard(tokio::task::JoinHandle<()>);

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An error with its causes, `outer: inner: innermost`: the driver's own message for a
/// failed connection (`error performing TLS handshake`) leaves out why.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Database(e.to_string())
}

impl PostgresStore {
    /// Connects, runs the migrations this node has not seen applied, makes this node's own
    /// leftover leases due at `now_ms` (a restart under the same node id), and starts
    /// listening for subscription changes.
    pub async fn open(options: PostgresOptions, now_ms: i64) -> Result<Self, StoreError> {
        let open_err = |reason: String| StoreError::Open {
            path: redact_url(&options.url),
            reason,
        };
        let plan = pg_tls::plan(&options.url, &options.tls).map_err(open_err)?;
        let mut config = tokio_postgres::Config::from_str(&plan.url)
            .map_err(|e| open_err(format!("not a PostgreSQL URL: {e}")))?;
        let (driver_mode, tls) = pg_tls::connector(&plan).map_err(|e| open_err(e.to_string()))?;
        config.ssl_mode(driver_mode);
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(2))
            .build()
            .map_err(|e| open_err(e.to_string()))?;
        let mut client = pool.get().await.map_err(|e| {
            let error = error_chain(&e);
            open_err(match pg_tls::hint(plan.mode, &error) {
                Some(hint) => format!("cannot connect: {error}; {hint}"),
                None => format!("cannot connect: {error}"),
            })
        })?;
        tracing::info!(sslmode = plan.mode.as_str(), "connected to PostgreSQL");
        migrate(&mut client)
            .await
            .map_err(|e| open_err(e.to_string()))?;
        let released = client
            .execute(
                "UPDATE deliveries SET next_attempt_at = $1, claimed_by = NULL, lease_until = NULL
                 WHERE claimed_by = $2 AND status = 'pending'",
                &[&now_ms, &options.node_id],
            )
            .await
            .map_err(|e| open_err(e.to_string()))?;
        if released > 0 {
            tracing::info!(released, node = %options.node_id,
                "made deliveries this node held when it last stopped due again");
        }
        drop(client);
        let changes = Arc::new(Notify::new());
        let listener = tokio::spawn(listen(config, tls, Arc::clone(&changes)));
        Ok(Self {
            pool,
            node_id: options.node_id,
            heartbeat_ms: options.heartbeat.as_millis().max(1) as i64,
            lease_ms: options.lease.as_millis().max(1) as i64,
            changes,
            _listener: Arc::new(ListenerGuard(listener)),
        })
    }

    /// The connection pool, for the store migration.
    pub(super) fn pool(&self) -> &Pool {
        &self.pool
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        Ok(self.pool.get().await?)
    }

    /// Bumps the subscriptions version and notifies every node, inside `tx`.
    async fn announce(tx: &deadpool_postgres::Transaction<'_>) -> Result<(), StoreError> {
        tx.batch_execute(&format!(
            "SELECT nextval('subscriptions_version'); NOTIFY {CHANNEL}"
        ))
        .await?;
        Ok(())
    }
}

/// The URL without its password, for error messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

async fn migrate(client: &mut deadpool_postgres::Object) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .await?;
    let applied: HashSet<i32> = tx
        .query("SELECT version FROM schema_migrations", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for (version, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        tracing::info!(version, "applying PostgreSQL schema migration");
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
            &[version, &crate::clock::now_ms()],
        )
        .await?;
    }
    tx.commit().await
}

/// Listens for subscription changes on a connection of its own, reconnecting after errors,
/// and signals `changes` for each notification (and after each reconnect, in case one was
/// missed meanwhile).
async fn listen(config: tokio_postgres::Config, tls: MakeRustlsConnect, changes: Arc<Notify>) {
    use futures_util::StreamExt as _;
    loop {
        match config.connect(tls.clone()).await {
            Ok((client, mut connection)) => {
                let mut messages =
                    futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                let statement = format!("LISTEN {CHANNEL}");
                let listening = {
                    // The connection must be driven for the LISTEN to complete.
                    let subscribe = client.batch_execute(&statement);
                    let mut subscribe = std::pin::pin!(subscribe);
                    loop {
                        tokio::select! {
                            done = &mut subscribe => break done.is_ok(),
                            message = messages.next() => if message.is_none() { break false },
                        }
                    }
                };
                if listening {
                    changes.notify_waiters();
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(tokio_postgres::AsyncMessage::Notification(_)) => {
                                changes.notify_waiters();
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "lost the PostgreSQL LISTEN connection; reconnecting");
                                break;
                            }
                        }
                    }
                }
                drop(client);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot open the PostgreSQL LISTEN connection; retrying");
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

const SUMMARY_SELECT: &str =
    "SELECT id, event_id, event_type, subscription_id, status, attempts, next_attempt_at,
    last_error, last_status, created_at, updated_at FROM deliveries";

fn summary_row(r: &tokio_postgres::Row) -> DeliverySummary {
    let status: String = r.get(4);
    let status = DeliveryStatus::parse(&status).unwrap_or(DeliveryStatus::Pending);
    let attempts: i32 = r.get(5);
    let last_status: Option<i32> = r.get(8);
    DeliverySummary {
        id: r.get(0),
        event_id: r.get(1),
        event_type: r.get(2),
        subscription_id: r.get(3),
        status,
        attempts: attempts as u32,
        next_attempt_at: (status == DeliveryStatus::Pending)
            .then(|| rfc3339_millis(r.get::<_, i64>(6))),
        last_error: r.get(7),
        last_status: last_status.map(|s| s as u16),
        created_at: rfc3339(r.get(9)),
        updated_at: rfc3339(r.get(10)),
    }
}

fn subscription_row(r: &tokio_postgres::Row) -> StoredSubscription {
    StoredSubscription {
        id: r.get(0),
        source: SubscriptionSource::parse(r.get(1)),
        spec: r.get(2),
        enabled: r.get(3),
        disabled_reason: r.get(4),
        created_at_ms: r.get(5),
        updated_at_ms: r.get(6),
    }
}

async fn upsert_subscription(
    tx: &deadpool_postgres::Transaction<'_>,
    sub: &StoredSubscription,
    keep_state: bool,
) -> Result<(), StoreError> {
    let sql = if keep_state {
        "INSERT INTO subscriptions (id, source, spec, enabled, disabled_reason, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (id) DO UPDATE SET source = excluded.source, spec = excluded.spec, updated_at = excluded.updated_at"
    } else {
        "INSERT INTO subscriptions (id, source, spec, enabled, disabled_reason, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (id) DO UPDATE SET source = excluded.source, spec = excluded.spec, enabled = excluded.enabled,
             disabled_reason = excluded.disabled_reason, updated_at = excluded.updated_at"
    };
    tx.execute(
        sql,
        &[
            &sub.id,
            &sub.source.as_str(),
            &sub.spec,
            &sub.enabled,
            &sub.disabled_reason,
            &sub.created_at_ms,
            &sub.updated_at_ms,
        ],
    )
    .await?;
    Ok(())
}

/// Applies a batch's health deltas (see `health::fold`) in the record's transaction.
async fn record_health(
    tx: &deadpool_postgres::Transaction<'_>,
    records: &[AttemptRecord],
) -> Result<(), StoreError> {
    let deltas = fold(records);
    if deltas.is_empty() {
        return Ok(());
    }
    let health = tx
        .prepare_cached(
            "INSERT INTO subscription_health (subscription_id, last_attempt_at, last_success, last_status,
                 last_error, last_success_at, consecutive_failures, failing_since)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (subscription_id) DO UPDATE SET
                 last_attempt_at = excluded.last_attempt_at, last_success = excluded.last_success,
                 last_status = COALESCE(excluded.last_status, subscription_health.last_status),
                 last_error = excluded.last_error,
                 last_success_at = COALESCE(excluded.last_success_at, subscription_health.last_success_at),
                 consecutive_failures = CASE WHEN excluded.last_success_at IS NULL
                     THEN subscription_health.consecutive_failures + excluded.consecutive_failures
                     ELSE excluded.consecutive_failures END,
                 failing_since = CASE WHEN excluded.last_success_at IS NULL
                     THEN COALESCE(subscription_health.failing_since, excluded.failing_since)
                     ELSE excluded.failing_since END",
        )
        .await?;
    let stats = tx
        .prepare_cached(
            "INSERT INTO subscription_stats (subscription_id, hour, succeeded, failed) VALUES ($1, $2, $3, $4)
             ON CONFLICT (subscription_id, hour) DO UPDATE SET
                 succeeded = subscription_stats.succeeded + excluded.succeeded,
                 failed = subscription_stats.failed + excluded.failed",
        )
        .await?;
    for d in deltas {
        let status = d.last_status.map(i32::from);
        let failures = d.trailing_failures as i32;
        tx.execute(
            &health,
            &[
                &d.subscription_id,
                &d.last_attempt_at,
                &d.last_success,
                &status,
                &d.last_error,
                &d.last_success_at,
                &failures,
                &d.first_trailing_failure_at,
            ],
        )
        .await?;
        for (hour, ok, failed) in &d.buckets {
            let (ok, failed) = (*ok as i32, *failed as i32);
            tx.execute(&stats, &[&d.subscription_id, hour, &ok, &failed])
                .await?;
        }
    }
    Ok(())
}

#[async_trait]
impl Store for PostgresStore {
    async fn ingest(&self, batch: Vec<NewEvent>) -> Result<Vec<IngestResult>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let (mut ids, mut kinds, mut times, mut data, mut counts) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut traces: Vec<Option<&str>> = Vec::new();
        for new in &batch {
            ids.push(new.event.id.as_str());
            kinds.push(new.event.kind.as_str());
            times.push(new.event.created_at_ms);
            data.push(new.event.data.as_str());
            counts.push(new.deliveries.len() as i32);
            traces.push(new.event.traceparent.as_deref());
        }
        let inserted: HashSet<String> = tx
            .query(
                "INSERT INTO events (id, type, created_at, data, delivery_count, traceparent)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::int[], $6::text[])
                 ON CONFLICT (id) DO NOTHING RETURNING id",
                &[&ids, &kinds, &times, &data, &counts, &traces],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut fresh_in_batch: HashMap<&str, u32> = HashMap::new();
        let mut results = Vec::with_capacity(batch.len());
        let (mut d_ids, mut d_events, mut d_types, mut d_subs, mut d_times) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut existing = Vec::new();
        for (i, new) in batch.iter().enumerate() {
            let e = &new.event;
            let first_here =
                inserted.contains(&e.id) && !fresh_in_batch.contains_key(e.id.as_str());
            if first_here {
                fresh_in_batch.insert(&e.id, new.deliveries.len() as u32);
                for d in &new.deliveries {
                    d_ids.push(d.id.as_str());
                    d_events.push(e.id.as_str());
                    d_types.push(e.kind.as_str());
                    d_subs.push(d.subscription_id.as_str());
                    d_times.push(e.created_at_ms);
                }
                results.push(IngestResult {
                    id: e.id.clone(),
                    deliveries: new.deliveries.len() as u32,
                    duplicate: false,
                });
            } else {
                existing.push(i);
                results.push(IngestResult {
                    id: e.id.clone(),
                    deliveries: fresh_in_batch.get(e.id.as_str()).copied().unwrap_or(0),
                    duplicate: true,
                });
            }
        }
        if !d_ids.is_empty() {
            tx.execute(
                "INSERT INTO deliveries (id, event_id, event_type, subscription_id, status, next_attempt_at, created_at, updated_at)
                 SELECT id, event_id, event_type, subscription_id, 'pending', at, at, at
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[])
                     AS d(id, event_id, event_type, subscription_id, at)",
                &[&d_ids, &d_events, &d_types, &d_subs, &d_times],
            )
            .await?;
        }
        // Duplicates of events stored before this batch answer their first delivery count.
        let earlier: Vec<&str> = existing
            .iter()
            .map(|&i| batch[i].event.id.as_str())
            .filter(|id| !fresh_in_batch.contains_key(id))
            .collect();
        if !earlier.is_empty() {
            let counts: HashMap<String, i32> = tx
                .query(
                    "SELECT id, delivery_count FROM events WHERE id = ANY($1)",
                    &[&earlier],
                )
                .await?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            for &i in &existing {
                if let Some(&n) = counts.get(&batch[i].event.id) {
                    results[i].deliveries = n as u32;
                }
            }
        }
        tx.commit().await?;
        Ok(results)
    }

    async fn claim_due(
        &self,
        now_ms: i64,
        limit: usize,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        let client = self.client().await?;
        let until = now_ms + lease.as_millis() as i64;
        let rows = client
            .query(
                "WITH due AS (
                     SELECT id, next_attempt_at AS due_at FROM deliveries
                     WHERE status = 'pending' AND next_attempt_at <= $1
                     ORDER BY next_attempt_at LIMIT $2
                     FOR UPDATE SKIP LOCKED)
                 UPDATE deliveries d SET next_attempt_at = $3, lease_until = $3, claimed_by = $4
                 FROM due WHERE d.id = due.id
                 RETURNING d.id, d.subscription_id, d.attempts, d.run_start, d.event_id, due.due_at",
                &[&now_ms, &(limit as i64), &until, &self.node_id],
            )
            .await?;
        let mut claimed: Vec<(i64, String, String, u32, u32, String)> = rows
            .iter()
            .map(|r| {
                let attempts: i32 = r.get(2);
                let run_start: i32 = r.get(3);
                (
                    r.get::<_, i64>(5),
                    r.get(0),
                    r.get(1),
                    attempts as u32,
                    run_start as u32,
                    r.get(4),
                )
            })
            .collect();
        claimed.sort_by_key(|c| c.0);
        let event_ids: Vec<&str> = claimed.iter().map(|c| c.5.as_str()).collect();
        let events: HashMap<String, Event> = if event_ids.is_empty() {
            HashMap::new()
        } else {
            client
                .query(
                    "SELECT id, type, created_at, data, traceparent FROM events WHERE id = ANY($1)",
                    &[&event_ids],
                )
                .await?
                .iter()
                .map(|r| {
                    let event = Event {
                        id: r.get(0),
                        kind: r.get(1),
                        created_at_ms: r.get(2),
                        data: r.get(3),
                        traceparent: r.get(4),
                    };
                    (event.id.clone(), event)
                })
                .collect()
        };
        let deliveries = claimed
            .into_iter()
            .filter_map(|(_, id, subscription_id, attempts, run_start, event_id)| {
                let event = events.get(&event_id)?.clone();
                Some(ClaimedDelivery {
                    id,
                    subscription_id,
                    attempts,
                    attempts_this_run: attempts.saturating_sub(run_start),
                    event,
                })
            })
            .collect::<Vec<_>>();
        let next_due_ms = if deliveries.len() < limit {
            client
                .query_one(
                    "SELECT MIN(next_attempt_at) FROM deliveries WHERE status = 'pending'",
                    &[],
                )
                .await?
                .get::<_, Option<i64>>(0)
                .map(|due| due.max(now_ms))
        } else {
            Some(now_ms)
        };
        Ok(Claim {
            deliveries,
            next_due_ms,
        })
    }

    async fn record(&self, records: Vec<AttemptRecord>) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut ids = Vec::with_capacity(records.len());
        let mut attempt = Vec::with_capacity(records.len());
        let mut started = Vec::with_capacity(records.len());
        let mut latency = Vec::with_capacity(records.len());
        let mut code: Vec<Option<i32>> = Vec::with_capacity(records.len());
        let mut error: Vec<Option<&str>> = Vec::with_capacity(records.len());
        let mut body: Vec<Option<&str>> = Vec::with_capacity(records.len());
        let mut plugin: Vec<Option<&str>> = Vec::with_capacity(records.len());
        let mut status = Vec::with_capacity(records.len());
        let mut next_at = Vec::with_capacity(records.len());
        let mut now = Vec::with_capacity(records.len());
        let mut waits = Vec::with_capacity(records.len());
        let mut parked: Vec<Option<&str>> = Vec::with_capacity(records.len());
        for r in &records {
            let done_at = r.started_at_ms + (r.latency_us / 1000) as i64;
            let (s, at) = match r.next {
                NextState::WaitUntil(at) => (DeliveryStatus::Pending, at),
                NextState::Cancelled => (DeliveryStatus::Cancelled, done_at),
                NextState::Delivered => (DeliveryStatus::Delivered, done_at),
                NextState::Skipped => (DeliveryStatus::Skipped, done_at),
                NextState::DeadLetter => (DeliveryStatus::DeadLetter, done_at),
                NextState::RetryAt(at) => (DeliveryStatus::Pending, at),
            };
            ids.push(r.delivery_id.as_str());
            attempt.push(r.attempt as i32);
            started.push(r.started_at_ms);
            latency.push(r.latency_us as i64);
            code.push(r.status_code.map(i32::from));
            error.push(r.error.as_deref());
            body.push(r.response_body.as_deref());
            plugin.push(r.plugin_version.as_deref());
            status.push(s.as_str());
            next_at.push(at);
            now.push(done_at);
            // A wait or a cancellation spends no attempt.
            waits.push(matches!(
                r.next,
                NextState::WaitUntil(_) | NextState::Cancelled
            ));
            parked.push(r.parked_on.as_deref());
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let params: [&(dyn ToSql + Sync); 14] = [
            &ids,
            &attempt,
            &started,
            &latency,
            &code,
            &error,
            &body,
            &plugin,
            &status,
            &next_at,
            &now,
            &waits,
            &parked,
            &self.node_id,
        ];
        // One statement: the attempts (not for waits, which spend none) and the deliveries'
        // next state, for pending deliveries this node still holds or nobody does (one
        // cancelled while its attempt ran stays cancelled, but the attempt counts, so that a
        // retry by hand never numbers an attempt again).
        tx.execute(
                "WITH r AS (
                     SELECT * FROM UNNEST($1::text[], $2::int[], $3::bigint[], $4::bigint[], $5::int[],
                         $6::text[], $7::text[], $8::text[], $9::text[], $10::bigint[], $11::bigint[],
                         $12::bool[], $13::text[])
                     AS r(delivery_id, attempt, started_at, latency_us, status_code, error,
                          response_body, plugin_version, status, next_at, now, wait, parked_on)),
                 ins AS (
                     INSERT INTO attempts (delivery_id, attempt, started_at, latency_us, status_code, error, response_body, plugin_version)
                     SELECT delivery_id, attempt, started_at, latency_us, status_code, error, response_body, plugin_version
                     FROM r WHERE NOT wait
                     ON CONFLICT (delivery_id, attempt) DO NOTHING),
                 counted AS (
                     UPDATE deliveries d SET attempts = GREATEST(d.attempts, r.attempt)
                     FROM r WHERE d.id = r.delivery_id AND d.status <> 'pending' AND NOT r.wait)
                 UPDATE deliveries d SET
                     status = CASE WHEN r.wait AND r.status <> 'cancelled' THEN d.status ELSE r.status END,
                     attempts = CASE WHEN r.wait THEN d.attempts ELSE r.attempt END,
                     next_attempt_at = r.next_at,
                     last_error = r.error,
                     last_status = CASE WHEN r.wait THEN d.last_status ELSE COALESCE(r.status_code, d.last_status) END,
                     updated_at = r.now,
                     parked_on = CASE WHEN r.wait THEN r.parked_on ELSE NULL END,
                     claimed_by = NULL,
                     lease_until = NULL
                 FROM r
                 WHERE d.id = r.delivery_id AND d.status = 'pending'
                   AND (d.claimed_by = $14 OR d.claimed_by IS NULL)",
            &params,
        )
        .await?;
        record_health(&tx, &records).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delivery(&self, id: &str) -> Result<Option<DeliveryDetail>, StoreError> {
        let client = self.client().await?;
        let Some(row) = client
            .query_opt(&format!("{SUMMARY_SELECT} WHERE id = $1"), &[&id])
            .await?
        else {
            return Ok(None);
        };
        let attempts_log = client
            .query(
                "SELECT attempt, started_at, latency_us, status_code, error, response_body, plugin_version
                 FROM attempts WHERE delivery_id = $1 ORDER BY attempt",
                &[&id],
            )
            .await?
            .iter()
            .map(|r| {
                let attempt: i32 = r.get(0);
                let status: Option<i32> = r.get(3);
                AttemptInfo {
                    attempt: attempt as u32,
                    started_at: rfc3339_millis(r.get(1)),
                    latency_us: r.get::<_, i64>(2) as u64,
                    status_code: status.map(|s| s as u16),
                    error: r.get(4),
                    response_body: r.get(5),
                    plugin_version: r.get(6),
                }
            })
            .collect();
        Ok(Some(DeliveryDetail {
            delivery: summary_row(&row),
            attempts_log,
        }))
    }

    async fn list_deliveries(
        &self,
        filter: DeliveryFilter,
    ) -> Result<Vec<DeliverySummary>, StoreError> {
        let mut sql = format!("{SUMMARY_SELECT} WHERE TRUE");
        let mut args: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        let mut push = |clause: &str, value: Box<dyn ToSql + Sync + Send>| {
            args.push(value);
            sql.push_str(&format!(" AND {clause} ${}", args.len()));
        };
        if let Some(v) = filter.subscription_id {
            push("subscription_id =", Box::new(v));
        }
        if let Some(v) = filter.status {
            push("status =", Box::new(v.as_str().to_owned()));
        }
        if let Some(v) = filter.event_type {
            push("event_type =", Box::new(v));
        }
        if let Some(v) = filter.event_id {
            push("event_id =", Box::new(v));
        }
        if let Some(v) = filter.since_ms {
            push("created_at >=", Box::new(v));
        }
        if let Some(v) = filter.until_ms {
            push("created_at <", Box::new(v));
        }
        if let Some(v) = filter.before {
            push("id <", Box::new(v));
        }
        sql.push_str(&format!(
            " ORDER BY id DESC LIMIT {}",
            filter.limit.clamp(1, 1000)
        ));
        let refs: Vec<&(dyn ToSql + Sync)> = args
            .iter()
            .map(|a| a.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let client = self.client().await?;
        Ok(client
            .query(&sql, &refs)
            .await?
            .iter()
            .map(summary_row)
            .collect())
    }

    async fn retry_delivery(&self, id: &str, now_ms: i64) -> Result<RetryOutcome, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let Some(row) = tx
            .query_opt(
                "SELECT status, claimed_by IS NOT NULL AND lease_until > $2 FROM deliveries WHERE id = $1 FOR UPDATE",
                &[&id, &now_ms],
            )
            .await?
        else {
            return Ok(RetryOutcome::NotFound);
        };
        let status: String = row.get(0);
        let leased: bool = row.get(1);
        if status == "pending" && leased {
            return Ok(RetryOutcome::InFlight);
        }
        tx.execute(
            "UPDATE deliveries SET status = 'pending', next_attempt_at = $2, run_start = attempts,
                 claimed_by = NULL, lease_until = NULL, updated_at = $2 WHERE id = $1",
            &[&id, &now_ms],
        )
        .await?;
        let row = tx
            .query_one(&format!("{SUMMARY_SELECT} WHERE id = $1"), &[&id])
            .await?;
        tx.commit().await?;
        Ok(RetryOutcome::Scheduled(Box::new(summary_row(&row))))
    }

    async fn replay_dead_letters(
        &self,
        filter: ReplayFilter,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let client = self.client().await?;
        Ok(client
            .execute(
                "UPDATE deliveries SET status = 'pending', next_attempt_at = $1, run_start = attempts,
                     claimed_by = NULL, lease_until = NULL, updated_at = $1
                 WHERE status = 'dead_letter'
                   AND ($2::text IS NULL OR subscription_id = $2)
                   AND ($3::bigint IS NULL OR created_at >= $3)
                   AND ($4::bigint IS NULL OR created_at < $4)",
                &[
                    &now_ms,
                    &filter.subscription_id,
                    &filter.since_ms,
                    &filter.until_ms,
                ],
            )
            .await?)
    }

    async fn unpark(&self, key: &str, now_ms: i64) -> Result<u64, StoreError> {
        let client = self.client().await?;
        Ok(client
            .execute(
                "UPDATE deliveries SET next_attempt_at = $2, parked_on = NULL
                 WHERE parked_on = $1 AND status = 'pending' AND claimed_by IS NULL",
                &[&key, &now_ms],
            )
            .await?)
    }

    async fn queue_depth(&self, now_ms: i64) -> Result<QueueDepth, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT COUNT(*) FILTER (WHERE next_attempt_at <= $1 OR claimed_by IS NOT NULL),
                        COUNT(*) FILTER (WHERE next_attempt_at > $1 AND claimed_by IS NULL)
                 FROM deliveries WHERE status = 'pending'",
                &[&now_ms],
            )
            .await?;
        Ok(QueueDepth {
            due: row.get::<_, i64>(0) as u64,
            scheduled: row.get::<_, i64>(1) as u64,
        })
    }

    async fn subscriptions(&self) -> Result<Vec<StoredSubscription>, StoreError> {
        let client = self.client().await?;
        Ok(client
            .query(
                "SELECT id, source, spec, enabled, disabled_reason, created_at, updated_at FROM subscriptions ORDER BY id",
                &[],
            )
            .await?
            .iter()
            .map(subscription_row)
            .collect())
    }

    async fn put_subscription(&self, sub: StoredSubscription) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        upsert_subscription(&tx, &sub, false).await?;
        Self::announce(&tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn rewrite_specs(&self, rewrites: Vec<SpecRewrite>) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let mut changed = 0;
        for r in &rewrites {
            changed += tx
                .execute(
                    "UPDATE subscriptions SET spec = $3 WHERE id = $1 AND spec = $2",
                    &[&r.id, &r.old, &r.new],
                )
                .await?;
        }
        tx.commit().await?;
        if changed > 0 {
            // An UPDATE leaves the old row version in the table file until it is reused;
            // the table is small, so write it anew without them.
            client.batch_execute("VACUUM FULL subscriptions").await?;
        }
        Ok(changed)
    }

    async fn create_subscription(&self, sub: StoredSubscription) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let inserted = tx
            .execute(
                "INSERT INTO subscriptions (id, source, spec, enabled, disabled_reason, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
                &[
                    &sub.id,
                    &sub.source.as_str(),
                    &sub.spec,
                    &sub.enabled,
                    &sub.disabled_reason,
                    &sub.created_at_ms,
                    &sub.updated_at_ms,
                ],
            )
            .await?
            > 0;
        if inserted {
            Self::announce(&tx).await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }

    async fn delete_subscription(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let deleted = tx
            .execute("DELETE FROM subscriptions WHERE id = $1", &[&id])
            .await?
            > 0;
        if deleted {
            tx.execute(
                "UPDATE deliveries SET status = 'cancelled', updated_at = $2, parked_on = NULL,
                     last_error = 'cancelled: the subscription was deleted'
                 WHERE subscription_id = $1 AND status = 'pending'",
                &[&id, &now_ms],
            )
            .await?;
            tx.execute(
                "DELETE FROM subscription_health WHERE subscription_id = $1",
                &[&id],
            )
            .await?;
            tx.execute(
                "DELETE FROM subscription_stats WHERE subscription_id = $1",
                &[&id],
            )
            .await?;
        }
        Self::announce(&tx).await?;
        tx.commit().await?;
        Ok(deleted)
    }

    async fn purge_deliveries(
        &self,
        cutoffs: PurgeCutoffs,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<Purged, StoreError> {
        let Some(latest) = cutoffs.latest() else {
            return Ok(Purged::default());
        };
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Delivery ids are time-ordered (`msg_` and a UUIDv7), so id order is creation order.
        let rows = tx
            .query(
                "SELECT id, status, created_at FROM deliveries WHERE id > $1 ORDER BY id LIMIT $2",
                &[&cursor.unwrap_or_default(), &(limit as i64)],
            )
            .await?;
        let mut last = None;
        let mut doomed: Vec<String> = Vec::new();
        for row in &rows {
            let (id, status, created): (String, String, i64) = (row.get(0), row.get(1), row.get(2));
            if created >= latest {
                last = None;
                break;
            }
            if super::embedded::purgeable(&status, created, &cutoffs) {
                doomed.push(id.clone());
            }
            last = Some(id);
        }
        // A delivery replayed since the scan is pending again and stays, with its attempts.
        let deleted: i64 = tx
            .query_one(
                "WITH gone AS (DELETE FROM deliveries WHERE id = ANY($1) AND status <> 'pending' RETURNING id),
                      attempts_gone AS (DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM gone))
                 SELECT count(*) FROM gone",
                &[&doomed],
            )
            .await?
            .get(0);
        tx.commit().await?;
        Ok(Purged {
            deleted: u64::try_from(deleted).unwrap_or(0),
            cursor: last.filter(|_| rows.len() == limit),
        })
    }

    async fn purge_events(
        &self,
        cutoffs: PurgeCutoffs,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<Purged, StoreError> {
        let Some(before) = cutoffs.events_before else {
            return Ok(Purged::default());
        };
        let client = self.client().await?;
        if let (None, Some(counts)) = (&cursor, cutoffs.counts_before) {
            client
                .execute(
                    "DELETE FROM subscription_stats WHERE hour < $1",
                    &[&counts.div_euclid(HOUR_MS)],
                )
                .await?;
        }
        let (after_at, after_id) = cursor
            .as_deref()
            .and_then(|c| c.split_once(':'))
            .and_then(|(at, id)| Some((at.parse::<i64>().ok()?, id.to_owned())))
            .unwrap_or((i64::MIN, String::new()));
        let rows = client
            .query(
                "SELECT e.id, e.created_at, EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id)
                 FROM events e WHERE (e.created_at, e.id) > ($1, $2) AND e.created_at < $3
                 ORDER BY e.created_at, e.id LIMIT $4",
                &[&after_at, &after_id, &before, &(limit as i64)],
            )
            .await?;
        let doomed: Vec<String> = rows
            .iter()
            .filter(|r| !r.get::<_, bool>(2))
            .map(|r| r.get(0))
            .collect();
        let deleted = client
            .execute(
                "DELETE FROM events e WHERE e.id = ANY($1)
                 AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id)",
                &[&doomed],
            )
            .await?;
        let cursor = (rows.len() == limit)
            .then(|| rows.last())
            .flatten()
            .map(|r| format!("{}:{}", r.get::<_, i64>(1), r.get::<_, String>(0)));
        Ok(Purged { deleted, cursor })
    }

    async fn reclaim(&self) -> Result<bool, StoreError> {
        Ok(false)
    }

    async fn subscription_health(
        &self,
        id: Option<&str>,
        now_ms: i64,
    ) -> Result<HashMap<String, StoredHealth>, StoreError> {
        let client = self.client().await?;
        let mut out: HashMap<String, StoredHealth> = HashMap::new();
        for r in client
            .query(
                "SELECT subscription_id, last_attempt_at, last_success, last_status, last_error,
                        last_success_at, consecutive_failures, failing_since
                 FROM subscription_health WHERE $1::text IS NULL OR subscription_id = $1",
                &[&id],
            )
            .await?
        {
            let status: Option<i32> = r.get(3);
            let failures: i32 = r.get(6);
            out.insert(
                r.get(0),
                StoredHealth {
                    last_attempt_at: r.get(1),
                    last_success: r.get(2),
                    last_status: status.and_then(|s| u16::try_from(s).ok()),
                    last_error: r.get(4),
                    last_success_at: r.get(5),
                    consecutive_failures: u32::try_from(failures).unwrap_or(0),
                    failing_since: r.get(7),
                    buckets: Vec::new(),
                },
            );
        }
        let oldest = now_ms.div_euclid(HOUR_MS) - 24;
        for r in client
            .query(
                "SELECT subscription_id, hour, succeeded, failed FROM subscription_stats
                 WHERE hour >= $1 AND ($2::text IS NULL OR subscription_id = $2)",
                &[&oldest, &id],
            )
            .await?
        {
            let (ok, failed): (i32, i32) = (r.get(2), r.get(3));
            out.entry(r.get(0)).or_default().buckets.push((
                r.get(1),
                u32::try_from(ok).unwrap_or(0),
                u32::try_from(failed).unwrap_or(0),
            ));
        }
        Ok(out)
    }

    async fn sync_config_subscriptions(
        &self,
        subs: Vec<StoredSubscription>,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Nodes starting together sync the same file; take turns.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&(MIGRATION_LOCK + 1)])
            .await?;
        let ids: Vec<&str> = subs.iter().map(|s| s.id.as_str()).collect();
        tx.execute(
            "DELETE FROM subscriptions WHERE source = 'config' AND NOT (id = ANY($1))",
            &[&ids],
        )
        .await?;
        for sub in &subs {
            upsert_subscription(&tx, sub, true).await?;
        }
        Self::announce(&tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_subscription_enabled(
        &self,
        id: &str,
        enabled: bool,
        reason: Option<String>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let reason = if enabled { None } else { reason };
        let changed = tx
            .execute(
                "UPDATE subscriptions SET enabled = $2, disabled_reason = $3, updated_at = $4 WHERE id = $1",
                &[&id, &enabled, &reason, &now_ms],
            )
            .await?
            > 0;
        if changed && enabled {
            // Enabled again: a fresh start for the run of failures.
            tx.execute(
                "UPDATE subscription_health SET consecutive_failures = 0, failing_since = NULL
                 WHERE subscription_id = $1",
                &[&id],
            )
            .await?;
        }
        Self::announce(&tx).await?;
        tx.commit().await?;
        Ok(changed)
    }

    async fn heartbeat(
        &self,
        now_ms: i64,
        report: NodeReport,
    ) -> Result<Vec<NodeStatus>, StoreError> {
        let client = self.client().await?;
        let plugins = serde_json::to_string(&report.plugins).map_err(db_err)?;
        client
            .execute(
                "INSERT INTO nodes (id, started_at, heartbeat_at, plugins) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, plugins = excluded.plugins",
                &[&self.node_id, &report.started_at_ms, &now_ms, &plugins],
            )
            .await?;
        // Renew this node's leases, so a live node's attempts are never taken over; a dead
        // node stops renewing and its deliveries fall due when their leases end.
        client
            .execute(
                "UPDATE deliveries SET next_attempt_at = $2, lease_until = $2
                 WHERE claimed_by = $1 AND status = 'pending' AND lease_until IS NOT NULL",
                &[&self.node_id, &(now_ms + self.lease_ms)],
            )
            .await?;
        client
            .execute(
                "DELETE FROM nodes WHERE heartbeat_at < $1",
                &[&(now_ms - FORGET_NODES_MS)],
            )
            .await?;
        let live_after = now_ms - LIVE_INTERVALS * self.heartbeat_ms;
        Ok(client
            .query(
                "SELECT id, started_at, heartbeat_at, plugins FROM nodes ORDER BY id",
                &[],
            )
            .await?
            .iter()
            .map(|r| {
                let id: String = r.get(0);
                let heartbeat: i64 = r.get(2);
                let plugins: String = r.get(3);
                NodeStatus {
                    this_node: id == self.node_id,
                    node_id: id,
                    live: heartbeat >= live_after,
                    started_at: rfc3339(r.get(1)),
                    heartbeat_at: rfc3339(heartbeat),
                    plugins: serde_json::from_str(&plugins).unwrap_or_default(),
                }
            })
            .collect())
    }

    async fn subscriptions_version(&self) -> Result<i64, StoreError> {
        let client = self.client().await?;
        Ok(client
            .query_one("SELECT last_value + CASE WHEN is_called THEN 1 ELSE 0 END FROM subscriptions_version", &[])
            .await?
            .get(0))
    }

    fn subscription_changes(&self) -> Option<Arc<Notify>> {
        Some(Arc::clone(&self.changes))
    }

    fn ingest_commits(&self) -> Option<Arc<Notify>> {
        None
    }

    fn node_id(&self) -> &str {
        &self.node_id
    }

    async fn check_writable(&self, now_ms: i64) -> Result<(), StoreError> {
        // Writes this node's own row: a new row version even when nothing changes, which a
        // read-only or full database refuses. Its heartbeat time is left to the heartbeat
        // (a node not yet reported is added as the heartbeat would add it).
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO nodes (id, started_at, heartbeat_at, plugins) VALUES ($1, $2, $2, '{}')
                 ON CONFLICT (id) DO UPDATE SET heartbeat_at = nodes.heartbeat_at",
                &[&self.node_id, &now_ms],
            )
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password_in_messages() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/wasmhook"),
            "postgres://app:***@db:5432/wasmhook"
        );
        assert_eq!(
            redact_url("postgres://db/wasmhook"),
            "postgres://db/wasmhook"
        );
    }
}
