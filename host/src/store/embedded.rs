//! The embedded store: one SQLite file in WAL mode, no server.
//!
//! Writes go through one writer thread that does group commit: it takes every job waiting
//! in its queue, runs them in one transaction (each under its own savepoint, so one failure
//! does not sink the others), commits once with a full `fsync`, and only then answers each
//! caller. Under load that is one `fsync` per batch, not per event. Reads use their own
//! connection, which WAL lets run beside the writer.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use tokio::sync::oneshot;

use super::{
    AttemptInfo, AttemptRecord, Claim, ClaimedDelivery, DeliveryDetail, DeliveryFilter,
    DeliveryStatus, DeliverySummary, IngestResult, NewEvent, NextState, Store, StoreError,
};
use crate::event::{Event, rfc3339};

/// Jobs taken into one transaction at most; bounds commit latency under heavy load.
const MAX_BATCH: usize = 1024;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    id             TEXT PRIMARY KEY,
    type           TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    data           TEXT NOT NULL,
    delivery_count INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    id               TEXT PRIMARY KEY,
    event_id         TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    subscription_id  TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    run_start        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    leased           INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    last_status      INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_event ON deliveries (event_id);
CREATE TABLE IF NOT EXISTS attempts (
    delivery_id    TEXT NOT NULL,
    attempt        INTEGER NOT NULL,
    started_at     INTEGER NOT NULL,
    latency_us     INTEGER NOT NULL,
    status_code    INTEGER,
    error          TEXT,
    response_body  TEXT,
    plugin_version TEXT,
    PRIMARY KEY (delivery_id, attempt)
) WITHOUT ROWID;
";

/// The SQLite-backed store.
#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Queue of the writer thread. `Mutex` only because `mpsc::Sender` is not `Sync`.
    writer: Mutex<mpsc::Sender<Job>>,
    /// Connection for API reads, separate so reads never wait behind a commit.
    reader: Arc<Mutex<Connection>>,
    path: PathBuf,
}

enum Job {
    Ingest(
        Vec<NewEvent>,
        oneshot::Sender<Result<Vec<IngestResult>, StoreError>>,
    ),
    Claim {
        now_ms: i64,
        limit: usize,
        lease_ms: i64,
        reply: oneshot::Sender<Result<Claim, StoreError>>,
    },
    Record(Vec<AttemptRecord>, oneshot::Sender<Result<(), StoreError>>),
}

impl EmbeddedStore {
    /// Opens (or creates) the store in folder `dir`. Deliveries that were leased when the
    /// previous process stopped are made due at `now_ms`, so none is stranded.
    pub fn open(dir: &Path, now_ms: i64) -> Result<Self, StoreError> {
        let open_err = |reason: String| StoreError::Open {
            path: dir.display().to_string(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
        let path = dir.join("wasmhook.db");
        let writer = open_connection(&path).map_err(|e| open_err(e.to_string()))?;
        writer
            .execute_batch(SCHEMA)
            .map_err(|e| open_err(e.to_string()))?;
        let released = writer
            .execute(
                "UPDATE deliveries SET leased = 0, next_attempt_at = ?1 WHERE status = 'pending' AND leased = 1",
                [now_ms],
            )
            .map_err(|e| open_err(e.to_string()))?;
        if released > 0 {
            tracing::info!(
                released,
                "made deliveries that were in flight at the last stop due again"
            );
        }
        let reader = open_connection(&path).map_err(|e| open_err(e.to_string()))?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("wasmhook-store".into())
            .spawn(move || writer_loop(writer, rx))
            .map_err(|e| open_err(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                writer: Mutex::new(tx),
                reader: Arc::new(Mutex::new(reader)),
                path,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn send(&self, job: Job) -> Result<(), StoreError> {
        self.inner
            .writer
            .lock()
            .map_err(|_| StoreError::Closed)?
            .send(job)
            .map_err(|_| StoreError::Closed)
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let reader = Arc::clone(&self.inner.reader);
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().map_err(|_| StoreError::Closed)?;
            f(&conn).map_err(StoreError::from)
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }
}

fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    // WAL lets readers run beside the writer; FULL makes every commit survive power loss,
    // not just a killed process. Group commit keeps that affordable.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "busy_timeout", 5000)?;
    conn.pragma_update(None, "cache_size", -16_000)?; // 16 MiB
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(conn)
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn ingest(&self, batch: Vec<NewEvent>) -> Result<Vec<IngestResult>, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Ingest(batch, tx))?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn claim_due(
        &self,
        now_ms: i64,
        limit: usize,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(Job::Claim {
            now_ms,
            limit,
            lease_ms: lease.as_millis() as i64,
            reply,
        })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn record(&self, records: Vec<AttemptRecord>) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Record(records, tx))?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn delivery(&self, id: &str) -> Result<Option<DeliveryDetail>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| {
            let Some(delivery) = conn
                .query_row(&format!("{SUMMARY_SELECT} WHERE id = ?1"), [&id], summary_row)
                .optional()?
            else {
                return Ok(None);
            };
            let mut stmt = conn.prepare_cached(
                "SELECT attempt, started_at, latency_us, status_code, error, response_body, plugin_version
                 FROM attempts WHERE delivery_id = ?1 ORDER BY attempt",
            )?;
            let attempts_log = stmt
                .query_map([&id], |r| {
                    Ok(AttemptInfo {
                        attempt: r.get(0)?,
                        started_at: humantime::format_rfc3339_millis(
                            std::time::UNIX_EPOCH + Duration::from_millis(r.get::<_, i64>(1)?.max(0) as u64),
                        )
                        .to_string(),
                        latency_us: r.get::<_, i64>(2)? as u64,
                        status_code: r.get(3)?,
                        error: r.get(4)?,
                        response_body: r.get(5)?,
                        plugin_version: r.get(6)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            Ok(Some(DeliveryDetail { delivery, attempts_log }))
        })
        .await
    }

    async fn list_deliveries(
        &self,
        filter: DeliveryFilter,
    ) -> Result<Vec<DeliverySummary>, StoreError> {
        self.read(move |conn| {
            let mut sql = format!("{SUMMARY_SELECT} WHERE 1 = 1");
            let mut args: Vec<String> = Vec::new();
            let mut push = |clause: &str, value: String| {
                args.push(value);
                sql.push_str(&format!(" AND {clause} ?{}", args.len()));
            };
            if let Some(v) = filter.subscription_id {
                push("subscription_id =", v);
            }
            if let Some(v) = filter.status {
                push("status =", v.as_str().to_owned());
            }
            if let Some(v) = filter.event_type {
                push("event_type =", v);
            }
            if let Some(v) = filter.event_id {
                push("event_id =", v);
            }
            if let Some(v) = filter.before {
                push("id <", v);
            }
            sql.push_str(&format!(
                " ORDER BY id DESC LIMIT {}",
                filter.limit.clamp(1, 1000)
            ));
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), summary_row)?;
            rows.collect()
        })
        .await
    }
}

const SUMMARY_SELECT: &str =
    "SELECT id, event_id, event_type, subscription_id, status, attempts, next_attempt_at,
    last_error, last_status, created_at, updated_at FROM deliveries";

fn summary_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeliverySummary> {
    let status: String = r.get(4)?;
    let status = DeliveryStatus::parse(&status).unwrap_or(DeliveryStatus::Pending);
    Ok(DeliverySummary {
        id: r.get(0)?,
        event_id: r.get(1)?,
        event_type: r.get(2)?,
        subscription_id: r.get(3)?,
        status,
        attempts: r.get(5)?,
        next_attempt_at: (status == DeliveryStatus::Pending)
            .then(|| r.get::<_, i64>(6).map(rfc3339))
            .transpose()?,
        last_error: r.get(7)?,
        last_status: r.get(8)?,
        created_at: rfc3339(r.get(9)?),
        updated_at: rfc3339(r.get(10)?),
    })
}

/// The writer thread: group commit until every sender is gone.
fn writer_loop(mut conn: Connection, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        run_batch(&mut conn, jobs);
    }
}

/// A job's answer, held until the batch has committed.
enum Reply {
    Ingest(
        oneshot::Sender<Result<Vec<IngestResult>, StoreError>>,
        Result<Vec<IngestResult>, StoreError>,
    ),
    Claim(
        oneshot::Sender<Result<Claim, StoreError>>,
        Result<Claim, StoreError>,
    ),
    Record(
        oneshot::Sender<Result<(), StoreError>>,
        Result<(), StoreError>,
    ),
}

fn run_batch(conn: &mut Connection, jobs: Vec<Job>) {
    let mut replies = Vec::with_capacity(jobs.len());
    let committed = (|| -> Result<(), StoreError> {
        let mut tx = conn.transaction()?;
        for job in jobs {
            replies.push(match job {
                Job::Ingest(batch, reply) => {
                    Reply::Ingest(reply, in_savepoint(&mut tx, |tx| ingest(tx, &batch)))
                }
                Job::Claim {
                    now_ms,
                    limit,
                    lease_ms,
                    reply,
                } => Reply::Claim(
                    reply,
                    in_savepoint(&mut tx, |tx| claim(tx, now_ms, limit, lease_ms)),
                ),
                Job::Record(records, reply) => {
                    Reply::Record(reply, in_savepoint(&mut tx, |tx| record(tx, &records)))
                }
            });
        }
        tx.commit()?;
        Ok(())
    })();
    for reply in replies {
        // A caller that stopped waiting is fine to ignore.
        match (reply, &committed) {
            (Reply::Ingest(tx, r), Ok(())) => drop(tx.send(r)),
            (Reply::Claim(tx, r), Ok(())) => drop(tx.send(r)),
            (Reply::Record(tx, r), Ok(())) => drop(tx.send(r)),
            (Reply::Ingest(tx, _), Err(e)) => {
                drop(tx.send(Err(StoreError::Database(e.to_string()))))
            }
            (Reply::Claim(tx, _), Err(e)) => {
                drop(tx.send(Err(StoreError::Database(e.to_string()))))
            }
            (Reply::Record(tx, _), Err(e)) => {
                drop(tx.send(Err(StoreError::Database(e.to_string()))))
            }
        }
    }
    if let Err(e) = committed {
        tracing::error!(error = %e, "store commit failed; the batch was rolled back and its callers told");
    }
}

fn in_savepoint<T>(
    tx: &mut Transaction<'_>,
    f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> Result<T, StoreError> {
    let sp = tx.savepoint()?;
    match f(&sp) {
        Ok(v) => {
            sp.commit()?;
            Ok(v)
        }
        Err(e) => Err(e.into()), // dropping `sp` rolls it back
    }
}

fn ingest(tx: &Connection, batch: &[NewEvent]) -> rusqlite::Result<Vec<IngestResult>> {
    let mut insert_event = tx.prepare_cached(
        "INSERT INTO events (id, type, created_at, data, delivery_count) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (id) DO NOTHING",
    )?;
    let mut existing = tx.prepare_cached("SELECT delivery_count FROM events WHERE id = ?1")?;
    let mut insert_delivery = tx.prepare_cached(
        "INSERT INTO deliveries (id, event_id, event_type, subscription_id, status, next_attempt_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5, ?5)",
    )?;
    let mut results = Vec::with_capacity(batch.len());
    for new in batch {
        let e = &new.event;
        let inserted = insert_event.execute(params![
            e.id,
            e.kind,
            e.created_at_ms,
            e.data,
            new.deliveries.len() as i64
        ])?;
        if inserted == 0 {
            let deliveries: u32 = existing.query_row([&e.id], |r| r.get(0))?;
            results.push(IngestResult {
                id: e.id.clone(),
                deliveries,
                duplicate: true,
            });
            continue;
        }
        for d in &new.deliveries {
            insert_delivery.execute(params![
                d.id,
                e.id,
                e.kind,
                d.subscription_id,
                e.created_at_ms
            ])?;
        }
        results.push(IngestResult {
            id: e.id.clone(),
            deliveries: new.deliveries.len() as u32,
            duplicate: false,
        });
    }
    Ok(results)
}

fn claim(tx: &Connection, now_ms: i64, limit: usize, lease_ms: i64) -> rusqlite::Result<Claim> {
    let mut select = tx.prepare_cached(
        "SELECT d.id, d.subscription_id, d.attempts, d.run_start, e.id, e.type, e.created_at, e.data
         FROM deliveries d JOIN events e ON e.id = d.event_id
         WHERE d.status = 'pending' AND d.next_attempt_at <= ?1
         ORDER BY d.next_attempt_at LIMIT ?2",
    )?;
    let deliveries: Vec<ClaimedDelivery> = select
        .query_map(params![now_ms, limit as i64], |r| {
            let attempts: u32 = r.get(2)?;
            let run_start: u32 = r.get(3)?;
            Ok(ClaimedDelivery {
                id: r.get(0)?,
                subscription_id: r.get(1)?,
                attempts,
                attempts_this_run: attempts.saturating_sub(run_start),
                event: Event {
                    id: r.get(4)?,
                    kind: r.get(5)?,
                    created_at_ms: r.get(6)?,
                    data: r.get(7)?,
                },
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut lease =
        tx.prepare_cached("UPDATE deliveries SET leased = 1, next_attempt_at = ?2 WHERE id = ?1")?;
    for d in &deliveries {
        lease.execute(params![d.id, now_ms + lease_ms])?;
    }
    let next_due_ms = if deliveries.len() < limit {
        tx.prepare_cached(
            "SELECT MIN(next_attempt_at) FROM deliveries WHERE status = 'pending' AND leased = 0",
        )?
        .query_row([], |r| r.get(0))?
    } else {
        Some(now_ms)
    };
    Ok(Claim {
        deliveries,
        next_due_ms,
    })
}

fn record(tx: &Connection, records: &[AttemptRecord]) -> rusqlite::Result<()> {
    let mut insert = tx.prepare_cached(
        "INSERT OR REPLACE INTO attempts (delivery_id, attempt, started_at, latency_us, status_code, error, response_body, plugin_version)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    let mut update = tx.prepare_cached(
        "UPDATE deliveries SET status = ?2, attempts = ?3, next_attempt_at = ?4, leased = 0,
             last_error = ?5, last_status = COALESCE(?6, last_status), updated_at = ?7
         WHERE id = ?1",
    )?;
    let mut wait = tx.prepare_cached(
        "UPDATE deliveries SET leased = 0, next_attempt_at = ?2, last_error = ?3, updated_at = ?4 WHERE id = ?1",
    )?;
    for r in records {
        let now = r.started_at_ms + (r.latency_us / 1000) as i64;
        let (status, next_at) = match r.next {
            NextState::WaitUntil(at) => {
                wait.execute(params![r.delivery_id, at, r.error, now])?;
                continue;
            }
            NextState::Delivered => (DeliveryStatus::Delivered, now),
            NextState::Skipped => (DeliveryStatus::Skipped, now),
            NextState::DeadLetter => (DeliveryStatus::DeadLetter, now),
            NextState::RetryAt(at) => (DeliveryStatus::Pending, at),
        };
        insert.execute(params![
            r.delivery_id,
            r.attempt,
            r.started_at_ms,
            r.latency_us as i64,
            r.status_code,
            r.error,
            r.response_body,
            r.plugin_version
        ])?;
        update.execute(params![
            r.delivery_id,
            status.as_str(),
            r.attempt,
            next_at,
            r.error,
            r.status_code,
            now
        ])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewDelivery;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("wasmhook-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn new_event(id: &str, subs: &[&str]) -> NewEvent {
        NewEvent {
            event: Event {
                id: id.into(),
                kind: "host.up".into(),
                created_at_ms: 1_000,
                data: "{\"n\":1}".into(),
            },
            deliveries: subs
                .iter()
                .map(|s| NewDelivery {
                    id: format!("msg_{id}_{s}"),
                    subscription_id: (*s).into(),
                })
                .collect(),
        }
    }

    fn record(id: &str, attempt: u32, next: NextState) -> AttemptRecord {
        AttemptRecord {
            delivery_id: id.into(),
            attempt,
            started_at_ms: 2_000,
            latency_us: 1_500,
            status_code: Some(500),
            error: Some("boom".into()),
            response_body: None,
            plugin_version: None,
            next,
        }
    }

    #[tokio::test]
    async fn ingest_is_idempotent_on_the_event_id() {
        let dir = temp_dir("idem");
        let store = EmbeddedStore::open(&dir, 0).unwrap();
        let first = store
            .ingest(vec![new_event("e1", &["a", "b"])])
            .await
            .unwrap();
        assert_eq!(first[0].deliveries, 2);
        assert!(!first[0].duplicate);
        let again = store
            .ingest(vec![new_event("e1", &["a", "b", "c"])])
            .await
            .unwrap();
        assert_eq!(
            again[0],
            IngestResult {
                id: "e1".into(),
                deliveries: 2,
                duplicate: true
            }
        );
        let all = store
            .list_deliveries(DeliveryFilter {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(all.len(), 2);
    }

    #[tokio::test]
    async fn claim_leases_and_record_moves_state() {
        let dir = temp_dir("claim");
        let store = EmbeddedStore::open(&dir, 0).unwrap();
        store
            .ingest(vec![new_event("e1", &["a"]), new_event("e2", &["a"])])
            .await
            .unwrap();
        let lease = Duration::from_secs(60);
        let claim = store.claim_due(1_000, 10, lease).await.unwrap();
        assert_eq!(claim.deliveries.len(), 2);
        assert_eq!(claim.deliveries[0].event.data, "{\"n\":1}");
        // Leased deliveries are not handed out twice.
        assert!(
            store
                .claim_due(1_000, 10, lease)
                .await
                .unwrap()
                .deliveries
                .is_empty()
        );
        store
            .record(vec![
                record("msg_e1_a", 1, NextState::RetryAt(5_000)),
                record("msg_e2_a", 1, NextState::DeadLetter),
            ])
            .await
            .unwrap();
        let claim = store.claim_due(4_999, 10, lease).await.unwrap();
        assert!(claim.deliveries.is_empty());
        assert_eq!(claim.next_due_ms, Some(5_000));
        let claim = store.claim_due(5_000, 10, lease).await.unwrap();
        assert_eq!(claim.deliveries[0].attempts, 1);
        let detail = store.delivery("msg_e2_a").await.unwrap().unwrap();
        assert_eq!(detail.delivery.status, DeliveryStatus::DeadLetter);
        assert_eq!(detail.attempts_log.len(), 1);
        assert_eq!(detail.attempts_log[0].status_code, Some(500));
    }

    #[tokio::test]
    async fn leases_held_at_a_crash_are_released_on_open() {
        let dir = temp_dir("crash");
        {
            let store = EmbeddedStore::open(&dir, 0).unwrap();
            store.ingest(vec![new_event("e1", &["a"])]).await.unwrap();
            let claim = store
                .claim_due(1_000, 10, Duration::from_secs(3600))
                .await
                .unwrap();
            assert_eq!(claim.deliveries.len(), 1);
        }
        let store = EmbeddedStore::open(&dir, 2_000).unwrap();
        let claim = store
            .claim_due(2_000, 10, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(claim.deliveries.len(), 1);
    }

    #[tokio::test]
    async fn waiting_does_not_spend_an_attempt() {
        let dir = temp_dir("wait");
        let store = EmbeddedStore::open(&dir, 0).unwrap();
        store.ingest(vec![new_event("e1", &["a"])]).await.unwrap();
        store
            .claim_due(1_000, 10, Duration::from_secs(60))
            .await
            .unwrap();
        let mut r = record("msg_e1_a", 1, NextState::WaitUntil(9_000));
        r.error = Some("plugin `x` is not loaded".into());
        store.record(vec![r]).await.unwrap();
        let d = store.delivery("msg_e1_a").await.unwrap().unwrap();
        assert_eq!(d.delivery.attempts, 0);
        assert!(d.attempts_log.is_empty());
        assert_eq!(
            d.delivery.last_error.as_deref(),
            Some("plugin `x` is not loaded")
        );
    }
}
