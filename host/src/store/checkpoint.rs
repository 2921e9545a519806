//! Keeping the embedded store's WAL small: a background thread copies it into the main
//! file, and the writer lets it start again from its beginning once it has grown.
//!
//! A checkpoint that never blocks (`PASSIVE`) copies frames, but the WAL only starts again
//! from its beginning when a write begins with every frame copied and no reader on them.
//! Under a steady stream of commits that moment never comes: some commit always lands
//! while a checkpoint runs. The WAL then grew by every page ever written, about 50 MB/s
//! from one producer stream on this machine (434 MB in one 8-second run), without bound.
//! So once the checkpointer sees more than `RESTART_AT` frames, it copies until it has
//! nearly caught up and asks the writer, which between two batches runs a `RESTART`
//! checkpoint: it copies the few frames written since the last copy, waits for readers to
//! leave the old frames, and the next commit writes from the WAL's beginning, over the
//! file's old bytes: the file keeps its size (`KEPT_BYTES`). Cutting it back to 64 MiB
//! there made that first commit truncate some 200 MB of file, and it stalled for 180 to
//! 280 ms each time, which set the p99 of events at half the end-to-end peak
//! (docs/BENCHMARKS.md, "A WAL that keeps its size").

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rusqlite::Connection;

use super::embedded::BUSY_TIMEOUT;

/// How often the WAL is checkpointed into the main file.
pub(super) const EVERY: Duration = Duration::from_millis(250);

/// Frames the WAL may hold before the writer starts it again: 256 MiB of 4 KiB pages.
/// Each restart stops writes for one last copy and sync (about 20 ms here), and the
/// syncs around it slow the writer, so restarting every 64 MiB cost 11% of the batched
/// producers' rate and every 256 MiB 5% (docs/BENCHMARKS.md, "A WAL that starts again").
/// Recovery after a crash reads the whole WAL, so this bounds it too.
pub(super) const RESTART_AT: i64 = 65_536;

/// The WAL file's size beyond which SQLite cuts it back when the WAL starts again
/// (`journal_size_limit`): above what it holds at a restart (`RESTART_AT` frames of 4 KiB
/// pages with their 24-byte headers, 270 MB, plus what lands while the checkpointer
/// catches up; under 290 MB here), so a restart never truncates the file in the writer's
/// way. A WAL that grew further (a reader holding old frames for long) is still cut back
/// to this.
pub(super) const KEPT_BYTES: i64 = 320 << 20;

/// How long the writer waits for readers to leave the old frames before it gives up and
/// tries again after its next batch; every write waits while it does.
const RESTART_WAIT: Duration = Duration::from_millis(100);

/// Copies the WAL into the main file in the background (`PRAGMA wal_checkpoint(PASSIVE)`,
/// which never blocks the writer or readers), until dropped; asks the writer to start the
/// WAL again (`Restart`) once it holds more than the limit.
#[derive(Debug)]
pub(super) struct Checkpointer {
    stop: Arc<AtomicBool>,
}

impl Checkpointer {
    /// Checkpoints on `conn` every `every`, setting `restart` when the WAL holds more than
    /// `restart_at` frames.
    pub(super) fn start(
        conn: Connection,
        every: Duration,
        restart_at: i64,
        restart: Restart,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("wasmhook-checkpoint".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(every);
                    if let Err(e) = checkpoint(&conn, restart_at, &restart) {
                        tracing::warn!(error = %e, "WAL checkpoint failed; it is tried again");
                    }
                }
            })?;
        Ok(Self { stop })
    }
}

/// Passes a checkpoint makes at most to catch up with the writer before it asks for a
/// restart anyway.
const CATCH_UP_PASSES: usize = 8;

/// New frames (1 MiB) that one pass may find for the checkpoint to count as caught up.
const CAUGHT_UP: i64 = 256;

/// One background checkpoint. Past `restart_at` frames it copies again at once until a
/// pass finds few new frames, and only then asks the writer to restart the WAL: the writer
/// stops writes while it copies what is left and syncs, so the less is left, the shorter
/// the stop (asked right after the first pass, the writer stopped for up to 275 ms, while
/// it copied and synced everything written during that pass).
fn checkpoint(conn: &Connection, restart_at: i64, restart: &Restart) -> rusqlite::Result<()> {
    // (blocked, frames in the WAL, frames copied)
    let pass = || conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1));
    let mut frames = pass()?;
    for _ in 0..CATCH_UP_PASSES {
        if frames <= restart_at {
            return Ok(());
        }
        let before = frames;
        frames = pass()?;
        if frames - before <= CAUGHT_UP {
            break;
        }
    }
    if frames > restart_at {
        restart.ask();
    }
    Ok(())
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The checkpointer's request that the writer start the WAL again.
#[derive(Debug, Clone, Default)]
pub(super) struct Restart(Arc<AtomicBool>);

impl Restart {
    fn ask(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Run by the writer between batches, holding no transaction: when asked, copies the
    /// rest of the WAL and waits up to `RESTART_WAIT` for readers to leave it, so the next
    /// commit writes from its beginning. Asked again after the next batch if it could not.
    pub(super) fn run_if_asked(&self, conn: &Connection) {
        if !self.0.load(Ordering::Relaxed) {
            return;
        }
        let restarted = conn.busy_timeout(RESTART_WAIT).and_then(|()| {
            // (blocked, frames in the WAL, frames copied): 1 when readers stayed on the old
            // frames, or another checkpoint ran, for the whole wait.
            conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get::<_, i64>(0))
        });
        if let Err(e) = conn.busy_timeout(BUSY_TIMEOUT) {
            tracing::warn!(error = %e, "cannot set the store writer's busy timeout back");
        }
        match restarted {
            Ok(0) => self.0.store(false, Ordering::Relaxed),
            Ok(_) => tracing::debug!("readers held the WAL; restarting it after the next batch"),
            Err(e) => tracing::warn!(error = %e, "WAL restart failed; it is tried again"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::embedded::open_connection;
    use super::*;

    /// The file is not truncated at a restart: its limit is above what the WAL holds then.
    #[test]
    fn a_wal_restarted_at_its_limit_is_not_cut_back() {
        let at_restart = RESTART_AT * (4096 + 24);
        // What lands while the checkpointer catches up: 18 MB at most measured here.
        assert!(
            KEPT_BYTES > at_restart + (32 << 20),
            "{KEPT_BYTES} <= {at_restart}"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let conn = open_connection(&dir.path().join("kept.db")).expect("open");
        let limit: i64 = conn
            .query_row("PRAGMA journal_size_limit", [], |r| r.get(0))
            .expect("limit");
        assert_eq!(limit, KEPT_BYTES);
    }

    /// Under a stream of commits with no pause, the WAL stays near its limit instead of
    /// growing by every page written.
    #[test]
    fn a_steady_stream_of_commits_keeps_the_wal_near_its_limit() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("wal.db");
        let conn = open_connection(&path).expect("open");
        conn.execute_batch("CREATE TABLE t (b BLOB)")
            .expect("table");
        let restart = Restart::default();
        let _checkpointer = Checkpointer::start(
            open_connection(&path).expect("open"),
            Duration::from_millis(5),
            32,
            restart.clone(),
        )
        .expect("checkpointer");
        let wal = dir.path().join("wal.db-wal");
        let (commits, mut largest) = (1500, 0);
        for _ in 0..commits {
            conn.execute("INSERT INTO t VALUES (?1)", [vec![7u8; 3000]])
                .expect("insert");
            restart.run_if_asked(&conn);
            largest = largest.max(std::fs::metadata(&wal).expect("wal").len());
        }
        // Each commit writes at least one 4 KiB page.
        let written = commits * 4096;
        assert!(
            largest < written / 4,
            "the WAL grew to {largest} bytes of the {written} written"
        );
    }
}
