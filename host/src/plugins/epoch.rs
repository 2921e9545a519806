//! The epoch ticker. Guests' CPU budgets and time slices are counted in epoch ticks
//! (`sandbox::TICK`), so the epoch must advance while a guest runs; while none runs it has
//! nothing to count. The ticker advances it every tick only while at least one guest call
//! is in flight and parks its thread otherwise: an engine without adapters, or between
//! their calls, does not wake up a thousand times a second for nothing. Measured at 200
//! events/s without an adapter, the always-on ticker was 22% of the engine's CPU samples
//! (docs/BENCHMARKS.md, "An epoch ticker that sleeps").

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::Thread;
use std::time::Duration;

use wasmtime::Engine;

/// Advances an engine's epoch every `tick` while a guest runs, on its own thread, until
/// dropped.
pub struct EpochTicker {
    shared: Arc<Shared>,
    thread: Thread,
}

#[derive(Default)]
struct Shared {
    /// Guest calls in flight.
    running: AtomicUsize,
    stop: AtomicBool,
    /// Ticks made so far (for tests and curiosity; the engine keeps its own epoch).
    ticks: AtomicU64,
    /// Whether the thread is parked (or about to park) because no guest runs.
    parked: AtomicBool,
}

impl std::fmt::Debug for EpochTicker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpochTicker")
            .field("running", &self.shared.running.load(Ordering::Relaxed))
            .field("ticks", &self.ticks())
            .finish_non_exhaustive()
    }
}

impl EpochTicker {
    /// Starts the ticker's thread, parked until the first guest call.
    pub fn start(engine: Engine, tick: Duration) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let state = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name("wasmhook-epoch".into())
            .spawn(move || {
                while !state.stop.load(Ordering::Acquire) {
                    if state.running.load(Ordering::Acquire) == 0 {
                        state.parked.store(true, Ordering::Release);
                        // A guest that started since the check above has unparked us
                        // already, and then this returns at once.
                        std::thread::park();
                        state.parked.store(false, Ordering::Release);
                        continue;
                    }
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                    state.ticks.fetch_add(1, Ordering::Relaxed);
                }
            })?;
        Ok(Self {
            shared,
            thread: handle.thread().clone(),
        })
    }

    /// Marks a guest call in flight until the guard is dropped; the epoch advances
    /// meanwhile. Hold it around everything that runs guest code (instantiation runs
    /// start functions too).
    pub fn guest_running(&self) -> GuestRunning<'_> {
        if self.shared.running.fetch_add(1, Ordering::AcqRel) == 0 {
            self.thread.unpark();
        }
        GuestRunning { ticker: self }
    }

    /// Ticks made since the start.
    pub fn ticks(&self) -> u64 {
        self.shared.ticks.load(Ordering::Relaxed)
    }

    /// Whether the thread sleeps because no guest runs.
    pub fn is_parked(&self) -> bool {
        self.shared.parked.load(Ordering::Acquire)
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

/// A guest call in flight; see [`EpochTicker::guest_running`].
#[derive(Debug)]
pub struct GuestRunning<'a> {
    ticker: &'a EpochTicker,
}

impl Drop for GuestRunning<'_> {
    fn drop(&mut self) {
        self.ticker.shared.running.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Polls `ready` until it holds, failing after a generous deadline.
    fn wait_until(what: &str, ready: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ready() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::yield_now();
        }
    }

    fn engine() -> Engine {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        Engine::new(&config).expect("engine")
    }

    #[test]
    fn it_sleeps_while_no_guest_runs() {
        let ticker = EpochTicker::start(engine(), Duration::from_millis(1)).expect("ticker");
        wait_until("the ticker parks", || ticker.is_parked());
        assert_eq!(ticker.ticks(), 0, "no guest ran, so nothing was counted");
    }

    #[test]
    fn it_ticks_while_a_guest_runs_and_sleeps_again_after() {
        let ticker = EpochTicker::start(engine(), Duration::from_millis(1)).expect("ticker");
        wait_until("the ticker parks", || ticker.is_parked());
        {
            let _one = ticker.guest_running();
            let _two = ticker.guest_running();
            wait_until("the epoch advances", || ticker.ticks() >= 3);
            drop(_two);
            // One call still runs: the ticker keeps going.
            let now = ticker.ticks();
            wait_until("the epoch advances with one call left", || {
                ticker.ticks() >= now + 3
            });
        }
        wait_until("the ticker parks again", || ticker.is_parked());
        let after = ticker.ticks();
        let _again = ticker.guest_running();
        wait_until("the epoch advances for a new call", || {
            ticker.ticks() > after
        });
    }
}
