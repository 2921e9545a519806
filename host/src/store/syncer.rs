//! The embedded store's `fsync`, beside its writer instead of inside it.
//!
//! The writer thread commits every batch with `synchronous = NORMAL`: the commit's WAL
//! frames are written through the kernel's page cache and it goes on to its next batch.
//! A batch that must survive a power cut hands its answers here, and a syncing thread
//! runs `fdatasync` on the WAL and only then answers them. WAL frames are appended in commit
//! order, so a sync that begins after a commit's frames are written covers that commit
//! and every commit before it; one sync answers every batch handed over before it began.
//! With the `fsync` inside the batch (`synchronous = FULL`), the writer sat idle in it for
//! more than half of each batch with one event per POST (docs/BENCHMARKS.md, "Single
//! POSTs wait on the disk"); now the next batch commits while this one syncs.
//!
//! A failed sync refuses the writes it held (their callers hear an error, a producer sends
//! again) and holds `/healthz` at `503` like any write the disk refused. The rows stay
//! committed in SQLite's view and their deliveries go out: a producer's retry is then a
//! duplicate, which at least once allows.
//!
//! What a caller is promised does not change: an ingest's `202` still comes after its
//! event is on disk. What runs at the commit, on the writer, still runs there: the leases
//! and the hand-off of fresh deliveries (`write_then`), so no claim sees a committed
//! delivery unleased. A receiver may therefore get an event before its producer's answer;
//! after a power cut in between, the engine has lost an event it already delivered and
//! the producer, who heard no `202`, sends it again: at least once, as a crash mid-attempt
//! already is.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Instant;

use prometheus_client::metrics::histogram::Histogram;

use super::StoreError;

/// Tells one caller how its write went, given whether the sync after it succeeded.
pub(super) type Reply = Box<dyn FnOnce(Result<(), &StoreError>) + Send>;

/// A committed batch waiting for its sync: when it started (for `commits`) and its answers.
struct Committed {
    started: Instant,
    replies: Vec<Reply>,
}

/// Threads syncing the WAL beside the writer. One thread cannot begin a sync while its
/// last one runs, so a batch committed during a sync waited for that sync and then its own,
/// one and a half syncs on average, as when the writer synced each batch itself: one thread
/// measured no faster than that. With two, a batch's sync usually begins at once (6%
/// more single-event POSTs delivered end to end, higher in 17 of 19 alternating rounds;
/// four threads were no faster than two). docs/BENCHMARKS.md, "The `fsync` beside the
/// writer".
const THREADS: usize = 2;

/// The syncing threads; they stop once the writer and the store drop every handle.
#[derive(Clone)]
pub(super) struct Syncer {
    tx: mpsc::Sender<Committed>,
    /// To count the syncs.
    #[cfg(test)]
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Syncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Syncer").finish_non_exhaustive()
    }
}

impl Syncer {
    /// Starts the threads: `sync` makes every write so far durable (the WAL's
    /// `fdatasync`), `failed` hears why each failed sync failed, and `commits` gets each
    /// batch's time from its start to its answers.
    pub(super) fn start(
        sync: impl Fn() -> std::io::Result<()> + Send + Sync + 'static,
        failed: impl Fn(&str) + Send + Sync + 'static,
        commits: Histogram,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Committed>();
        let shared = Arc::new(Shared {
            rx: Mutex::new(rx),
            sync: Box::new(sync),
            failed: Box::new(failed),
            commits,
            syncs: AtomicU64::new(0),
        });
        for _ in 0..THREADS {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("wasmhook-sync".into())
                .spawn(move || while shared.sync_next() {})?;
        }
        Ok(Self {
            tx,
            #[cfg(test)]
            shared,
        })
    }

    /// Answers `replies` once a sync that begins after this call has finished: the batch
    /// that started at `started` has committed.
    pub(super) fn answer_when_synced(&self, started: Instant, replies: Vec<Reply>) {
        if let Err(mpsc::SendError(batch)) = self.tx.send(Committed { started, replies }) {
            // The thread is gone (it panicked): no sync will come, so nobody is told yes.
            for reply in batch.replies {
                reply(Err(&StoreError::Closed));
            }
        }
    }

    /// Syncs finished so far, for tests.
    #[cfg(test)]
    pub(super) fn syncs(&self) -> u64 {
        self.shared.syncs.load(Ordering::Acquire)
    }
}

/// What the syncing threads share.
struct Shared {
    /// Committed batches, in commit order.
    rx: Mutex<mpsc::Receiver<Committed>>,
    sync: Box<dyn Fn() -> std::io::Result<()> + Send + Sync>,
    failed: Box<dyn Fn(&str) + Send + Sync>,
    commits: Histogram,
    syncs: AtomicU64,
}

impl Shared {
    /// Takes every batch committed so far, syncs and answers them; `false` once the
    /// writer is gone.
    fn sync_next(&self) -> bool {
        let batches: Vec<Committed> = {
            let Ok(rx) = self.rx.lock() else {
                return false;
            };
            let Ok(first) = rx.recv() else {
                return false;
            };
            // Every batch here committed before this sync begins, so it covers them all.
            std::iter::once(first).chain(rx.try_iter()).collect()
        };
        let synced = (self.sync)().map_err(|e| {
            tracing::error!(error = %e, "cannot sync the store's WAL to disk; the writes it held were refused");
            let reason = format!("cannot sync the store to disk: {e}");
            (self.failed)(&reason);
            StoreError::Database(reason)
        });
        self.syncs.fetch_add(1, Ordering::Release);
        for batch in batches {
            self.commits.observe(batch.started.elapsed().as_secs_f64());
            for reply in batch.replies {
                reply(synced.as_ref().map(|_| ()));
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One sync under way: the test ends it with its result.
    type Running = mpsc::Sender<std::io::Result<()>>;

    /// A syncer whose every sync, as it begins, sends the test a handle to end it with, so
    /// the test decides when each sync ends; and the failures it reported.
    fn gated() -> (Syncer, mpsc::Receiver<Running>, Arc<Mutex<Vec<String>>>) {
        let (began_tx, began) = mpsc::channel::<Running>();
        let failures = Arc::new(Mutex::new(Vec::new()));
        let syncer = Syncer::start(
            move || {
                let (end, ended) = mpsc::channel();
                began_tx.send(end).expect("test waits");
                ended.recv().expect("test decides")
            },
            {
                let failures = Arc::clone(&failures);
                move |reason: &str| failures.lock().expect("lock").push(reason.to_owned())
            },
            Histogram::new([0.1]),
        )
        .expect("threads");
        (syncer, began, failures)
    }

    /// A reply that sends what it was told on the returned channel.
    fn reply() -> (Reply, mpsc::Receiver<Result<(), String>>) {
        let (tx, rx) = mpsc::channel();
        let reply: Reply = Box::new(move |r| {
            let _ = tx.send(r.map_err(ToString::to_string));
        });
        (reply, rx)
    }

    #[test]
    fn a_batch_is_answered_only_after_a_sync_that_began_after_its_commit() {
        let (syncer, began, _) = gated();
        let (a, a_rx) = reply();
        syncer.answer_when_synced(Instant::now(), vec![a]);
        let first = began.recv().expect("a sync began for the first batch");
        let (b, b_rx) = reply();
        syncer.answer_when_synced(Instant::now(), vec![b]);
        let second = began.recv().expect("another began at once for the second");
        // Committed while both syncs run, neither of which may cover it.
        let (c, c_rx) = reply();
        syncer.answer_when_synced(Instant::now(), vec![c]);
        assert!(a_rx.try_recv().is_err(), "no answer before its sync ends");
        assert!(b_rx.try_recv().is_err(), "no answer before its sync ends");
        second.send(Ok(())).expect("sync ends");
        assert_eq!(b_rx.recv().expect("answered"), Ok(()));
        first.send(Ok(())).expect("sync ends");
        assert_eq!(a_rx.recv().expect("answered"), Ok(()));
        let third = began.recv().expect("a third sync began for the last batch");
        assert!(
            c_rx.try_recv().is_err(),
            "the last batch waits for its own sync"
        );
        third.send(Ok(())).expect("sync ends");
        assert_eq!(c_rx.recv().expect("answered"), Ok(()));
        assert_eq!(syncer.syncs(), 3);
    }

    #[test]
    fn a_failed_sync_refuses_the_writes_it_held_and_is_reported() {
        let (syncer, began, failures) = gated();
        let (a, a_rx) = reply();
        syncer.answer_when_synced(Instant::now(), vec![a]);
        began
            .recv()
            .expect("sync began")
            .send(Err(std::io::Error::other("disk gone")))
            .expect("sync ends");
        let answer = a_rx.recv().expect("answered");
        assert!(
            answer.as_ref().is_err_and(|e| e.contains("disk gone")),
            "{answer:?}"
        );
        assert_eq!(
            *failures.lock().expect("lock"),
            ["cannot sync the store to disk: disk gone"]
        );
    }
}
