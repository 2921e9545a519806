//! How many calls of one plugin run at once, and how many may wait for a turn. A plugin
//! whose calls are slow fills its own gate, not the guest threads, and deliveries past its
//! queue are tried again later without holding a delivery slot. A plugin whose last call
//! ran out of CPU budget or memory runs one call at a time until a call ends well, so a
//! spinning adapter or a memory bomb takes at most one guest thread's time slices from the
//! others.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Waiting turns allowed per running call.
const QUEUE_PER_SLOT: usize = 16;

/// One plugin version's gate.
#[derive(Debug)]
pub struct CallGate {
    turns: Arc<Semaphore>,
    /// The one turn a plugin on probation runs with.
    probation_turn: Arc<Semaphore>,
    /// Set when a call ran out of CPU budget, cleared when one ends in time.
    on_probation: AtomicBool,
    waiting: AtomicUsize,
    max_waiting: usize,
}

/// A turn to call the plugin; the next caller goes when it is dropped.
#[derive(Debug)]
pub struct Turn {
    _turn: OwnedSemaphorePermit,
    _probation: Option<OwnedSemaphorePermit>,
}

impl CallGate {
    /// A gate letting `running` calls through at once.
    pub fn new(running: usize) -> Self {
        let running = running.max(1);
        Self {
            turns: Arc::new(Semaphore::new(running)),
            probation_turn: Arc::new(Semaphore::new(1)),
            on_probation: AtomicBool::new(false),
            waiting: AtomicUsize::new(0),
            max_waiting: running * QUEUE_PER_SLOT,
        }
    }

    /// Waits for a turn, or answers `None` at once when the queue is full.
    pub async fn enter(&self) -> Option<Turn> {
        let probation = self.on_probation.load(Ordering::Acquire);
        let turn = Arc::clone(&self.turns).try_acquire_owned().ok();
        let extra = probation
            .then(|| Arc::clone(&self.probation_turn).try_acquire_owned().ok())
            .flatten();
        if let Some(turn) = turn
            && (!probation || extra.is_some())
        {
            return Some(Turn {
                _turn: turn,
                _probation: extra,
            });
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        // Counted out again however this future ends, dropped while waiting included.
        let _queued = Queued(&self.waiting);
        let extra = match (probation, extra) {
            (false, _) => None,
            (true, Some(held)) => Some(held),
            (true, None) => Some(
                Arc::clone(&self.probation_turn)
                    .acquire_owned()
                    .await
                    .ok()?,
            ),
        };
        let turn = Arc::clone(&self.turns).acquire_owned().await.ok()?;
        Some(Turn {
            _turn: turn,
            _probation: extra,
        })
    }

    /// Whether the plugin's last call ran out of CPU budget or memory.
    pub fn on_probation(&self) -> bool {
        self.on_probation.load(Ordering::Acquire)
    }

    /// Reports whether a call ran out of its CPU budget or memory.
    pub fn ran_out_of_time(&self, out: bool) {
        self.on_probation.store(out, Ordering::Release);
    }
}

struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_answers_at_once() {
        let gate = Arc::new(CallGate::new(1));
        let first = gate.enter().await.expect("free");
        assert!(first._probation.is_none());
        let waiters: Vec<_> = (0..QUEUE_PER_SLOT)
            .map(|_| {
                let gate = Arc::clone(&gate);
                tokio::spawn(async move { gate.enter().await.is_some() })
            })
            .collect();
        while gate.waiting.load(Ordering::Acquire) < QUEUE_PER_SLOT {
            tokio::task::yield_now().await;
        }
        assert!(gate.enter().await.is_none(), "the queue is full");
        drop(first);
        for w in waiters {
            assert!(w.await.unwrap(), "every queued caller gets a turn");
        }
        assert_eq!(gate.waiting.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn a_plugin_on_probation_runs_one_call_at_a_time() {
        let gate = CallGate::new(4);
        gate.ran_out_of_time(true);
        let first = gate.enter().await.expect("free");
        let second = tokio::time::timeout(std::time::Duration::from_millis(50), gate.enter()).await;
        assert!(second.is_err(), "the second call waits while one runs");
        drop(first);
        gate.ran_out_of_time(false);
        let (a, b) = (gate.enter().await, gate.enter().await);
        assert!(a.is_some() && b.is_some(), "back to four at once");
    }
}
