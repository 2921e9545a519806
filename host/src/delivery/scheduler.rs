//! The scheduler: claims due deliveries from the store in batches and runs each attempt as
//! its own task, bounded by a global concurrency limit. It sleeps until the next delivery
//! falls due or until ingest wakes it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;

use super::attempt::Deliverer;
use crate::event::now_ms;
use crate::metrics::Metrics;
use crate::store::{NextState, Store};

/// Most deliveries claimed per store round trip.
const CLAIM_BATCH: usize = 256;
/// Longest sleep when nothing is due, as a safety net for a missed wake-up.
const IDLE_POLL: Duration = Duration::from_secs(30);
/// Pause after a store error before trying again.
const ERROR_BACKOFF: Duration = Duration::from_secs(1);

/// Runs deliveries until shutdown.
#[derive(Debug)]
pub struct Scheduler {
    /// Where deliveries are claimed and recorded.
    pub store: Arc<dyn Store>,
    /// Makes the attempts.
    pub deliverer: Arc<Deliverer>,
    /// Ingest pokes this after storing new deliveries.
    pub wake: Arc<Notify>,
    /// Attempt counters.
    pub metrics: Metrics,
    /// Attempts in flight at most.
    pub concurrency: usize,
    /// How long a claim holds a delivery; longer than any attempt can take.
    pub lease: Duration,
    /// How long in-flight attempts may run once shutdown begins.
    pub shutdown_grace: Duration,
}

impl Scheduler {
    /// Claims and runs deliveries until `shutdown` flips to true, then waits up to
    /// `shutdown_grace` for attempts in flight. Unfinished ones stay leased in the store and
    /// are released at the next start.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let permits = Arc::new(Semaphore::new(self.concurrency));
        let mut tasks = JoinSet::new();
        loop {
            if *shutdown.borrow() {
                break;
            }
            // Reap finished tasks so the set does not grow without bound.
            while tasks.try_join_next().is_some() {}
            // Wait for room before claiming, so claimed work never sits waiting on a lease.
            let first = tokio::select! {
                permit = Arc::clone(&permits).acquire_owned() => permit.expect("semaphore is never closed"),
                _ = shutdown.changed() => break,
            };
            let want = (permits.available_permits() + 1).min(CLAIM_BATCH);
            let claim = match self.store.claim_due(now_ms(), want, self.lease).await {
                Ok(claim) => claim,
                Err(e) => {
                    drop(first);
                    tracing::error!(error = %e, "cannot claim due deliveries; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(ERROR_BACKOFF) => continue,
                        _ = shutdown.changed() => break,
                    }
                }
            };
            if claim.deliveries.is_empty() {
                drop(first);
                let wait = claim
                    .next_due_ms
                    .map(|due| Duration::from_millis((due - now_ms()).max(0) as u64))
                    .unwrap_or(IDLE_POLL)
                    .min(IDLE_POLL);
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => break,
                }
                continue;
            }
            let mut first = Some(first);
            for delivery in claim.deliveries {
                let permit = match first.take() {
                    Some(p) => p,
                    None => Arc::clone(&permits)
                        .acquire_owned()
                        .await
                        .expect("semaphore is never closed"),
                };
                let deliverer = Arc::clone(&self.deliverer);
                let store = Arc::clone(&self.store);
                let wake = Arc::clone(&self.wake);
                let metrics = self.metrics.clone();
                tasks.spawn(async move {
                    let record = deliverer.attempt(&delivery).await;
                    log_outcome(&delivery.id, &delivery.subscription_id, &record);
                    metrics.attempt(&record);
                    let rescheduled = matches!(record.next, NextState::RetryAt(_) | NextState::WaitUntil(_));
                    if let Err(e) = store.record(vec![record]).await {
                        tracing::error!(delivery = %delivery.id, error = %e,
                            "cannot record the attempt; the delivery will be attempted again when its lease ends");
                    }
                    // The scheduler may be asleep until a later due time; let it see this one.
                    if rescheduled {
                        wake.notify_one();
                    }
                    drop(permit);
                });
            }
        }
        let in_flight = tasks.len();
        if in_flight > 0 {
            tracing::info!(in_flight, grace = ?self.shutdown_grace, "waiting for attempts in flight");
            let drained = tokio::time::timeout(self.shutdown_grace, async {
                while tasks.join_next().await.is_some() {}
            })
            .await;
            if drained.is_err() {
                tracing::warn!(
                    left = tasks.len(),
                    "shutdown grace ran out; unfinished attempts will run again at the next start"
                );
                tasks.abort_all();
            }
        }
    }
}

fn log_outcome(delivery: &str, subscription: &str, record: &crate::store::AttemptRecord) {
    let error = record.error.as_deref().unwrap_or("");
    match record.next {
        NextState::Delivered => {
            tracing::debug!(
                delivery,
                subscription,
                attempt = record.attempt,
                status = record.status_code,
                "delivered"
            );
        }
        NextState::Skipped => tracing::debug!(delivery, subscription, reason = error, "skipped"),
        NextState::RetryAt(at) => tracing::info!(
            delivery,
            subscription,
            attempt = record.attempt,
            error,
            retry_in_ms = at - now_ms(),
            "attempt failed; will retry"
        ),
        // Waiting for a missing plugin needs an operator; waiting for a rate limit or a
        // busy endpoint is the engine doing its job.
        NextState::WaitUntil(_) if record.parked_on.is_some() => {
            tracing::warn!(delivery, subscription, error, "delivery is waiting")
        }
        NextState::WaitUntil(_) => {
            tracing::debug!(delivery, subscription, error, "delivery is waiting")
        }
        NextState::DeadLetter => tracing::warn!(
            delivery,
            subscription,
            attempt = record.attempt,
            error,
            "delivery is now a dead letter"
        ),
    }
}
