//! The threads adapters run on. Guest code never runs on the engine's own runtime, so a
//! spinning or memory-hungry adapter cannot take the threads that accept events, answer
//! the API and send requests: with `n` cores there are at most `n - 1` guest threads by
//! default. A plugin on probation (its last call ran out of CPU or memory) runs on one
//! thread of its own, the probation lane, so it cannot delay healthy adapters' calls
//! either. Each call is a task here; the attempt awaits it from the main runtime.

use std::future::Future;

use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

/// A dedicated runtime for adapter calls. Dropping it stops the threads without waiting
/// for calls still running (each is interrupted at its next CPU-budget slice).
#[derive(Debug)]
pub struct GuestPool {
    runtime: Option<Runtime>,
    probation: Option<Runtime>,
    threads: usize,
}

fn lane(threads: usize, name: &str) -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .max_blocking_threads(1)
        .thread_name(name)
        .enable_time()
        .build()
}

impl GuestPool {
    /// A pool of `threads` threads; 0 picks one less than the cores (at least one).
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let threads = match threads {
            0 => default_threads(),
            n => n,
        };
        Ok(Self {
            runtime: Some(lane(threads, "wasmhook-guest")?),
            probation: Some(lane(1, "wasmhook-probation")?),
            threads,
        })
    }

    /// How many threads run guests.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `call` on the pool. The returned handle aborts the call when dropped, so an
    /// attempt that is abandoned (shutdown, a deleted subscription) stops its guest too.
    pub fn spawn<F>(&self, call: F) -> GuestCall<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let runtime = self.runtime.as_ref().expect("the runtime lives until drop");
        GuestCall(runtime.spawn(call))
    }

    /// Runs `call` on the probation lane.
    pub fn spawn_on_probation<F>(&self, call: F) -> GuestCall<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let runtime = self
            .probation
            .as_ref()
            .expect("the runtime lives until drop");
        GuestCall(runtime.spawn(call))
    }
}

impl Drop for GuestPool {
    fn drop(&mut self) {
        for runtime in [self.runtime.take(), self.probation.take()]
            .into_iter()
            .flatten()
        {
            runtime.shutdown_background();
        }
    }
}

/// One core is left to the engine itself.
fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get().saturating_sub(1))
        .unwrap_or(1)
        .max(1)
}

/// A running adapter call; aborted when dropped.
#[derive(Debug)]
pub struct GuestCall<T>(JoinHandle<T>);

impl<T> GuestCall<T> {
    /// Waits for the call; `Err` when it panicked.
    pub async fn wait(&mut self) -> Result<T, tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl<T> Drop for GuestCall<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_run_on_their_own_threads_and_stop_when_dropped() {
        let pool = GuestPool::new(1).unwrap();
        let name = pool
            .spawn(async { std::thread::current().name().map(str::to_owned) })
            .wait()
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("wasmhook-guest"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let call = pool.spawn(async move {
            let _tx = tx; // dropped when the task is aborted
            std::future::pending::<()>().await;
        });
        drop(call);
        assert!(rx.await.is_err(), "the aborted call dropped its state");
    }
}
