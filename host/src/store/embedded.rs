//! The embedded store: one SQLite file in WAL mode, no server.
//!
//! Writes go through one writer thread that does group commit: it takes every job waiting
//! in its queue, runs them in one transaction (if one fails, the batch runs again with a
//! savepoint per job, so one failure does not sink the others), commits once, and hands
//! the batch's answers to the syncing threads (`syncer`), which answer each caller after
//! an `fsync` of the WAL that began after the commit, while the writer goes on to the next
//! batch. Under load that is one `fsync` per batch, not per event; a batch of attempt
//! records alone is answered at once (`Durability`). Reads use their own connection, which
//! WAL lets run beside the writer.
//!
//! Over 500 lines on purpose: it is the whole `Store` trait for SQLite around one writer
//! thread, its lease map and the hand-off, which every method shares; the SQL helpers for
//! ingest, claims and records sit at the end.
//!
//! Leases live in memory, not in the file. One process owns the file, and every lease it
//! held is void when it restarts (all pending deliveries are simply due), so writing a
//! lease to disk would cost a row update and an index move per delivery for nothing.
//! Claims and records both run on the writer thread, which keeps the lease map and the rows
//! consistent: a claim is a read, and a record clears the lease in the same step that moves
//! the delivery on. The one exception is the hand-off (`Handoff`): while the drain keeps
//! up, an ingest leases its fresh deliveries right after its commit, still on the writer
//! thread, and pokes the scheduler (`ingest_commits`), whose next claim takes them from
//! memory; while nothing else is due, a claim is answered from memory even when there is
//! nothing to take.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use super::checkpoint::{self, Checkpointer, Restart};
use super::health::{HOUR_MS, StoredHealth, fold};
use super::syncer::{Reply, Syncer};
use super::{
    AttemptInfo, AttemptRecord, Claim, ClaimedDelivery, DeliveryDetail, DeliveryFilter,
    DeliveryStatus, DeliverySummary, IngestResult, NewEvent, NextState, NodeReport, NodeStatus,
    QueueDepth, ReplayFilter, RetryOutcome, SpecRewrite, Store, StoreError, StoredSubscription,
    SubscriptionSource,
};
use super::{Committed, PurgeCutoffs, Purged};
use crate::clock::{now_ms, rfc3339, rfc3339_millis};
use crate::event::Event;

/// Jobs taken into one transaction at most; bounds commit latency under heavy load.
const MAX_BATCH: usize = 1024;

/// The tables. A delivery's first attempt, when it delivered (most deliveries' only one),
/// is kept in the delivery's `first_*` columns instead of a row of `attempts`: the record
/// then rewrites the delivery row it updates anyway, and the commit writes neither the
/// `attempts` B-tree's pages nor its 36-byte key (docs/BENCHMARKS.md, "Pages written per
/// commit"). Every other attempt is a row of `attempts`.
///
/// A delivery points to its event by the event's integer key (`seq`, the rowid), not by
/// its text id: the delivery row, and the `deliveries_event` index each ingest appends
/// to, hold a few bytes instead of up to 128, and a claim finds the event by rowid
/// instead of through the id index ("Integer keys" in docs/BENCHMARKS.md). `seq` is
/// declared, not the implicit rowid, because `VACUUM` may renumber implicit rowids.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    seq            INTEGER PRIMARY KEY,
    id             TEXT NOT NULL UNIQUE,
    type           TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    data           TEXT NOT NULL,
    delivery_count INTEGER NOT NULL,
    traceparent    TEXT
);
CREATE TABLE IF NOT EXISTS deliveries (
    id               TEXT PRIMARY KEY,
    event_seq        INTEGER NOT NULL,
    event_type       TEXT NOT NULL,
    subscription_id  TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    run_start        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    leased           INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    last_status      INTEGER,
    parked_on        TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    first_started_at     INTEGER,
    first_latency_us     INTEGER,
    first_status         INTEGER,
    first_response_body  TEXT,
    first_plugin_version TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_parked ON deliveries (parked_on) WHERE parked_on IS NOT NULL;
CREATE INDEX IF NOT EXISTS deliveries_event ON deliveries (event_seq);
CREATE INDEX IF NOT EXISTS deliveries_subscription ON deliveries (subscription_id, id);
CREATE TABLE IF NOT EXISTS subscriptions (
    id              TEXT PRIMARY KEY,
    source          TEXT NOT NULL,
    spec            TEXT NOT NULL,
    enabled         INTEGER NOT NULL,
    disabled_reason TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
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
CREATE TABLE IF NOT EXISTS subscription_health (
    subscription_id      TEXT PRIMARY KEY,
    last_attempt_at      INTEGER NOT NULL,
    last_success         INTEGER NOT NULL,
    last_status          INTEGER,
    last_error           TEXT,
    last_success_at      INTEGER,
    consecutive_failures INTEGER NOT NULL,
    failing_since        INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS subscription_stats (
    subscription_id TEXT NOT NULL,
    hour            INTEGER NOT NULL,
    succeeded       INTEGER NOT NULL,
    failed          INTEGER NOT NULL,
    PRIMARY KEY (subscription_id, hour)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS health (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    checked_at INTEGER NOT NULL
);
";

/// The SQLite-backed store.
#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// This process, the only node.
    node_id: String,
    /// Queue of the writer thread. `Mutex` only because `mpsc::Sender` is not `Sync`.
    writer: Mutex<mpsc::Sender<Job>>,
    /// Deliveries claimed and not yet recorded. Only jobs on the writer thread touch it;
    /// the mutex is never contended.
    leases: Arc<Mutex<Leases>>,
    /// Fresh deliveries on their way from their ingest to the next claim.
    handoff: Arc<Handoff>,
    /// Poked at the commit of every ingest (`ingest_commits`).
    ingested: Arc<tokio::sync::Notify>,
    /// Connection for API reads, separate so reads never wait behind a commit.
    reader: Arc<Mutex<Connection>>,
    path: PathBuf,
    /// Kept only so the checkpoint thread stops with the store.
    _checkpointer: Checkpointer,
    /// The last write the disk refused, for `/healthz`.
    trouble: Trouble,
    /// Each durable batch's time, from its start to its answers (`commit_seconds`).
    commits: Histogram,
    /// The writer's syncer, to count its syncs.
    #[cfg(test)]
    syncer: Syncer,
}

/// The buckets of `commit_seconds`: 0.5 ms to about 8 s. A batch usually takes one
/// `fsync` to its answers, a few milliseconds; the stalls worth seeing took 100 ms and more.
fn commit_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.000_5, 2.0, 15))
}

/// How long a write the disk refused keeps `/healthz` at `503`: a tiny probe row may still
/// fit where an event no longer does, so a probe alone would say `200` while producers
/// are refused.
const TROUBLE_HOLDS: Duration = Duration::from_secs(30);

/// The last write refused for lack of space, an I/O error or a read-only file, and when.
#[derive(Debug, Clone, Default)]
struct Trouble(Arc<Mutex<Option<(Instant, String)>>>);

impl Trouble {
    /// Remembers `e` when it says the disk, not the query, is at fault.
    fn note(&self, e: &rusqlite::Error) {
        use rusqlite::ErrorCode::{CannotOpen, DiskFull, ReadOnly, SystemIoFailure};
        if let rusqlite::Error::SqliteFailure(f, _) = e
            && matches!(f.code, DiskFull | SystemIoFailure | ReadOnly | CannotOpen)
        {
            self.remember(&e.to_string());
        }
    }

    /// Remembers a write the disk refused (a failed sync of the WAL, or `note`'s).
    fn remember(&self, reason: &str) {
        if let Ok(mut last) = self.0.lock() {
            *last = Some((Instant::now(), reason.to_owned()));
        }
    }

    /// The reason, while a refused write is recent.
    fn recent(&self) -> Option<String> {
        let last = self.0.lock().ok()?;
        let (at, reason) = last.as_ref()?;
        (at.elapsed() < TROUBLE_HOLDS).then(|| reason.clone())
    }
}

/// Deliveries claimed and not yet recorded, by row: the claim's walk of the due index reads
/// rowids alone, and a record finds its row by rowid, not through the id index.
#[derive(Debug, Default)]
struct Leases {
    /// When each lease ends (Unix ms), by the delivery's rowid.
    until: HashMap<i64, i64>,
    /// The rowid of each leased delivery, by its id.
    rows: HashMap<String, i64>,
}

impl Leases {
    fn take(&mut self, id: String, rowid: i64, until: i64) {
        self.until.insert(rowid, until);
        self.rows.insert(id, rowid);
    }

    /// Gives the lease on `rowid`, if it is still held, its end at `until`.
    fn end_at(&mut self, rowid: i64, until: i64) {
        if let Some(end) = self.until.get_mut(&rowid) {
            *end = until;
        }
    }

    fn release(&mut self, id: &str) {
        if let Some(rowid) = self.rows.remove(id) {
            self.until.remove(&rowid);
        }
    }

    /// Whether delivery `id` holds a lease that has not ended at `now_ms`.
    fn holds(&self, id: &str, now_ms: i64) -> bool {
        self.rows
            .get(id)
            .and_then(|rowid| self.until.get(rowid))
            .is_some_and(|&until| until > now_ms)
    }

    /// Forgets leases that ended before `now_ms`.
    fn expire(&mut self, now_ms: i64) {
        let before = self.until.len();
        self.until.retain(|_, until| *until > now_ms);
        if self.until.len() < before {
            let until = &self.until;
            self.rows.retain(|_, rowid| until.contains_key(rowid));
        }
    }
}

/// Fresh deliveries the hand-off holds at most.
const HANDOFF_MAX: usize = 256;

/// How long claims answered from memory trust the last claim on the writer at most: the
/// safety net for a write that made a delivery due without saying so, as the scheduler's
/// own idle poll is for a missed wake-up.
const HANDOFF_TRUST_MS: i64 = 30_000;

/// Fresh deliveries leased by their own ingest's commit and given to the next claim from
/// memory: publishing to delivery skips a claim's trip to the writer thread, and the claim
/// does not read back rows that were just written.
///
/// While it is armed, the hand-off holds every delivery that is due and not leased, until
/// `next_due`; a claim then needs nothing from the writer, and one that finds the hand-off
/// empty is answered from memory too (with one event per POST, most claims did find it
/// empty, and each was a trip to the writer thread and a scan; docs/BENCHMARKS.md, "Claims
/// answered from memory"). A claim on the writer (which walks the due index, oldest first)
/// arms it when it finds nothing more due, takes what the hand-off already holds, and sets
/// `next_due` to the earliest of the next delivery due, the next lease to end and
/// `HANDOFF_TRUST_MS`. Whatever else may make a delivery due keeps that true or disarms
/// it, all at its commit on the writer thread:
/// - an ingest hands its fresh deliveries over, lowers `next_due` to any it made due
///   later, and disarms when the hand-off is full;
/// - a record lowers `next_due` to the retry it scheduled (or the wait);
/// - a claim taking from the hand-off lowers it to the end of the leases it gives (the
///   one change made off the writer thread: only the scheduler claims, one claim at a
///   time);
/// - every other write (a retry by hand, a replay, an unpark, ...) disarms.
///
/// So fresh deliveries never overtake a backlog or a due retry: from `next_due` on, or
/// when disarmed, claims go to the writer. A handed-off delivery is leased (without an end
/// until it is taken), so the writer's claims skip it; if the process stops first, it is
/// simply due at the next start.
#[derive(Debug, Default)]
struct Handoff {
    armed: AtomicBool,
    /// Until when the hand-off holds everything due; see above.
    next_due: AtomicI64,
    /// Fresh deliveries by rowid, oldest first.
    ready: Mutex<VecDeque<(i64, ClaimedDelivery)>>,
}

impl Handoff {
    /// Whether an ingest should collect its fresh deliveries for the hand-off.
    fn wanted(&self) -> bool {
        self.armed.load(Ordering::Acquire)
    }

    /// Whether claims at `now_ms` may be answered from memory alone.
    fn trusted(&self, now_ms: i64) -> bool {
        self.wanted() && now_ms < self.next_due.load(Ordering::Acquire)
    }

    /// After a claim on the writer: armed when it found nothing more due, until `next_due`.
    fn arm(&self, caught_up: bool, next_due: i64) {
        self.next_due.store(next_due, Ordering::Release);
        self.armed.store(caught_up, Ordering::Release);
    }

    /// A commit may have made deliveries due that only a claim on the writer finds.
    fn disarm(&self) {
        self.armed.store(false, Ordering::Release);
    }

    /// A commit made a delivery due at `due_ms`.
    fn due_at(&self, due_ms: i64) {
        self.next_due.fetch_min(due_ms, Ordering::AcqRel);
    }

    /// After a commit, on the writer thread: leases `fresh` and makes it ready, unless the
    /// hand-off was disarmed meanwhile or is full (then the writer's claims find them).
    fn offer(&self, fresh: Fresh, leases: &Mutex<Leases>) {
        if let Some(later) = fresh.later {
            self.due_at(later);
        }
        if fresh.now.is_empty() || !self.wanted() {
            return;
        }
        let mut ready = lock(&self.ready);
        if ready.len() + fresh.now.len() > HANDOFF_MAX {
            self.disarm();
            return;
        }
        let mut leases = lock(leases);
        for (rowid, delivery) in fresh.now {
            leases.take(delivery.id.clone(), rowid, i64::MAX);
            ready.push_back((rowid, delivery));
        }
    }

    /// Up to `limit` ready deliveries with their rowids; `None` when none is ready. Their
    /// leases still have no end: the caller has the writer thread set it.
    fn take(&self, limit: usize) -> Option<(Vec<ClaimedDelivery>, Vec<i64>)> {
        let taken: Vec<_> = {
            let mut ready = lock(&self.ready);
            if ready.is_empty() || limit == 0 {
                return None;
            }
            let n = limit.min(ready.len());
            ready.drain(..n).collect()
        };
        Some(taken.into_iter().map(|(rowid, d)| (d, rowid)).unzip())
    }
}

/// A write in the batch transaction: called with `Step::Run` once (twice when another job
/// of its batch failed, see `run_batch`), then with `Step::Finish` once. `Run` answers
/// whether the write succeeded.
type DurableJob = Box<dyn FnMut(Step<'_>) -> bool + Send>;

/// What the writer thread asks of a [`DurableJob`].
enum Step<'a> {
    /// Do the write; `isolated` puts it under a savepoint of its own, so a failure rolls
    /// back only its changes.
    Run {
        conn: &'a Connection,
        isolated: bool,
    },
    /// The batch committed (or failed to): run what must run at the commit, and leave the
    /// caller's answer in `replies`, which the writer runs at once or after the sync.
    Finish {
        committed: Result<(), &'a StoreError>,
        replies: &'a mut Vec<Reply>,
    },
}

/// What a write must survive before its caller hears back; a batch gets the strictest
/// (the greatest) of its jobs'.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Durability {
    /// A killed process, not a power cut: the commit is in the WAL through the kernel's
    /// page cache, and the batch is answered at once, without waiting for a sync. For
    /// attempt records only: losing one to a power cut makes its delivery due again,
    /// which is at least once, as a crash mid-attempt already is. The sync after the next
    /// `PowerCut` commit, or the checkpointer within `checkpoint::EVERY` (it syncs the WAL
    /// before copying from it), syncs such frames. Recovery keeps only an unbroken run of
    /// whole commits, so a record can be lost but never kept without what came before it.
    Crash,
    /// A power cut: the batch is answered once an `fdatasync` of the WAL that began after
    /// its commit has finished (`syncer`). Everything the engine accepts or an operator
    /// changes.
    PowerCut,
}

/// Work for the writer thread.
enum Job {
    /// See [`DurableJob`], and what it must survive before it is answered.
    Durable(DurableJob, Durability),
    /// Reads committed rows and the in-memory leases (a claim; or sets the ends of
    /// handed-off leases) and answers at once: it runs before the batch's writes and never
    /// waits for their `fsync`.
    Immediate(Box<dyn FnOnce(&Connection) + Send>),
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
        enable_incremental_vacuum(&writer, &path).map_err(|e| open_err(e.to_string()))?;
        rekey_by_integers(&writer).map_err(|e| open_err(e.to_string()))?;
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
        // The writer commits without an `fsync` of its own; the syncer syncs the WAL (which
        // SQLite keeps, not deletes, while the store's connections are open) beside it.
        writer
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| open_err(e.to_string()))?;
        let mut wal_path = path.clone().into_os_string();
        wal_path.push("-wal");
        let wal = std::fs::File::open(&wal_path)
            .map_err(|e| open_err(format!("cannot open its WAL to sync it: {e}")))?;
        // Checkpoints run on their own thread, so no commit waits for one (a checkpoint
        // syncs the main file, which took a few hundred milliseconds now and then); the
        // writer only starts the WAL again when it has grown (`checkpoint`).
        writer
            .pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(|e| open_err(e.to_string()))?;
        let trouble = Trouble::default();
        let commits = commit_buckets();
        let syncer = Syncer::start(
            move || wal.sync_data(),
            {
                let trouble = trouble.clone();
                move |reason: &str| trouble.remember(reason)
            },
            commits.clone(),
        )
        .map_err(|e| open_err(e.to_string()))?;
        let restart = Restart::default();
        let checkpointer = Checkpointer::start(
            open_connection(&path).map_err(|e| open_err(e.to_string()))?,
            checkpoint::EVERY,
            checkpoint::RESTART_AT,
            restart.clone(),
        )
        .map_err(|e| open_err(e.to_string()))?;
        std::thread::Builder::new()
            .name("wasmhook-store".into())
            .spawn({
                let trouble = trouble.clone();
                let commits = commits.clone();
                let syncer = syncer.clone();
                move || writer_loop(writer, rx, &trouble, &restart, &commits, &syncer)
            })
            .map_err(|e| open_err(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                node_id: super::postgres::default_node_id(),
                writer: Mutex::new(tx),
                leases: Arc::default(),
                handoff: Arc::default(),
                ingested: Arc::default(),
                reader: Arc::new(Mutex::new(reader)),
                path,
                _checkpointer: checkpointer,
                trouble,
                commits,
                #[cfg(test)]
                syncer,
            }),
        })
    }

    /// Ingests `batch`. At the commit, on the writer thread: runs `committed`, hands the
    /// fresh deliveries over and pokes the scheduler, in that order, so that what
    /// `committed` announces comes before any of the deliveries' outcomes.
    async fn ingest_then(
        &self,
        batch: Vec<NewEvent>,
        committed: Option<Committed>,
    ) -> Result<Vec<IngestResult>, StoreError> {
        let handoff = Arc::clone(&self.inner.handoff);
        let leases = Arc::clone(&self.inner.leases);
        let ingested = Arc::clone(&self.inner.ingested);
        let collect = Arc::clone(&handoff);
        let announce = committed.is_some();
        self.write_then(
            Durability::PowerCut,
            move |conn| {
                let (results, fresh) = ingest(conn, &batch, collect.wanted())?;
                let copy = announce.then(|| results.clone());
                Ok((results, (fresh, copy)))
            },
            move |(fresh, results)| {
                if let (Some(committed), Some(results)) = (committed, results) {
                    committed(&results);
                }
                handoff.offer(fresh, &leases);
                ingested.notify_one();
            },
        )
        .await
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` in the writer's next batch and returns its result once the batch is
    /// durable. A failing `f` changes nothing; `f` may run twice (see `run_batch`), so
    /// what it does beside the connection must bear repeating. The write may make
    /// deliveries due (a retry by hand, an unpark, ...), so it disarms the hand-off.
    async fn write<T: Send + 'static>(
        &self,
        mut f: impl FnMut(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let handoff = Arc::clone(&self.inner.handoff);
        self.write_then(
            Durability::PowerCut,
            move |conn| f(conn).map(|t| (t, ())),
            move |()| handoff.disarm(),
        )
        .await
    }

    /// Like `write`, but answered once the batch survives `durability`, and then runs
    /// `then` on the writer thread with the second half of `f`'s result, before any other
    /// job.
    async fn write_then<T: Send + 'static, U: Send + 'static>(
        &self,
        durability: Durability,
        f: impl FnMut(&Connection) -> rusqlite::Result<(T, U)> + Send + 'static,
        then: impl FnOnce(U) + Send + 'static,
    ) -> Result<T, StoreError> {
        let (job, rx) = durable_job(f, then, self.inner.trouble.clone());
        self.send(Job::Durable(job, durability))?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` on the writer thread before its next batch's writes, outside any
    /// transaction, and answers at once. For claims: they read what is committed and the
    /// leases, which only this thread touches.
    async fn immediate<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Immediate(Box::new(move |conn| {
            let _ = tx.send(f(conn).map_err(StoreError::from));
        })))?;
        rx.await.map_err(|_| StoreError::Closed)?
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

/// Answer to a write: its result once the batch is durable.
type Answer<T> = oneshot::Receiver<Result<T, StoreError>>;

/// The job for `write_then`, and where its answer arrives.
fn durable_job<T: Send + 'static, U: Send + 'static>(
    mut f: impl FnMut(&Connection) -> rusqlite::Result<(T, U)> + Send + 'static,
    then: impl FnOnce(U) + Send + 'static,
    trouble: Trouble,
) -> (DurableJob, Answer<T>) {
    let (tx, rx) = oneshot::channel();
    let (mut tx, mut then, mut result) = (Some(tx), Some(then), None);
    let job: DurableJob = Box::new(move |step| match step {
        Step::Run { conn, isolated } => {
            let ran = if isolated {
                in_savepoint(conn, &mut f, &trouble)
            } else {
                f(conn).map_err(|e| {
                    trouble.note(&e);
                    e.into()
                })
            };
            let ok = ran.is_ok();
            result = Some(ran);
            ok
        }
        Step::Finish { committed, replies } => {
            let answer = match (committed, result.take()) {
                (Ok(()), Some(Ok((t, u)))) => {
                    if let Some(then) = then.take() {
                        then(u);
                    }
                    Ok(t)
                }
                (Ok(()), Some(Err(e))) => Err(e),
                (Ok(()), None) => Err(StoreError::Closed),
                (Err(e), _) => Err(e.clone()),
            };
            if let Some(tx) = tx.take() {
                replies.push(Box::new(move |synced| {
                    let answer = match synced {
                        Ok(()) => answer,
                        Err(e) => Err(e.clone()),
                    };
                    // A caller that stopped waiting is fine to ignore.
                    let _ = tx.send(answer);
                }));
            }
            true
        }
    });
    (job, rx)
}

/// How long a connection waits for a lock another holds before it gives up.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // A new database takes its vacuum mode before anything writes its first page
    // (switching to WAL does), or never; an older one is converted by
    // `enable_incremental_vacuum`. Only on a new one, as setting it writes the header.
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    if pages == 0 {
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    }
    // WAL lets readers run beside the writer; FULL makes a commit survive power loss, not
    // just a killed process. The writer thread lowers it to NORMAL and syncs the WAL on a
    // thread of its own (`syncer`), answering only once the sync is done.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "cache_size", -16_000)?; // 16 MiB
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // When the WAL starts again, a file larger than this is cut back to it; the restarts
    // under load keep the file below it, so they never truncate in the writer's way.
    conn.pragma_update(None, "journal_size_limit", checkpoint::KEPT_BYTES)?;
    // One plan per statement whatever its bound values. Without it SQLite (3.48 and later)
    // re-prepares a statement whenever a bound `LIMIT ?` changes, and the claim's limit
    // changes at nearly every claim: parsing and planning it again was about 9% of the
    // writer thread's time (perf, producers' workload).
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(conn)
}

/// Databases bigger than this are not rewritten at open to turn on incremental vacuum.
const VACUUM_AT_OPEN_MAX: u64 = 256 << 20;

/// Turns on incremental vacuum, so purged space goes back to the file system: a new
/// database has it from `open_connection`; an older small one is rewritten once; a large
/// older one keeps reusing its free pages, and the log says how to convert it. (Until
/// 2026-12, a new database missed it, as WAL was chosen first: such stores are rewritten
/// at their next start like the older ones.)
fn enable_incremental_vacuum(conn: &Connection, path: &Path) -> rusqlite::Result<()> {
    let mode: i64 = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?;
    if mode == 2 {
        return Ok(());
    }
    // Takes effect at the next `VACUUM` on this connection.
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(u64::MAX);
    if size <= VACUUM_AT_OPEN_MAX {
        tracing::info!(
            bytes = size,
            "rewriting the store once so that purged space is given back"
        );
        // The copy goes to a temporary file, not to memory (`temp_store` of the connection).
        conn.pragma_update(None, "temp_store", "FILE")?;
        conn.execute_batch("VACUUM")?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
    } else {
        tracing::warn!(bytes = size, path = %path.display(),
            "the store predates incremental vacuum and is too large to rewrite at start; purged \
             space is reused but the file does not shrink (to convert it, run `sqlite3 \
             wasmhook.db 'PRAGMA auto_vacuum = INCREMENTAL; VACUUM;'` while the engine is \
             stopped)");
    }
    Ok(())
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn ingest(&self, batch: Vec<NewEvent>) -> Result<Vec<IngestResult>, StoreError> {
        self.ingest_then(batch, None).await
    }

    async fn ingest_announcing(
        &self,
        batch: Vec<NewEvent>,
        committed: Committed,
    ) -> Result<Vec<IngestResult>, StoreError> {
        self.ingest_then(batch, Some(committed)).await
    }

    async fn claim_due(
        &self,
        now_ms: i64,
        limit: usize,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        let handoff = &self.inner.handoff;
        if handoff.trusted(now_ms) {
            let Some((deliveries, rowids)) = handoff.take(limit) else {
                return Ok(Claim {
                    deliveries: Vec::new(),
                    next_due_ms: Some(handoff.next_due.load(Ordering::Acquire)),
                });
            };
            // Their leases get their end on the writer thread, not here: a worker thread
            // must not wait for the lease map while a record batch holds it. Jobs run in
            // order, so this runs before any record of these deliveries.
            let until = now_ms.saturating_add(lease_ms);
            handoff.due_at(until);
            let leases = Arc::clone(&self.inner.leases);
            self.send(Job::Immediate(Box::new(move |_| {
                let mut leases = lock(&leases);
                for rowid in rowids {
                    leases.end_at(rowid, until);
                }
            })))?;
            // More may be ready in the hand-off.
            return Ok(Claim {
                deliveries,
                next_due_ms: Some(now_ms),
            });
        }
        let leases = Arc::clone(&self.inner.leases);
        let handoff = Arc::clone(&self.inner.handoff);
        self.immediate(move |conn| claim(conn, &leases, &handoff, now_ms, limit, lease_ms))
            .await
    }

    async fn record(&self, records: Vec<AttemptRecord>) -> Result<(), StoreError> {
        let leases = Arc::clone(&self.inner.leases);
        let held = Arc::clone(&leases);
        let records = Arc::new(records);
        let recorded = Arc::clone(&records);
        let handoff = Arc::clone(&self.inner.handoff);
        // The leases go only once the records are committed: until then the deliveries must
        // not be claimed again, and this job may run twice (see `run_batch`). A record
        // needs no `fsync` of its own (`Durability::Crash`).
        self.write_then(
            Durability::Crash,
            move |conn| record(conn, &records, &lock(&held)).map(|()| ((), ())),
            move |()| {
                let mut leases = lock(&leases);
                for r in recorded.iter() {
                    leases.release(&r.delivery_id);
                    if let NextState::RetryAt(at) | NextState::WaitUntil(at) = r.next {
                        handoff.due_at(at);
                    }
                }
            },
        )
        .await
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
            // The first attempt if its delivery row keeps it, and those in `attempts`.
            let mut stmt = conn.prepare_cached(
                "SELECT 1, first_started_at, first_latency_us, first_status, NULL, first_response_body,
                        first_plugin_version
                 FROM deliveries WHERE id = ?1 AND first_started_at IS NOT NULL
                 UNION ALL
                 SELECT attempt, started_at, latency_us, status_code, error, response_body, plugin_version
                 FROM attempts WHERE delivery_id = ?1
                 ORDER BY 1",
            )?;
            let attempts_log = stmt
                .query_map([&id], |r| {
                    Ok(AttemptInfo {
                        attempt: r.get(0)?,
                        started_at: rfc3339_millis(r.get(1)?),
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
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            // `clause` has one `?`, which becomes the value's numbered parameter.
            let mut push = |clause: &str, value: rusqlite::types::Value| {
                args.push(value);
                sql.push_str(" AND ");
                sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
            };
            if let Some(v) = filter.subscription_id {
                push("subscription_id = ?", v.into());
            }
            if let Some(v) = filter.status {
                push("status = ?", v.as_str().to_owned().into());
            }
            if let Some(v) = filter.event_type {
                push("event_type = ?", v.into());
            }
            if let Some(v) = filter.event_id {
                push(
                    "event_seq = (SELECT seq FROM events WHERE id = ?)",
                    v.into(),
                );
            }
            if let Some(v) = filter.since_ms {
                push("created_at >= ?", v.into());
            }
            if let Some(v) = filter.until_ms {
                push("created_at < ?", v.into());
            }
            if let Some(v) = filter.before {
                push("id < ?", v.into());
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

    async fn retry_delivery(&self, id: &str, now_ms: i64) -> Result<RetryOutcome, StoreError> {
        let id = id.to_owned();
        let leases = Arc::clone(&self.inner.leases);
        self.write(move |conn| {
            let status: Option<String> = conn
                .query_row("SELECT status FROM deliveries WHERE id = ?1", [&id], |r| r.get(0))
                .optional()?;
            let leased = lock(&leases).holds(&id, now_ms);
            match status {
                None => return Ok(RetryOutcome::NotFound),
                Some(status) if status == "pending" && leased => return Ok(RetryOutcome::InFlight),
                Some(_) => {}
            }
            conn.execute(
                "UPDATE deliveries SET status = 'pending', next_attempt_at = ?2, run_start = attempts,
                     leased = 0, updated_at = ?2 WHERE id = ?1",
                params![id, now_ms],
            )?;
            let summary = conn.query_row(&format!("{SUMMARY_SELECT} WHERE id = ?1"), [&id], summary_row)?;
            Ok(RetryOutcome::Scheduled(Box::new(summary)))
        })
        .await
    }

    async fn replay_dead_letters(
        &self,
        filter: ReplayFilter,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        self.write(move |conn| {
            let replayed = conn.execute(
                "UPDATE deliveries SET status = 'pending', next_attempt_at = ?1, run_start = attempts,
                     leased = 0, updated_at = ?1
                 WHERE status = 'dead_letter'
                   AND (?2 IS NULL OR subscription_id = ?2)
                   AND (?3 IS NULL OR created_at >= ?3)
                   AND (?4 IS NULL OR created_at < ?4)",
                params![now_ms, filter.subscription_id, filter.since_ms, filter.until_ms],
            )?;
            Ok(replayed as u64)
        })
        .await
    }

    async fn unpark(&self, key: &str, now_ms: i64) -> Result<u64, StoreError> {
        let key = key.to_owned();
        self.write(move |conn| {
            let n = conn.execute(
                "UPDATE deliveries SET next_attempt_at = ?2, parked_on = NULL
                 WHERE parked_on = ?1 AND status = 'pending' AND leased = 0",
                params![key, now_ms],
            )?;
            Ok(n as u64)
        })
        .await
    }

    async fn queue_depth(&self, now_ms: i64) -> Result<QueueDepth, StoreError> {
        self.read(move |conn| {
            conn.query_row(
                "SELECT COALESCE(SUM(next_attempt_at <= ?1 OR leased = 1), 0), COALESCE(SUM(next_attempt_at > ?1 AND leased = 0), 0)
                 FROM deliveries WHERE status = 'pending'",
                [now_ms],
                |r| {
                    Ok(QueueDepth {
                        due: r.get::<_, i64>(0)? as u64,
                        scheduled: r.get::<_, i64>(1)? as u64,
                    })
                },
            )
        })
        .await
    }

    async fn subscriptions(&self) -> Result<Vec<StoredSubscription>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, source, spec, enabled, disabled_reason, created_at, updated_at FROM subscriptions ORDER BY id",
            )?;
            let rows = stmt.query_map([], subscription_row)?;
            rows.collect()
        })
        .await
    }

    async fn put_subscription(&self, sub: StoredSubscription) -> Result<(), StoreError> {
        self.write(move |conn| upsert_subscription(conn, &sub, false))
            .await
    }

    async fn create_subscription(&self, sub: StoredSubscription) -> Result<bool, StoreError> {
        self.write(move |conn| {
            let inserted = conn.execute(
                "INSERT INTO subscriptions (id, source, spec, enabled, disabled_reason, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (id) DO NOTHING",
                params![
                    sub.id,
                    sub.source.as_str(),
                    sub.spec,
                    sub.enabled,
                    sub.disabled_reason,
                    sub.created_at_ms,
                    sub.updated_at_ms
                ],
            )?;
            Ok(inserted > 0)
        })
        .await
    }

    async fn delete_subscription(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.write(move |conn| {
            let deleted = conn.execute("DELETE FROM subscriptions WHERE id = ?1", [&id])? > 0;
            if deleted {
                conn.execute(
                    "UPDATE deliveries SET status = 'cancelled', updated_at = ?2, parked_on = NULL,
                         last_error = 'cancelled: the subscription was deleted'
                     WHERE subscription_id = ?1 AND status = 'pending'",
                    params![id, now_ms],
                )?;
                conn.execute(
                    "DELETE FROM subscription_health WHERE subscription_id = ?1",
                    [&id],
                )?;
                conn.execute(
                    "DELETE FROM subscription_stats WHERE subscription_id = ?1",
                    [&id],
                )?;
            }
            Ok(deleted)
        })
        .await
    }

    async fn purge_deliveries(
        &self,
        cutoffs: PurgeCutoffs,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<Purged, StoreError> {
        self.write(move |conn| {
            let after: i64 = cursor.as_deref().and_then(|c| c.parse().ok()).unwrap_or(0);
            let mut scan = conn.prepare_cached(
                "SELECT rowid, id, status, created_at FROM deliveries WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
            )?;
            let mut last = None;
            let mut seen = 0;
            let mut doomed = Vec::new();
            let mut rows = scan.query(params![after, limit as i64])?;
            while let Some(row) = rows.next()? {
                seen += 1;
                let (rowid, id, status, created): (i64, String, String, i64) =
                    (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
                if cutoffs.latest().is_none_or(|latest| created >= latest) {
                    last = None;
                    break;
                }
                last = Some(rowid);
                if purgeable(&status, created, &cutoffs) {
                    doomed.push(id);
                }
            }
            drop(rows);
            let mut attempts = conn.prepare_cached("DELETE FROM attempts WHERE delivery_id = ?1")?;
            let mut deliveries = conn.prepare_cached("DELETE FROM deliveries WHERE id = ?1")?;
            for id in &doomed {
                attempts.execute([id])?;
                deliveries.execute([id])?;
            }
            Ok(Purged {
                deleted: doomed.len() as u64,
                cursor: last.filter(|_| seen == limit).map(|r| r.to_string()),
            })
        })
        .await
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
        self.write(move |conn| {
            let after: i64 = cursor.as_deref().and_then(|c| c.parse().ok()).unwrap_or(0);
            if let (0, Some(counts)) = (after, cutoffs.counts_before) {
                conn.execute(
                    "DELETE FROM subscription_stats WHERE hour < ?1",
                    [counts.div_euclid(HOUR_MS)],
                )?;
            }
            let mut scan = conn.prepare_cached(
                "SELECT e.seq, e.created_at, EXISTS (SELECT 1 FROM deliveries d WHERE d.event_seq = e.seq)
                 FROM events e WHERE e.seq > ?1 ORDER BY e.seq LIMIT ?2",
            )?;
            let mut last = None;
            let mut seen = 0;
            let mut doomed = Vec::new();
            let mut rows = scan.query(params![after, limit as i64])?;
            while let Some(row) = rows.next()? {
                seen += 1;
                let (rowid, created, referenced): (i64, i64, bool) =
                    (row.get(0)?, row.get(1)?, row.get(2)?);
                if created >= before {
                    last = None;
                    break;
                }
                last = Some(rowid);
                if !referenced {
                    doomed.push(rowid);
                }
            }
            drop(rows);
            let mut delete = conn.prepare_cached("DELETE FROM events WHERE seq = ?1")?;
            for rowid in &doomed {
                delete.execute([rowid])?;
            }
            Ok(Purged {
                deleted: doomed.len() as u64,
                cursor: last.filter(|_| seen == limit).map(|r| r.to_string()),
            })
        })
        .await
    }

    async fn reclaim(&self) -> Result<bool, StoreError> {
        // At most 4,096 pages (16 MiB) at a time, in the writer's next batch: moving them
        // took up to about 85 ms with the commit in a worst case (live pages at the end
        // of the file), which the batch's other jobs wait for.
        self.write(|conn| {
            let free = |conn: &Connection| {
                conn.query_row("PRAGMA freelist_count", [], |r| r.get::<_, i64>(0))
            };
            let before = free(conn)?;
            // Each step of the statement frees one page: it runs until it has no more rows.
            let mut vacuum = conn.prepare_cached("PRAGMA incremental_vacuum(4096)")?;
            let mut steps = vacuum.raw_query();
            while steps.next()?.is_some() {}
            drop(steps);
            let left = free(conn)?;
            // A store without incremental vacuum frees nothing here: never "more" for it.
            Ok(left > 0 && left < before)
        })
        .await
    }

    async fn subscription_health(
        &self,
        id: Option<&str>,
        now_ms: i64,
    ) -> Result<HashMap<String, StoredHealth>, StoreError> {
        let id = id.map(str::to_owned);
        self.read(move |conn| {
            let mut out: HashMap<String, StoredHealth> = HashMap::new();
            let mut rows = conn.prepare_cached(
                "SELECT subscription_id, last_attempt_at, last_success, last_status, last_error,
                        last_success_at, consecutive_failures, failing_since
                 FROM subscription_health WHERE ?1 IS NULL OR subscription_id = ?1",
            )?;
            for row in rows.query_map([&id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    StoredHealth {
                        last_attempt_at: r.get(1)?,
                        last_success: r.get(2)?,
                        last_status: r.get(3)?,
                        last_error: r.get(4)?,
                        last_success_at: r.get(5)?,
                        consecutive_failures: r.get(6)?,
                        failing_since: r.get(7)?,
                        buckets: Vec::new(),
                    },
                ))
            })? {
                let (sub, health) = row?;
                out.insert(sub, health);
            }
            let mut buckets = conn.prepare_cached(
                "SELECT subscription_id, hour, succeeded, failed FROM subscription_stats
                 WHERE hour >= ?1 AND (?2 IS NULL OR subscription_id = ?2)",
            )?;
            let oldest = now_ms.div_euclid(HOUR_MS) - 24;
            for row in buckets.query_map(params![oldest, id], |r| {
                Ok((r.get::<_, String>(0)?, (r.get(1)?, r.get(2)?, r.get(3)?)))
            })? {
                let (sub, bucket) = row?;
                out.entry(sub).or_default().buckets.push(bucket);
            }
            Ok(out)
        })
        .await
    }

    async fn sync_config_subscriptions(
        &self,
        subs: Vec<StoredSubscription>,
    ) -> Result<(), StoreError> {
        self.write(move |conn| {
            let ids: HashSet<&str> = subs.iter().map(|s| s.id.as_str()).collect();
            let mut stale = conn.prepare("SELECT id FROM subscriptions WHERE source = 'config'")?;
            let stale: Vec<String> = stale
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .filter(|id| !ids.contains(&id.as_str()))
                .collect();
            for id in stale {
                conn.execute("DELETE FROM subscriptions WHERE id = ?1", [&id])?;
            }
            for sub in &subs {
                upsert_subscription(conn, sub, true)?;
            }
            Ok(())
        })
        .await
    }

    async fn rewrite_specs(&self, rewrites: Vec<SpecRewrite>) -> Result<u64, StoreError> {
        let changed = self
            .write(move |conn| {
                // Zero the old text's bytes instead of leaving them in the page's free space.
                conn.pragma_update(None, "secure_delete", true)?;
                let mut changed = 0;
                for r in &rewrites {
                    changed += conn.execute(
                        "UPDATE subscriptions SET spec = ?3 WHERE id = ?1 AND spec = ?2",
                        params![r.id, r.old, r.new],
                    )? as u64;
                }
                conn.pragma_update(None, "secure_delete", false)?;
                Ok(changed)
            })
            .await?;
        if changed > 0 {
            // Copy the new pages into the file and empty the WAL, which still holds the
            // old ones.
            self.read(|conn| conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())))
                .await?;
        }
        Ok(changed)
    }

    async fn set_subscription_enabled(
        &self,
        id: &str,
        enabled: bool,
        reason: Option<String>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.write(move |conn| {
            let found = conn.execute(
                "UPDATE subscriptions SET enabled = ?2, disabled_reason = ?3, updated_at = ?4 WHERE id = ?1",
                params![id, enabled, if enabled { None } else { reason.as_deref() }, now_ms],
            )? > 0;
            if found && enabled {
                // Enabled again: a fresh start for the run of failures.
                conn.execute(
                    "UPDATE subscription_health SET consecutive_failures = 0, failing_since = NULL
                     WHERE subscription_id = ?1",
                    [&id],
                )?;
            }
            Ok(found)
        })
        .await
    }

    async fn heartbeat(
        &self,
        now_ms: i64,
        report: NodeReport,
    ) -> Result<Vec<NodeStatus>, StoreError> {
        Ok(vec![self.this_node(now_ms, report)])
    }

    async fn subscriptions_version(&self) -> Result<i64, StoreError> {
        // One process owns the file, and it reloads its catalog itself after each change.
        Ok(0)
    }

    fn ingest_commits(&self) -> Option<Arc<tokio::sync::Notify>> {
        Some(Arc::clone(&self.inner.ingested))
    }

    fn subscription_changes(&self) -> Option<Arc<tokio::sync::Notify>> {
        None
    }

    fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    fn commit_seconds(&self) -> Option<Histogram> {
        Some(self.inner.commits.clone())
    }

    async fn check_writable(&self, now_ms: i64) -> Result<(), StoreError> {
        if let Some(reason) = self.inner.trouble.recent() {
            return Err(StoreError::Database(reason));
        }
        // Joins the writer's next group commit, so it costs no commit of its own under load.
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO health (id, checked_at) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at",
            )?
            .execute([now_ms])?;
            Ok(())
        })
        .await
    }
}

impl EmbeddedStore {
    fn this_node(&self, now_ms: i64, report: NodeReport) -> NodeStatus {
        NodeStatus {
            node_id: self.inner.node_id.clone(),
            this_node: true,
            live: true,
            started_at: rfc3339(report.started_at_ms),
            heartbeat_at: rfc3339(now_ms),
            plugins: report.plugins,
        }
    }
}

/// A delivery's summary; its event's id is read by the delivery's `event_seq`, so the
/// clauses after it name the delivery's own columns.
const SUMMARY_SELECT: &str =
    "SELECT id, (SELECT e.id FROM events e WHERE e.seq = deliveries.event_seq), event_type,
    subscription_id, status, attempts, next_attempt_at, last_error, last_status, created_at,
    updated_at FROM deliveries";

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
            .then(|| r.get::<_, i64>(6).map(rfc3339_millis))
            .transpose()?,
        last_error: r.get(7)?,
        last_status: r.get(8)?,
        created_at: rfc3339(r.get(9)?),
        updated_at: rfc3339(r.get(10)?),
    })
}

fn subscription_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredSubscription> {
    Ok(StoredSubscription {
        id: r.get(0)?,
        source: SubscriptionSource::parse(&r.get::<_, String>(1)?),
        spec: r.get(2)?,
        enabled: r.get(3)?,
        disabled_reason: r.get(4)?,
        created_at_ms: r.get(5)?,
        updated_at_ms: r.get(6)?,
    })
}

/// Inserts or replaces a subscription. With `keep_state`, an existing row keeps its
/// `enabled`, `disabled_reason` and `created_at` (a config reload must not re-enable a
/// subscription the receiver disabled with `410`).
fn upsert_subscription(
    conn: &Connection,
    sub: &StoredSubscription,
    keep_state: bool,
) -> rusqlite::Result<()> {
    let sql = if keep_state {
        "INSERT INTO subscriptions (id, source, spec, enabled, disabled_reason, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (id) DO UPDATE SET source = excluded.source, spec = excluded.spec, updated_at = excluded.updated_at"
    } else {
        "INSERT INTO subscriptions (id, source, spec, enabled, disabled_reason, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (id) DO UPDATE SET source = excluded.source, spec = excluded.spec, enabled = excluded.enabled,
             disabled_reason = excluded.disabled_reason, updated_at = excluded.updated_at"
    };
    conn.execute(
        sql,
        params![
            sub.id,
            sub.source.as_str(),
            sub.spec,
            sub.enabled,
            sub.disabled_reason,
            sub.created_at_ms,
            sub.updated_at_ms
        ],
    )?;
    Ok(())
}

/// The writer thread: group commit until every sender is gone.
fn writer_loop(
    mut conn: Connection,
    rx: mpsc::Receiver<Job>,
    trouble: &Trouble,
    restart: &Restart,
    commits: &Histogram,
    syncer: &Syncer,
) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        // Claims first, on committed rows, answered at once: the drain does not wait for
        // the batch's commit, however much ingest the batch carries.
        let mut durable = Vec::with_capacity(jobs.len());
        let mut wanted = Durability::Crash;
        for job in jobs {
            match job {
                Job::Immediate(f) => f(&conn),
                Job::Durable(f, durability) => {
                    durable.push(f);
                    wanted = wanted.max(durability);
                }
            }
        }
        if durable.is_empty() {
            continue;
        }
        let started = Instant::now();
        let (committed, replies) = run_batch(&mut conn, durable, trouble);
        if committed && wanted == Durability::PowerCut {
            syncer.answer_when_synced(started, replies);
        } else {
            commits.observe(started.elapsed().as_secs_f64());
            for reply in replies {
                reply(Ok(()));
            }
        }
        restart.run_if_asked(&conn);
    }
}

/// Runs a batch's jobs in one transaction; whether it committed, and its callers' answers.
/// Each job runs bare first: a savepoint per job made SQLite copy every page the job
/// touched into its statement journal, 14% of the writer thread with one event per POST
/// (perf, call graph). When a job fails, the whole transaction is rolled back and every
/// job runs again under a savepoint of its own, so the failure takes back only its own
/// changes, as if the first pass had never been.
fn run_batch(
    conn: &mut Connection,
    mut jobs: Vec<DurableJob>,
    trouble: &Trouble,
) -> (bool, Vec<Reply>) {
    let committed = match run_jobs(conn, &mut jobs, false) {
        Ok(true) => Ok(()),
        Ok(false) => run_jobs(conn, &mut jobs, true).map(|_| ()),
        Err(e) => Err(e),
    }
    .map_err(|e| {
        trouble.note(&e);
        StoreError::from(e)
    });
    if let Err(e) = &committed {
        tracing::error!(error = %e, "store commit failed; the batch was rolled back and its callers told");
    }
    let mut replies = Vec::with_capacity(jobs.len());
    for job in &mut jobs {
        job(Step::Finish {
            committed: committed.as_ref().map(|_| ()),
            replies: &mut replies,
        });
    }
    (committed.is_ok(), replies)
}

/// One pass of `run_batch`: `false` when a job failed outside a savepoint, and the
/// transaction was rolled back. An error when the transaction could not be had, kept or
/// committed.
fn run_jobs(
    conn: &mut Connection,
    jobs: &mut [DurableJob],
    isolated: bool,
) -> rusqlite::Result<bool> {
    let tx = conn.transaction()?;
    for job in jobs.iter_mut() {
        let ok = job(Step::Run {
            conn: &tx,
            isolated,
        });
        if !ok && !isolated {
            // SQLite itself may have rolled the transaction back (a full disk, an I/O
            // error); otherwise a failed rollback must not leave it open.
            if !tx.is_autocommit() {
                tx.rollback()?;
            }
            return Ok(false);
        }
        if tx.is_autocommit() {
            // SQLite rolled the whole transaction back: the jobs after this one must not
            // run, and commit, outside it.
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
                Some("SQLite rolled the batch's transaction back".into()),
            ));
        }
    }
    tx.commit()?;
    Ok(true)
}

/// Runs `f` under a savepoint, rolling back only its own changes when it fails.
fn in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    trouble: &Trouble,
) -> Result<T, StoreError> {
    // Cached: parsing these three statements for every job was a visible cost.
    conn.prepare_cached("SAVEPOINT job")?.execute([])?;
    match f(conn) {
        Ok(v) => {
            conn.prepare_cached("RELEASE job")?.execute([])?;
            Ok(v)
        }
        Err(e) => {
            trouble.note(&e);
            conn.prepare_cached("ROLLBACK TO job")?.execute([])?;
            conn.prepare_cached("RELEASE job")?.execute([])?;
            Err(e.into())
        }
    }
}

/// Columns added after the first release, before the integer keys: `(table, column,
/// type)`. Every store with the integer keys has them.
const ADDED_COLUMNS: [(&str, &str, &str); 6] = [
    ("events", "traceparent", "TEXT"),
    ("deliveries", "first_started_at", "INTEGER"),
    ("deliveries", "first_latency_us", "INTEGER"),
    ("deliveries", "first_status", "INTEGER"),
    ("deliveries", "first_response_body", "TEXT"),
    ("deliveries", "first_plugin_version", "TEXT"),
];

/// Whether `table` has `column` (a store made by an older version may not).
pub(super) fn has_column(conn: &Connection, table: &str, column: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
        [table, column],
        |r| r.get(0),
    )
}

/// Rebuilds a store made before the integer keys (see [`SCHEMA`]): events gain `seq`,
/// their old rowid, and deliveries point to it instead of the event's text id. One
/// immediate transaction, so a store is either rebuilt whole or left as it was, and no
/// other process writes meanwhile; every row and rowid is kept. A delivery whose event is
/// missing (never made by the engine, which purges an event only once nothing points to
/// it) stops the rebuild with the ids to look at, rather than be dropped. The old and new
/// tables are both in the file until the commit, so it needs free disk about twice their
/// size; the pages freed then are reused by new rows. The log says when it starts and
/// ends. A new store, or one already rebuilt, is left alone.
fn rekey_by_integers(conn: &Connection) -> rusqlite::Result<()> {
    if !has_column(conn, "events", "id")? || has_column(conn, "events", "seq")? {
        return Ok(());
    }
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    let (events, deliveries): (i64, i64) = tx.query_row(
        "SELECT (SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM deliveries)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let orphans: Vec<String> = tx
        .prepare(
            "SELECT d.id FROM deliveries d WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.id = d.event_id)
             ORDER BY d.rowid LIMIT 5",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if !orphans.is_empty() {
        // Dropping the transaction rolls it back: the store stays as it was.
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT),
            Some(format!(
                "cannot rebuild the store with integer keys: deliveries point to events it does \
                 not have ({}{}); list them with `SELECT id, event_id FROM deliveries WHERE \
                 event_id NOT IN (SELECT id FROM events)` and delete them, or restore the store \
                 from a backup. The store is left unchanged",
                orphans.join(", "),
                if orphans.len() == 5 { ", …" } else { "" }
            )),
        ));
    }
    tracing::info!(
        events,
        deliveries,
        "rebuilding the store's events and deliveries with integer keys (once, at the first start of this version)"
    );
    for (table, column, kind) in ADDED_COLUMNS {
        if !has_column(&tx, table, column)? {
            tx.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {kind}"))?;
        }
    }
    // Index names are the schema's, so the old ones go before the tables are made anew.
    tx.execute_batch(
        "DROP INDEX IF EXISTS deliveries_due;
         DROP INDEX IF EXISTS deliveries_parked;
         DROP INDEX IF EXISTS deliveries_event;
         DROP INDEX IF EXISTS deliveries_subscription;
         ALTER TABLE events RENAME TO events_by_text;
         ALTER TABLE deliveries RENAME TO deliveries_by_text;",
    )?;
    tx.execute_batch(SCHEMA)?;
    tx.execute_batch(
        "INSERT INTO events (seq, id, type, created_at, data, delivery_count, traceparent)
         SELECT rowid, id, type, created_at, data, delivery_count, traceparent
         FROM events_by_text ORDER BY rowid;
         INSERT INTO deliveries (rowid, id, event_seq, event_type, subscription_id, status, attempts,
             run_start, next_attempt_at, leased, last_error, last_status, parked_on, created_at,
             updated_at, first_started_at, first_latency_us, first_status, first_response_body,
             first_plugin_version)
         SELECT d.rowid, d.id, e.seq, d.event_type, d.subscription_id, d.status, d.attempts,
             d.run_start, d.next_attempt_at, d.leased, d.last_error, d.last_status, d.parked_on,
             d.created_at, d.updated_at, d.first_started_at, d.first_latency_us, d.first_status,
             d.first_response_body, d.first_plugin_version
         FROM deliveries_by_text d JOIN events e ON e.id = d.event_id ORDER BY d.rowid;
         DROP TABLE deliveries_by_text;
         DROP TABLE events_by_text;",
    )?;
    tx.commit()?;
    tracing::info!(events, deliveries, "rebuilt the store with integer keys");
    Ok(())
}

/// What an ingest gives the hand-off.
#[derive(Default)]
struct Fresh {
    /// New deliveries due now, with their rowids.
    now: Vec<(i64, ClaimedDelivery)>,
    /// When the first new delivery due later is (an event created in the future).
    later: Option<i64>,
}

/// Inserts `batch`; with `collect`, also returns each new delivery that is due now, for the
/// hand-off.
fn ingest(
    tx: &Connection,
    batch: &[NewEvent],
    collect: bool,
) -> rusqlite::Result<(Vec<IngestResult>, Fresh)> {
    let mut insert_event = tx.prepare_cached(
        "INSERT INTO events (id, type, created_at, data, delivery_count, traceparent) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (id) DO NOTHING",
    )?;
    let mut existing = tx.prepare_cached("SELECT delivery_count FROM events WHERE id = ?1")?;
    let mut insert_delivery = tx.prepare_cached(
        "INSERT INTO deliveries (id, event_seq, event_type, subscription_id, status, next_attempt_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5, ?5)",
    )?;
    let mut results = Vec::with_capacity(batch.len());
    let mut fresh = Fresh::default();
    let now = now_ms();
    for new in batch {
        let e = &new.event;
        let inserted = insert_event.execute(params![
            e.id,
            e.kind,
            e.created_at_ms,
            e.data,
            new.deliveries.len() as i64,
            e.traceparent
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
        let seq = tx.last_insert_rowid();
        for d in &new.deliveries {
            insert_delivery.execute(params![
                d.id,
                seq,
                e.kind,
                d.subscription_id,
                e.created_at_ms
            ])?;
            if !collect {
                continue;
            }
            if e.created_at_ms > now {
                let later = fresh.later.get_or_insert(e.created_at_ms);
                *later = (*later).min(e.created_at_ms);
            } else {
                fresh.now.push((
                    tx.last_insert_rowid(),
                    ClaimedDelivery {
                        id: d.id.clone(),
                        subscription_id: d.subscription_id.clone(),
                        attempts: 0,
                        attempts_this_run: 0,
                        event: e.clone(),
                    },
                ));
            }
        }
        results.push(IngestResult {
            id: e.id.clone(),
            deliveries: new.deliveries.len() as u32,
            duplicate: false,
        });
    }
    Ok((results, fresh))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The claim's walk of the due index: pending deliveries, oldest due first.
const CLAIM_SCAN: &str = "SELECT rowid, next_attempt_at FROM deliveries WHERE status = 'pending'
     ORDER BY next_attempt_at LIMIT ?1";

/// Claims up to `limit` due deliveries that hold no live lease, oldest due first, and
/// leases them in memory. Walks the due index once: in-flight deliveries (at most the
/// engine's concurrency plus its unrecorded attempts) are skipped, and the first one not
/// yet due gives `next_due_ms`.
fn claim(
    tx: &Connection,
    leases: &Mutex<Leases>,
    handoff: &Handoff,
    now_ms: i64,
    limit: usize,
    lease_ms: i64,
) -> rusqlite::Result<Claim> {
    let mut leases = lock(leases);
    leases.expire(now_ms);
    let mut scan = tx.prepare_cached(CLAIM_SCAN)?;
    let mut chosen: Vec<i64> = Vec::with_capacity(limit);
    let mut next_due_ms = None;
    let mut rows = scan.query([(limit + leases.until.len() + 1) as i64])?;
    while let Some(row) = rows.next()? {
        let rowid: i64 = row.get(0)?;
        if leases.until.contains_key(&rowid) {
            continue;
        }
        let due: i64 = row.get(1)?;
        if due > now_ms || chosen.len() == limit {
            next_due_ms = Some(due.max(now_ms));
            break;
        }
        chosen.push(rowid);
    }
    drop(rows);
    // Nothing more is due now: the drain keeps up, and ingest may hand over again.
    let caught_up = next_due_ms.is_none_or(|due| due > now_ms);
    if next_due_ms.is_none() {
        // Everything pending is claimed or in flight: the next thing due is a lease ending
        // (a lease held until its record never ends by itself).
        next_due_ms = leases
            .until
            .values()
            .copied()
            .filter(|&u| u != i64::MAX)
            .min();
    }
    let until = now_ms.saturating_add(lease_ms);
    let mut load = tx.prepare_cached(
        "SELECT d.id, d.subscription_id, d.attempts, d.run_start, e.id, e.type, e.created_at, e.data, e.traceparent
         FROM deliveries d JOIN events e ON e.seq = d.event_seq WHERE d.rowid = ?1",
    )?;
    let mut deliveries = chosen
        .into_iter()
        .map(|rowid| {
            load.query_row([rowid], |r| {
                let id: String = r.get(0)?;
                let attempts: u32 = r.get(2)?;
                let run_start: u32 = r.get(3)?;
                leases.take(id.clone(), rowid, until);
                Ok(ClaimedDelivery {
                    id,
                    subscription_id: r.get(1)?,
                    attempts,
                    attempts_this_run: attempts.saturating_sub(run_start),
                    event: Event {
                        id: r.get(4)?,
                        kind: r.get(5)?,
                        created_at_ms: r.get(6)?,
                        data: r.get(7)?,
                        traceparent: r.get(8)?,
                    },
                })
            })
        })
        .collect::<rusqlite::Result<Vec<_>>>()?;
    if caught_up && deliveries.len() < limit {
        // Handed over before a write disarmed the hand-off: next in line, and nobody
        // would wake the scheduler for them.
        if let Some((ready, rowids)) = handoff.take(limit - deliveries.len()) {
            for rowid in rowids {
                leases.end_at(rowid, until);
            }
            deliveries.extend(ready);
        }
    }
    let lease_ends = leases.until.values().copied().min().unwrap_or(i64::MAX);
    let trust_until = now_ms.saturating_add(HANDOFF_TRUST_MS);
    handoff.arm(
        caught_up,
        next_due_ms
            .unwrap_or(i64::MAX)
            .min(lease_ends)
            .min(trust_until),
    );
    Ok(Claim {
        deliveries,
        next_due_ms,
    })
}

/// Records attempts. A delivery leased by a claim is found by its rowid, read from
/// `leases`, and one recorded without a claim by its id; either way the row must still
/// carry the id, in case a purge freed the rowid meanwhile.
fn record(tx: &Connection, records: &[AttemptRecord], leases: &Leases) -> rusqlite::Result<()> {
    let mut insert = tx.prepare_cached(
        "INSERT OR REPLACE INTO attempts (delivery_id, attempt, started_at, latency_us, status_code, error, response_body, plugin_version)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    // Only a pending delivery moves on: one cancelled (its subscription deleted) while its
    // attempt ran stays cancelled.
    let mut update = tx.prepare_cached(
        "UPDATE deliveries SET status = ?2, attempts = ?3, next_attempt_at = ?4,
             last_error = ?5, last_status = COALESCE(?6, last_status), updated_at = ?7, parked_on = NULL
         WHERE rowid = COALESCE(?8, (SELECT rowid FROM deliveries WHERE id = ?1))
           AND id = ?1 AND status = 'pending'",
    )?;
    let mut wait = tx.prepare_cached(
        "UPDATE deliveries SET next_attempt_at = ?2, last_error = ?3, updated_at = ?4, parked_on = ?5
         WHERE rowid = COALESCE(?6, (SELECT rowid FROM deliveries WHERE id = ?1))
           AND id = ?1 AND status = 'pending'",
    )?;
    let mut cancel = tx.prepare_cached(
        "UPDATE deliveries SET status = 'cancelled', last_error = ?2, updated_at = ?3, parked_on = NULL
         WHERE rowid = COALESCE(?4, (SELECT rowid FROM deliveries WHERE id = ?1))
           AND id = ?1 AND status = 'pending'",
    )?;
    // A first attempt that delivered: `update` and the attempt in one row write.
    let mut delivered_first = tx.prepare_cached(
        "UPDATE deliveries SET status = 'delivered', attempts = 1, next_attempt_at = ?2,
             last_error = NULL, last_status = ?3, updated_at = ?2, parked_on = NULL,
             first_started_at = ?4, first_latency_us = ?5, first_status = ?3,
             first_response_body = ?6, first_plugin_version = ?7
         WHERE rowid = COALESCE(?8, (SELECT rowid FROM deliveries WHERE id = ?1))
           AND id = ?1 AND status = 'pending'",
    )?;
    // A delivery no longer pending (cancelled while its attempt ran) keeps its state, but
    // the attempt counts, so that a retry by hand never numbers an attempt again; the
    // first attempt's columns are kept as `insert` keeps any other.
    let mut count = tx.prepare_cached(
        "UPDATE deliveries SET attempts = MAX(attempts, ?2)
         WHERE rowid = COALESCE(?3, (SELECT rowid FROM deliveries WHERE id = ?1)) AND id = ?1",
    )?;
    let mut count_first = tx.prepare_cached(
        "UPDATE deliveries SET attempts = MAX(attempts, 1), first_started_at = ?4,
             first_latency_us = ?5, first_status = ?3, first_response_body = ?6,
             first_plugin_version = ?7
         WHERE rowid = COALESCE(?8, (SELECT rowid FROM deliveries WHERE id = ?1)) AND id = ?1",
    )?;
    for r in records {
        let now = r.started_at_ms + (r.latency_us / 1000) as i64;
        let rowid = leases.rows.get(&r.delivery_id);
        let (status, next_at) = match r.next {
            NextState::WaitUntil(at) => {
                wait.execute(params![r.delivery_id, at, r.error, now, r.parked_on, rowid])?;
                continue;
            }
            NextState::Cancelled => {
                cancel.execute(params![r.delivery_id, r.error, now, rowid])?;
                continue;
            }
            NextState::Delivered if folds_into_delivery(r) => {
                let first = params![
                    r.delivery_id,
                    now,
                    r.status_code,
                    r.started_at_ms,
                    r.latency_us as i64,
                    r.response_body,
                    r.plugin_version,
                    rowid
                ];
                // `count_first` takes the same values, all but the time (`?2`).
                if delivered_first.execute(first)? == 0 {
                    count_first.execute(first)?;
                }
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
        let updated = update.execute(params![
            r.delivery_id,
            status.as_str(),
            r.attempt,
            next_at,
            r.error,
            r.status_code,
            now,
            rowid
        ])?;
        if updated == 0 {
            count.execute(params![r.delivery_id, r.attempt, rowid])?;
        }
    }
    record_health(tx, records)
}

/// Whether `record` is kept in its delivery's `first_*` columns (see [`SCHEMA`]): a first
/// attempt that delivered, with no error to keep.
fn folds_into_delivery(record: &AttemptRecord) -> bool {
    record.attempt == 1 && matches!(record.next, NextState::Delivered) && record.error.is_none()
}

/// Whether a delivery in `status`, created at `created`, may go under `cutoffs`.
pub(super) fn purgeable(status: &str, created: i64, cutoffs: &PurgeCutoffs) -> bool {
    let before = match status {
        "delivered" | "skipped" | "cancelled" => cutoffs.finished_before,
        "dead_letter" => cutoffs.dead_before,
        _ => None,
    };
    before.is_some_and(|before| created < before)
}

/// Applies a batch's health deltas (see `health::fold`).
fn record_health(tx: &Connection, records: &[AttemptRecord]) -> rusqlite::Result<()> {
    let deltas = fold(records);
    if deltas.is_empty() {
        return Ok(());
    }
    let mut health = tx.prepare_cached(
        "INSERT INTO subscription_health (subscription_id, last_attempt_at, last_success, last_status,
             last_error, last_success_at, consecutive_failures, failing_since)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (subscription_id) DO UPDATE SET
             last_attempt_at = excluded.last_attempt_at, last_success = excluded.last_success,
             last_status = COALESCE(excluded.last_status, last_status), last_error = excluded.last_error,
             last_success_at = COALESCE(excluded.last_success_at, last_success_at),
             consecutive_failures = CASE WHEN excluded.last_success_at IS NULL
                 THEN consecutive_failures + excluded.consecutive_failures ELSE excluded.consecutive_failures END,
             failing_since = CASE WHEN excluded.last_success_at IS NULL
                 THEN COALESCE(failing_since, excluded.failing_since) ELSE excluded.failing_since END",
    )?;
    let mut stats = tx.prepare_cached(
        "INSERT INTO subscription_stats (subscription_id, hour, succeeded, failed) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (subscription_id, hour) DO UPDATE SET
             succeeded = succeeded + excluded.succeeded, failed = failed + excluded.failed",
    )?;
    for d in deltas {
        health.execute(params![
            d.subscription_id,
            d.last_attempt_at,
            d.last_success,
            d.last_status,
            d.last_error,
            d.last_success_at,
            d.trailing_failures,
            d.first_trailing_failure_at
        ])?;
        for (hour, ok, failed) in &d.buckets {
            stats.execute(params![d.subscription_id, hour, ok, failed])?;
        }
    }
    Ok(())
}

/// A new store in a temporary folder holding `n` events of 8 KiB with no delivery,
/// created at 1 ms after the epoch: rows that fill overflow pages, purgeable at once, for
/// tests of giving space back.
#[cfg(test)]
pub(crate) async fn store_with_padded_events(n: usize) -> (tempfile::TempDir, EmbeddedStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(dir.path(), now_ms()).expect("open");
    let padded = |i: usize| NewEvent {
        event: Event {
            id: format!("evt_{i}"),
            kind: "host.up".into(),
            created_at_ms: 1,
            data: format!("{{\"pad\":\"{}\"}}", "x".repeat(8 << 10)),
            traceparent: None,
        },
        deliveries: Vec::new(),
    };
    store
        .ingest((0..n).map(padded).collect())
        .await
        .expect("ingest");
    (dir, store)
}

/// Writes a store in the first layout (text keys, none of the added columns) to `dir`,
/// with two events and their deliveries, then runs `extra`.
#[cfg(test)]
pub(super) fn store_before_integer_keys(dir: &Path, extra: &str) {
    let old = Connection::open(dir.join("wasmhook.db")).expect("create");
    old.execute_batch(&format!(
        "CREATE TABLE events (id TEXT PRIMARY KEY, type TEXT NOT NULL, created_at INTEGER NOT NULL,
                              data TEXT NOT NULL, delivery_count INTEGER NOT NULL);
         CREATE TABLE deliveries (id TEXT PRIMARY KEY, event_id TEXT NOT NULL,
             event_type TEXT NOT NULL, subscription_id TEXT NOT NULL, status TEXT NOT NULL,
             attempts INTEGER NOT NULL DEFAULT 0, run_start INTEGER NOT NULL DEFAULT 0,
             next_attempt_at INTEGER NOT NULL, leased INTEGER NOT NULL DEFAULT 0,
             last_error TEXT, last_status INTEGER, parked_on TEXT,
             created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
         CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
         CREATE INDEX deliveries_event ON deliveries (event_id);
         CREATE TABLE subscriptions (id TEXT PRIMARY KEY, source TEXT NOT NULL, spec TEXT NOT NULL,
             enabled INTEGER NOT NULL, disabled_reason TEXT, created_at INTEGER NOT NULL,
             updated_at INTEGER NOT NULL);
         CREATE TABLE attempts (delivery_id TEXT NOT NULL, attempt INTEGER NOT NULL,
             started_at INTEGER NOT NULL, latency_us INTEGER NOT NULL, status_code INTEGER,
             error TEXT, response_body TEXT, plugin_version TEXT,
             PRIMARY KEY (delivery_id, attempt)) WITHOUT ROWID;
         INSERT INTO events (rowid, id, type, created_at, data, delivery_count)
         VALUES (7, 'evt_old', 'a.b', 1, '{{}}', 1), (9, 'evt_due', 'a.c', 2, '{{\"n\":1}}', 1);
         INSERT INTO deliveries (rowid, id, event_id, event_type, subscription_id, status,
             next_attempt_at, created_at, updated_at)
         VALUES (3, 'msg_old', 'evt_old', 'a.b', 's', 'delivered', 1, 1, 1),
                (5, 'msg_due', 'evt_due', 'a.c', 's', 'pending', 2, 2, 2);
         {extra}"
    ))
    .expect("old schema");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store-like connection with one table, `t`, for the batch tests.
    fn table_t() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().expect("temp dir");
        let conn = open_connection(&dir.path().join("batch.db")).expect("open");
        conn.execute_batch("CREATE TABLE t (n INTEGER PRIMARY KEY)")
            .expect("table");
        (dir, conn)
    }

    /// A job that inserts `n` into `t` and answers `n`.
    fn insert_into_t(n: i64) -> (DurableJob, Answer<i64>) {
        durable_job(
            move |c: &Connection| c.execute("INSERT INTO t VALUES (?1)", [n]).map(|_| (n, ())),
            |()| {},
            Trouble::default(),
        )
    }

    /// Runs a batch's answers as the writer does when it need not wait for a sync.
    fn answer_all(replies: Vec<Reply>) {
        for reply in replies {
            reply(Ok(()));
        }
    }

    /// When SQLite rolls the whole transaction back under a job (a full disk does), no
    /// later job runs outside it: every job of the batch is told it failed, and none of
    /// their writes is committed.
    #[test]
    fn a_batch_whose_transaction_sqlite_rolled_back_commits_nothing() {
        let (_dir, mut conn) = table_t();
        let (first, mut first_answer) = insert_into_t(1);
        // Ends the transaction as SQLite does on SQLITE_FULL, then fails.
        let (losing, mut losing_answer) = durable_job(
            |c: &Connection| {
                c.execute_batch("ROLLBACK")?;
                c.execute("INSERT INTO missing VALUES (1)", [])
                    .map(|_| ((), ()))
            },
            |()| {},
            Trouble::default(),
        );
        let (last, mut last_answer) = insert_into_t(3);
        let (committed, replies) =
            run_batch(&mut conn, vec![first, losing, last], &Trouble::default());
        assert!(!committed);
        answer_all(replies);
        assert!(first_answer.try_recv().expect("answered").is_err());
        assert!(losing_answer.try_recv().expect("answered").is_err());
        assert!(last_answer.try_recv().expect("answered").is_err());
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("count");
        assert_eq!(rows, 0);
        assert!(conn.is_autocommit(), "no transaction is left open");
    }

    /// A failing job takes back only its own changes: the batch is rolled back and run
    /// again with a savepoint per job, and the other jobs commit with their answers.
    #[test]
    fn a_failing_job_in_a_batch_takes_back_only_its_own_writes() {
        let (_dir, mut conn) = table_t();
        let (first, first_answer) = insert_into_t(1);
        // Writes a row, then fails: its row must not be committed.
        let (failing, mut failing_answer) = durable_job(
            |c: &Connection| {
                c.execute("INSERT INTO t VALUES (2)", [])?;
                c.execute("INSERT INTO t VALUES (1)", []).map(|_| ((), ()))
            },
            |()| {},
            Trouble::default(),
        );
        let (last, last_answer) = insert_into_t(3);
        let (committed, replies) =
            run_batch(&mut conn, vec![first, failing, last], &Trouble::default());
        assert!(committed);
        answer_all(replies);
        let answer = |mut rx: Answer<i64>| rx.try_recv().expect("answered").expect("committed");
        assert_eq!(answer(first_answer), 1);
        assert_eq!(answer(last_answer), 3);
        assert!(failing_answer.try_recv().expect("answered").is_err());
        let rows: Vec<i64> = conn
            .prepare("SELECT n FROM t ORDER BY n")
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        assert_eq!(rows, vec![1, 3]);
    }

    /// The claim's query binds its `LIMIT`, whose value changes from claim to claim; a
    /// cached statement must keep its plan instead of being parsed again each time.
    #[test]
    fn a_changing_bound_limit_does_not_prepare_the_statement_again() {
        let dir = tempfile::tempdir().expect("temp dir");
        let conn = open_connection(&dir.path().join("wasmhook.db")).expect("open");
        conn.execute_batch(SCHEMA).expect("schema");
        for limit in 1..20_i64 {
            let mut stmt = conn.prepare_cached(CLAIM_SCAN).expect("prepare");
            let rows: Vec<i64> = stmt
                .query_map([limit], |r| r.get(0))
                .expect("query")
                .collect::<Result<_, _>>()
                .expect("rows");
            assert!(rows.is_empty());
        }
        let stmt = conn.prepare_cached(CLAIM_SCAN).expect("prepare");
        assert_eq!(
            stmt.get_status(rusqlite::StatementStatus::RePrepare),
            0,
            "the statement was prepared again for new LIMIT values"
        );
    }

    /// The claim walks past every delivery in flight to find due ones; reading the due
    /// index alone (rowids, not rows) keeps that walk cheap however many are in flight.
    #[test]
    fn the_claim_scan_reads_the_due_index_alone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let conn = open_connection(&dir.path().join("wasmhook.db")).expect("open");
        conn.execute_batch(SCHEMA).expect("schema");
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {CLAIM_SCAN}"))
            .expect("prepare")
            .query_map([10_i64], |r| r.get(3))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("plan");
        assert_eq!(
            plan,
            ["SCAN deliveries USING COVERING INDEX deliveries_due"]
        );
    }

    fn fresh(id: &str) -> NewEvent {
        NewEvent {
            event: Event {
                id: id.into(),
                kind: "host.up".into(),
                created_at_ms: now_ms(),
                data: format!("{{\"event\":\"{id}\"}}"),
                traceparent: None,
            },
            deliveries: vec![super::super::NewDelivery {
                id: format!("msg_{id}"),
                subscription_id: "s".into(),
            }],
        }
    }

    /// A first attempt of `id` that failed and moves on to `next`.
    fn failed(id: &str, next: NextState) -> AttemptRecord {
        AttemptRecord {
            receiver: Some(false),
            status_code: Some(500),
            error: Some("HTTP 500".into()),
            next,
            ..delivered(id)
        }
    }

    /// A first attempt of `id` that delivered.
    fn delivered(id: &str) -> AttemptRecord {
        AttemptRecord {
            delivery_id: id.into(),
            subscription_id: "s".into(),
            receiver: Some(true),
            attempt: 1,
            started_at_ms: now_ms(),
            latency_us: 900,
            status_code: Some(200),
            error: None,
            response_body: None,
            plugin_version: None,
            next: NextState::Delivered,
            parked_on: None,
        }
    }

    fn ids(claim: &Claim) -> Vec<&str> {
        claim.deliveries.iter().map(|d| d.id.as_str()).collect()
    }

    fn ready(store: &EmbeddedStore) -> usize {
        lock(&store.inner.handoff.ready).len()
    }

    const LEASE: Duration = Duration::from_secs(60);

    /// The ids a claim at `at` gets.
    async fn claimed(store: &EmbeddedStore, at: i64) -> Vec<String> {
        let claim = store.claim_due(at, 10, LEASE).await.expect("claim");
        claim.deliveries.into_iter().map(|d| d.id).collect()
    }

    /// A new store whose hand-off a first claim armed, holding `fresh("e1")`; and the time.
    async fn armed_with_e1() -> (tempfile::TempDir, EmbeddedStore, i64) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = EmbeddedStore::open(dir.path(), now_ms()).expect("open");
        let now = now_ms();
        store.claim_due(now, 10, LEASE).await.expect("claim");
        store.ingest(vec![fresh("e1")]).await.expect("ingest");
        (dir, store, now)
    }

    /// While the drain keeps up, an ingest hands its fresh delivery to the next claim
    /// from memory; it is handed out once, and its record finds it.
    #[tokio::test]
    async fn a_fresh_delivery_goes_from_its_ingest_to_the_next_claim_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = EmbeddedStore::open(dir.path(), now_ms()).expect("open");
        let empty = store.claim_due(now_ms(), 10, LEASE).await.expect("claim");
        assert!(empty.deliveries.is_empty());
        store.ingest(vec![fresh("e1")]).await.expect("ingest");
        assert_eq!(ready(&store), 1, "the fresh delivery waits in the hand-off");
        let claim = store.claim_due(now_ms(), 10, LEASE).await.expect("claim");
        assert_eq!(ids(&claim), ["msg_e1"]);
        assert_eq!(claim.deliveries[0].event.data, "{\"event\":\"e1\"}");
        assert_eq!(ready(&store), 0);
        let again = store.claim_due(now_ms(), 10, LEASE).await.expect("claim");
        assert!(again.deliveries.is_empty(), "handed out twice");
        store
            .record(vec![delivered("msg_e1")])
            .await
            .expect("record");
        let detail = store
            .delivery("msg_e1")
            .await
            .expect("read")
            .expect("found");
        assert_eq!(detail.delivery.status, DeliveryStatus::Delivered);
        let after = store.claim_due(now_ms(), 10, LEASE).await.expect("claim");
        assert!(after.deliveries.is_empty());
    }

    /// Fresh deliveries never overtake due ones: ingest hands over only after a claim on
    /// the writer found nothing more due.
    #[tokio::test]
    async fn fresh_deliveries_wait_behind_a_backlog() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = EmbeddedStore::open(dir.path(), now_ms()).expect("open");
        for id in ["e1", "e2", "e3"] {
            store.ingest(vec![fresh(id)]).await.expect("ingest");
        }
        assert_eq!(ready(&store), 0, "no claim has run yet");
        let first = store.claim_due(now_ms(), 1, LEASE).await.expect("claim");
        assert_eq!(ids(&first), ["msg_e1"]);
        store.ingest(vec![fresh("e4")]).await.expect("ingest");
        assert_eq!(ready(&store), 0, "e2 and e3 are due before it");
        let rest = store.claim_due(now_ms(), 10, LEASE).await.expect("claim");
        assert_eq!(ids(&rest), ["msg_e2", "msg_e3", "msg_e4"]);
        store.ingest(vec![fresh("e5")]).await.expect("ingest");
        assert_eq!(ready(&store), 1, "the drain has caught up");
        let next = store.claim_due(now_ms(), 10, LEASE).await.expect("claim");
        assert_eq!(ids(&next), ["msg_e5"]);
        store.ingest(vec![fresh("e6")]).await.expect("ingest");
        assert_eq!(
            ready(&store),
            1,
            "nothing else is due: the hand-off stays armed"
        );
        let now = now_ms();
        store
            .record(vec![failed("msg_e5", NextState::RetryAt(now))])
            .await
            .expect("record");
        let retry = store.claim_due(now, 10, LEASE).await.expect("claim");
        assert_eq!(
            ids(&retry),
            ["msg_e5", "msg_e6"],
            "the due retry goes first"
        );
    }

    /// While the hand-off holds everything due, a claim that finds it empty is answered
    /// from memory, without a trip to the writer: a row written behind the store's back
    /// (no write of the store's makes a delivery due without saying so) stays unseen until
    /// the hand-off's trust runs out.
    #[tokio::test]
    async fn an_empty_hand_off_answers_claims_from_memory_until_its_trust_runs_out() {
        let (_dir, store, now) = armed_with_e1().await;
        let behind = Connection::open(store.path()).expect("open");
        behind
            .execute(
                "INSERT INTO deliveries (id, event_seq, event_type, subscription_id, status, next_attempt_at, created_at, updated_at)
                 SELECT 'msg_behind', seq, type, 's', 'pending', ?1, ?1, ?1 FROM events",
                [now],
            )
            .expect("write behind the store's back");
        let claim = store.claim_due(now, 10, LEASE).await.expect("claim");
        assert_eq!(ids(&claim), ["msg_e1"]);
        let empty = store.claim_due(now, 10, LEASE).await.expect("claim");
        assert!(empty.deliveries.is_empty(), "went to the writer");
        assert!(
            empty
                .next_due_ms
                .is_some_and(|due| due <= now + HANDOFF_TRUST_MS),
            "{:?}",
            empty.next_due_ms
        );
        let later = store
            .claim_due(now + HANDOFF_TRUST_MS, 10, LEASE)
            .await
            .expect("claim");
        assert_eq!(ids(&later), ["msg_behind"], "the safety net");
    }

    /// What makes a delivery due outside the hand-off sends the next claim to the writer:
    /// a write such as an unpark at once, an event created in the future at its time.
    #[tokio::test]
    async fn writes_that_make_deliveries_due_send_the_next_claim_to_the_writer() {
        let (_dir, store, now) = armed_with_e1().await;
        let claim = store.claim_due(now, 10, LEASE).await.expect("claim");
        assert_eq!(ids(&claim), ["msg_e1"]);
        let mut parked = failed("msg_e1", NextState::WaitUntil(now + 3_600_000));
        parked.parked_on = Some("plugin:p".into());
        store.record(vec![parked]).await.expect("record");
        assert!(claimed(&store, now).await.is_empty());
        assert_eq!(store.unpark("plugin:p", now).await.expect("unpark"), 1);
        let resumed = store.claim_due(now, 10, LEASE).await.expect("claim");
        assert_eq!(
            ids(&resumed),
            ["msg_e1"],
            "the unpark did not disarm the hand-off"
        );

        let mut future = fresh("e2");
        future.event.created_at_ms = now + 5_000;
        store.ingest(vec![future]).await.expect("ingest");
        assert_eq!(ready(&store), 0, "not due yet");
        assert!(claimed(&store, now).await.is_empty());
        let due = store
            .claim_due(now + 5_000, 10, LEASE)
            .await
            .expect("claim");
        assert_eq!(
            ids(&due),
            ["msg_e2"],
            "found only when the hand-off's trust ran out"
        );
    }

    /// Deliveries handed over before a write disarmed the hand-off are not left waiting:
    /// the claim on the writer that finds nothing else due takes them.
    #[tokio::test]
    async fn deliveries_handed_over_before_a_disarming_write_are_claimed_next() {
        let (_dir, store, now) = armed_with_e1().await;
        assert_eq!(ready(&store), 1);
        assert_eq!(store.unpark("nothing", now).await.expect("unpark"), 0);
        let claim = store.claim_due(now, 10, LEASE).await.expect("claim");
        assert_eq!(
            ids(&claim),
            ["msg_e1"],
            "the scheduler would sleep with e1 ready"
        );
    }

    /// What `ingest_announcing` runs at the commit runs before the scheduler is poked or
    /// the deliveries are handed over, so the feed shows an event before its outcomes.
    #[tokio::test]
    async fn an_ingest_announces_before_its_deliveries_can_be_claimed() {
        let (_dir, store, _now) = armed_with_e1().await;
        let poked = store.ingest_commits().expect("the embedded store pokes");
        poked.notified().await;
        let seen = Arc::new(Mutex::new(None));
        let inner = Arc::clone(&store.inner);
        let record = Arc::clone(&seen);
        let announce: Committed = Box::new(move |results: &[IngestResult]| {
            let not_yet_poked =
                futures_util::FutureExt::now_or_never(inner.ingested.notified()).is_none();
            let ready = lock(&inner.handoff.ready).len();
            let ids: Vec<String> = results.iter().map(|r| r.id.clone()).collect();
            *lock(&record) = Some((not_yet_poked, ready, ids));
        });
        store
            .ingest_announcing(vec![fresh("e2")], announce)
            .await
            .expect("ingest");
        assert_eq!(
            lock(&seen).take(),
            Some((true, 1, vec!["e2".to_owned()])),
            "announced after the poke or the hand-over (only e1 was ready)"
        );
        assert_eq!(ready(&store), 2);
    }

    /// The store pokes `ingest_commits` at an ingest's commit, so the ingest service
    /// leaves the scheduler alone.
    #[tokio::test]
    async fn an_ingest_pokes_the_scheduler_at_its_commit() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = EmbeddedStore::open(dir.path(), now_ms()).expect("open");
        let poked = store.ingest_commits().expect("the embedded store pokes");
        store.ingest(vec![fresh("e1")]).await.expect("ingest");
        assert!(
            futures_util::FutureExt::now_or_never(poked.notified()).is_some(),
            "not poked"
        );
    }

    /// A handed-off delivery's lease ends like a claimed one's, so an attempt that never
    /// records does not strand it; a lease shorter than the hand-off's trust ends it.
    #[tokio::test]
    async fn a_handed_off_lease_ends_like_a_claimed_one() {
        let (_dir, store, now) = armed_with_e1().await;
        let short = Duration::from_secs(1);
        let claim = store.claim_due(now, 10, short).await.expect("claim");
        assert_eq!(ids(&claim), ["msg_e1"]);
        let later = now + short.as_millis() as i64 + 1;
        let again = store.claim_due(later, 10, LEASE).await.expect("claim");
        assert_eq!(ids(&again), ["msg_e1"], "the lease never ended");
    }

    /// Purges every event `store_with_padded_events` made; how many went.
    async fn purge_padded(store: &EmbeddedStore) -> u64 {
        let all = PurgeCutoffs {
            events_before: Some(2),
            ..PurgeCutoffs::default()
        };
        let purged = store.purge_events(all, None, 1000).await.expect("purge");
        purged.deleted
    }

    /// A new store gives purged pages back to the file system from its first run, not only
    /// after a restart rewrote it: incremental vacuum has to be chosen before the first page
    /// is written, and switching to WAL writes it. And one reclaim gives back up to its
    /// 4,096 pages, not one: each step of `PRAGMA incremental_vacuum` frees a single page.
    #[tokio::test]
    async fn a_new_store_gives_purged_pages_back_without_a_restart() {
        let (_dir, store) = store_with_padded_events(400).await;
        let pages = |store: &EmbeddedStore| {
            let conn = Connection::open(store.path()).expect("open");
            conn.query_row("PRAGMA page_count", [], |r| r.get::<_, i64>(0))
                .expect("pages")
        };
        let full = pages(&store);
        assert_eq!(purge_padded(&store).await, 400);
        assert!(!store.reclaim().await.expect("reclaim"), "all in one step");
        let after = pages(&store);
        assert!(
            after < full / 4,
            "the file kept its pages: {after} of {full} after the purge"
        );
    }

    /// A store without incremental vacuum (a large one from before it) frees nothing in a
    /// reclaim step, and says there is nothing more to do: retention would loop otherwise.
    #[tokio::test]
    async fn reclaim_asks_for_no_more_steps_where_it_cannot_free_pages() {
        let (_dir, store) = store_with_padded_events(20).await;
        let conn = Connection::open(store.path()).expect("open");
        conn.execute_batch("PRAGMA auto_vacuum = NONE; VACUUM;")
            .expect("no vacuum");
        assert_eq!(purge_padded(&store).await, 20);
        let free: i64 = conn
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))
            .expect("free");
        assert!(free > 0, "the purge left no free page to test with");
        assert!(!store.reclaim().await.expect("reclaim"));
    }

    /// A store from before the integer keys (here the first layout, from before the added
    /// columns too) is rebuilt at open with every row, rowid and column kept.
    #[tokio::test]
    async fn a_store_from_before_the_integer_keys_is_rebuilt_and_keeps_its_rows() {
        let dir = tempfile::tempdir().expect("temp dir");
        store_before_integer_keys(dir.path(), "");
        let store = EmbeddedStore::open(dir.path(), now_ms()).expect("opens and rebuilds");
        let delivered = store
            .delivery("msg_old")
            .await
            .expect("read")
            .expect("kept");
        assert_eq!(
            (
                delivered.delivery.event_id.as_str(),
                delivered.delivery.status
            ),
            ("evt_old", DeliveryStatus::Delivered)
        );
        let listed = store
            .list_deliveries(DeliveryFilter {
                event_id: Some("evt_due".into()),
                limit: 10,
                ..DeliveryFilter::default()
            })
            .await
            .expect("list by event");
        assert_eq!(
            listed.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            ["msg_due"]
        );
        let claim = store.claim_due(now_ms(), 10, LEASE).await.expect("claim");
        assert_eq!(ids(&claim), ["msg_due"]);
        assert_eq!(
            (
                claim.deliveries[0].event.id.as_str(),
                claim.deliveries[0].event.data.as_str()
            ),
            ("evt_due", "{\"n\":1}")
        );
        drop(store);
        let conn = Connection::open(dir.path().join("wasmhook.db")).expect("reopen");
        let rows: Vec<(i64, String, i64, Option<String>)> = conn
            .prepare(
                "SELECT d.rowid, d.id, d.event_seq, e.traceparent FROM deliveries d
                 JOIN events e ON e.seq = d.event_seq ORDER BY d.rowid",
            )
            .expect("the new layout")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(
            rows,
            [
                (3, "msg_old".to_owned(), 7, None),
                (5, "msg_due".to_owned(), 9, None)
            ]
        );
        let left: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_schema WHERE name LIKE '%by_text%'",
                [],
                |r| r.get(0),
            )
            .expect("schema");
        assert_eq!(left, 0, "the old tables are gone");
        let vacuum: i64 = conn
            .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
            .expect("mode");
        assert_eq!(vacuum, 2, "rewritten with incremental vacuum");
        // Opening again finds the new layout and leaves it.
        drop(EmbeddedStore::open(dir.path(), 0).expect("opens again"));
    }

    /// A delivery whose event is missing stops the rebuild, which leaves the store as it
    /// was rather than drop the delivery.
    #[test]
    fn a_rebuild_that_would_lose_a_delivery_leaves_the_store_as_it_was() {
        let dir = tempfile::tempdir().expect("temp dir");
        store_before_integer_keys(
            dir.path(),
            "INSERT INTO deliveries (id, event_id, event_type, subscription_id, status,
                 next_attempt_at, created_at, updated_at)
             VALUES ('msg_orphan', 'evt_gone', 'a.b', 's', 'pending', 1, 1, 1);",
        );
        let err = EmbeddedStore::open(dir.path(), 0).expect_err("refuses to rebuild");
        assert!(
            err.to_string()
                .contains("deliveries point to events it does not have (msg_orphan)"),
            "{err}"
        );
        let conn = Connection::open(dir.path().join("wasmhook.db")).expect("reopen");
        let (deliveries, has_seq): (i64, bool) = conn
            .query_row(
                "SELECT (SELECT COUNT(*) FROM deliveries),
                        (SELECT COUNT(*) > 0 FROM pragma_table_info('events') WHERE name = 'seq')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("the old layout");
        assert_eq!((deliveries, has_seq), (3, false));
    }

    /// A first attempt that delivered is kept in its delivery row, not in `attempts`; a
    /// first attempt that failed is a row of `attempts`.
    #[tokio::test]
    async fn a_first_attempt_that_delivered_writes_no_attempts_row() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = EmbeddedStore::open(dir.path(), now_ms()).expect("open");
        store
            .ingest(vec![fresh("e1"), fresh("e2")])
            .await
            .expect("ingest");
        let claim = store.claim_due(now_ms(), 10, LEASE).await.expect("claim");
        assert_eq!(claim.deliveries.len(), 2);
        let outcome = |id: &str, next, status_code, error: Option<&str>| AttemptRecord {
            delivery_id: id.into(),
            subscription_id: "s".into(),
            receiver: Some(error.is_none()),
            attempt: 1,
            started_at_ms: now_ms(),
            latency_us: 900,
            status_code: Some(status_code),
            error: error.map(Into::into),
            response_body: Some("ok".into()),
            plugin_version: None,
            next,
            parked_on: None,
        };
        store
            .record(vec![
                outcome("msg_e1", NextState::Delivered, 200, None),
                outcome(
                    "msg_e2",
                    NextState::RetryAt(now_ms() + 60_000),
                    503,
                    Some("503"),
                ),
            ])
            .await
            .expect("record");
        let conn = Connection::open(dir.path().join("wasmhook.db")).expect("reopen");
        let rows: Vec<(String, Option<i64>)> = conn
            .prepare(
                "SELECT d.id, (SELECT COUNT(*) FROM attempts a WHERE a.delivery_id = d.id)
                 FROM deliveries d WHERE d.first_started_at IS NOT NULL
                 UNION ALL SELECT delivery_id, NULL FROM attempts ORDER BY 1",
            )
            .expect("prepare")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(
            rows,
            [("msg_e1".to_owned(), Some(0)), ("msg_e2".to_owned(), None)],
            "msg_e1 in its delivery row alone, msg_e2 in attempts"
        );
    }

    #[test]
    fn a_batch_waits_for_a_sync_when_any_of_its_jobs_must_survive_a_power_cut() {
        use Durability::{Crash, PowerCut};
        let strictest = |levels: &[Durability]| levels.iter().fold(Crash, |a, &b| a.max(b));
        assert_eq!(strictest(&[Crash, Crash]), Crash);
        assert_eq!(strictest(&[Crash, PowerCut, Crash]), PowerCut);
        assert_eq!(strictest(&[PowerCut]), PowerCut);
    }

    /// Everything the engine accepts is answered only after a sync of the WAL, and
    /// attempt records without one: the syncer's count of finished syncs shows which.
    #[tokio::test]
    async fn an_ingest_is_answered_after_a_sync_and_attempt_records_without_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = EmbeddedStore::open(dir.path(), now_ms()).expect("open");
        let syncs = || store.inner.syncer.syncs();
        let before = syncs();
        store.ingest(vec![fresh("e1")]).await.expect("ingest");
        assert_eq!(
            syncs(),
            before + 1,
            "the ingest was answered after one sync"
        );
        let claim = store.claim_due(now_ms(), 10, LEASE).await.expect("claim");
        assert_eq!(ids(&claim), ["msg_e1"]);
        store
            .record(vec![delivered("msg_e1")])
            .await
            .expect("record");
        assert_eq!(syncs(), before + 1, "records alone wait for no sync");
        let mode = store
            .immediate(|conn| conn.query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0)))
            .await
            .expect("mode");
        assert_eq!(
            mode, 1,
            "the writer commits under NORMAL and syncs beside it"
        );
    }
}
