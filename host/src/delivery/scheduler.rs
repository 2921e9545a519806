//! The scheduler: claims due deliveries from the store in batches and runs each attempt as
//! its own task, bounded by a global concurrency limit. It sleeps until the next delivery
//! falls due or until it is woken: by ingest, or by the store itself at an ingest's commit
//! (`Store::ingest_commits`).
//!
//! Attempt records go to one recorder task, which writes them in batches: an attempt frees
//! its concurrency slot as soon as it has an outcome, instead of waiting for its own
//! commit. The delivery stays leased until its record is committed, so it cannot be
//! claimed twice; if the process dies before that (or the machine loses power before the
//! record is synced, see `Durability` in the embedded store), the delivery is simply due
//! again at the next start (at least once, as always).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use super::attempt::Deliverer;
use crate::clock::{now_ms, rfc3339_millis};
use crate::feed::{Feed, FeedItem};
use crate::store::{AttemptRecord, ClaimedDelivery, NextState, Store};

/// Most deliveries claimed per store round trip.
const CLAIM_BATCH: usize = 256;
/// Longest sleep when nothing is due, as a safety net for a missed wake-up.
const IDLE_POLL: Duration = Duration::from_secs(30);
/// Pause after a store error before trying again.
const ERROR_BACKOFF: Duration = Duration::from_secs(1);
/// Records written in one store call at most.
const RECORD_BATCH: usize = 512;

/// Runs deliveries until shutdown.
#[derive(Debug)]
pub struct Scheduler {
    /// Where deliveries are claimed and recorded.
    pub store: Arc<dyn Store>,
    /// Makes the attempts.
    pub deliverer: Arc<Deliverer>,
    /// Ingest pokes this after storing new deliveries.
    pub wake: Arc<Notify>,
    /// Attempts in flight at most.
    pub concurrency: usize,
    /// How long a claim holds a delivery; longer than any attempt can take.
    pub lease: Duration,
    /// How long in-flight attempts may run once shutdown begins.
    pub shutdown_grace: Duration,
    /// Where outcomes are announced once recorded (`/v1/stream`); `None` where nobody
    /// watches.
    pub feed: Option<Feed>,
}

/// An attempt's record, and what to announce once it is durable.
type Done = (AttemptRecord, Option<FeedItem>);

impl Scheduler {
    /// Claims and runs deliveries until `shutdown` flips to true, then waits up to
    /// `shutdown_grace` for attempts in flight. Unfinished ones stay leased in the store and
    /// are released at the next start.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let permits = Arc::new(Semaphore::new(self.concurrency));
        let mut tasks = JoinSet::new();
        // Room for every attempt in flight to hand over its record without waiting.
        let (records, queue) = mpsc::channel::<Done>(self.concurrency.max(16) * 2);
        let recorder = tokio::spawn(record_loop(
            Arc::clone(&self.store),
            queue,
            Arc::clone(&self.wake),
            self.feed.clone(),
        ));
        let committed = self.store.ingest_commits();
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
                    _ = poked(committed.as_deref()) => {}
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
                let records = records.clone();
                let announce = self.feed.is_some();
                tasks.spawn(async move {
                    let record = attempt_or_bug(&deliverer, &delivery).await;
                    log_outcome(&delivery.id, &delivery.subscription_id, &record);
                    // The deliverer's counters: one `Arc` per task, where a `Metrics`
                    // clone is one per metric family.
                    deliverer.metrics.attempt(&record);
                    drop(permit);
                    let item = if announce {
                        outcome_item(&delivery, &record)
                    } else {
                        None
                    };
                    // Only fails once the recorder is gone, at the very end of shutdown;
                    // the delivery is then due again at the next start.
                    let _ = records.send((record, item)).await;
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
        // Every finished attempt's record is written before the scheduler returns.
        drop(tasks);
        drop(records);
        if recorder.await.is_err() {
            tracing::error!(
                "the attempt recorder panicked; unrecorded attempts run again at the next start"
            );
        }
    }
}

/// Waits for `notify`, or forever without one.
async fn poked(notify: Option<&Notify>) {
    match notify {
        Some(notify) => notify.notified().await,
        None => std::future::pending().await,
    }
}

/// Makes one attempt. A panic in it (a bug) becomes a record that makes the delivery due
/// again in a minute without spending an attempt, so its lease is always released.
async fn attempt_or_bug(deliverer: &Deliverer, delivery: &ClaimedDelivery) -> AttemptRecord {
    let attempt = std::panic::AssertUnwindSafe(deliverer.attempt(delivery));
    match futures_util::FutureExt::catch_unwind(attempt).await {
        Ok(record) => record,
        Err(_) => {
            let now = now_ms();
            tracing::error!(delivery = %delivery.id,
                "an attempt panicked; this is a bug, please report it. The delivery is due again in a minute");
            AttemptRecord {
                delivery_id: delivery.id.clone(),
                subscription_id: delivery.subscription_id.clone(),
                receiver: None,
                attempt: delivery.attempts + 1,
                started_at_ms: now,
                latency_us: 0,
                status_code: None,
                error: Some(
                    "waiting: the engine hit a bug during the attempt (it is logged)".into(),
                ),
                response_body: None,
                plugin_version: None,
                next: NextState::WaitUntil(now + 60_000),
                parked_on: None,
            }
        }
    }
}

/// Writes attempt records in batches until every sender is gone. After a batch that moved
/// a delivery to a later time, wakes the scheduler, which may be asleep until a later due
/// time.
async fn record_loop(
    store: Arc<dyn Store>,
    mut queue: mpsc::Receiver<Done>,
    wake: Arc<Notify>,
    feed: Option<Feed>,
) {
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    while queue.recv_many(&mut batch, RECORD_BATCH).await > 0 {
        let (records, items): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
        let rescheduled = records
            .iter()
            .any(|r| matches!(r.next, NextState::RetryAt(_) | NextState::WaitUntil(_)));
        write_records(store.as_ref(), &records, &queue).await;
        if rescheduled {
            wake.notify_one();
        }
        if let Some(feed) = &feed {
            items
                .into_iter()
                .flatten()
                .for_each(|item| feed.publish(item));
        }
    }
}

/// What the feed says about an attempt; nothing for one that was not an attempt (a
/// delivery waiting for its plugin, its rate slot or an enabled subscription).
fn outcome_item(delivery: &ClaimedDelivery, record: &AttemptRecord) -> Option<FeedItem> {
    let outcome = match record.next {
        NextState::Delivered => "delivered",
        NextState::Skipped => "skipped",
        NextState::DeadLetter => "dead_letter",
        NextState::Cancelled => "cancelled",
        NextState::RetryAt(_) => "retrying",
        NextState::WaitUntil(_) => return None,
    };
    Some(FeedItem::DeliveryOutcome {
        delivery_id: delivery.id.clone(),
        subscription_id: delivery.subscription_id.clone(),
        event_id: delivery.event.id.clone(),
        event_type: delivery.event.kind.clone(),
        attempt: record.attempt,
        outcome,
        status_code: record.status_code,
        error: record.error.clone(),
        latency_ms: record.latency_us / 1000,
        at: rfc3339_millis(record.started_at_ms),
    })
}

/// Writes one batch of records, trying again while the store fails (a full disk, a lost
/// database): the deliveries stay leased meanwhile, so none is attempted twice. Once the
/// engine is stopping it gives up after a few tries; the deliveries are then due again at
/// the next start.
async fn write_records(store: &dyn Store, records: &[AttemptRecord], queue: &mpsc::Receiver<Done>) {
    let mut wait = Duration::from_millis(100);
    for tries in 1.. {
        let Err(e) = store.record(records.to_vec()).await else {
            return;
        };
        if queue.is_closed() && tries >= 3 {
            tracing::error!(error = %e, records = records.len(),
                "cannot record attempts while stopping; their deliveries run again at the next start");
            return;
        }
        tracing::error!(error = %e, records = records.len(), retry_in = ?wait,
            "cannot record attempts; trying again (their deliveries stay leased meanwhile)");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

fn log_outcome(delivery: &str, subscription: &str, record: &AttemptRecord) {
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
        NextState::Cancelled => tracing::info!(delivery, subscription, "delivery cancelled"),
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
