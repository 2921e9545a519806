//! Retention: purges finished deliveries, dead letters and events once they are older than
//! `[retention]` allows, in the background and in small steps, so the store's size levels
//! off instead of growing forever and the drain never waits long behind a purge. Pending
//! deliveries are never purged.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::now_ms;
use crate::config::RetentionConfig;
use crate::store::{PurgeCutoffs, Store, StoreError};

/// Hourly health counts are kept this long: a day's success rate needs 25 hours.
const COUNTS_KEPT: Duration = Duration::from_secs(48 * 3600);
/// A pause between two purge steps, so other writers get the store in between.
const STEP_PAUSE: Duration = Duration::from_millis(5);

/// The cutoffs at `now_ms` for `config`: a window of `0s` keeps everything of its kind.
pub fn cutoffs(config: &RetentionConfig, now_ms: i64) -> PurgeCutoffs {
    let before = |window: Duration| {
        (!window.is_zero())
            .then(|| now_ms.saturating_sub(i64::try_from(window.as_millis()).unwrap_or(i64::MAX)))
    };
    let finished_before = before(config.delivered.0);
    PurgeCutoffs {
        finished_before,
        dead_before: before(config.dead_letters.0),
        // An event's id keeps publishing idempotent for as long as its deliveries are kept.
        events_before: finished_before,
        counts_before: before(COUNTS_KEPT),
    }
}

/// What one purge cycle removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cycle {
    /// Deliveries, with their attempts.
    pub deliveries: u64,
    /// Events.
    pub events: u64,
}

/// Runs one purge cycle at `now_ms`, step by step, then gives the space back. Stops
/// between steps once `stop` flips, with what it did so far.
pub async fn purge_once(
    store: &dyn Store,
    config: &RetentionConfig,
    now_ms: i64,
    stop: &watch::Receiver<bool>,
) -> Result<Cycle, StoreError> {
    let cutoffs = cutoffs(config, now_ms);
    let mut cycle = Cycle::default();
    let mut cursor = None;
    loop {
        if *stop.borrow() {
            return Ok(cycle);
        }
        let step = store
            .purge_deliveries(cutoffs, cursor, config.batch)
            .await?;
        cycle.deliveries += step.deleted;
        match step.cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
        tokio::time::sleep(STEP_PAUSE).await;
    }
    let mut cursor = None;
    loop {
        if *stop.borrow() {
            return Ok(cycle);
        }
        let step = store.purge_events(cutoffs, cursor, config.batch).await?;
        cycle.events += step.deleted;
        match step.cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
        tokio::time::sleep(STEP_PAUSE).await;
    }
    // The purge has happened: a failure to give the space back is only logged.
    if let Err(e) = reclaim(store, stop).await {
        tracing::warn!(error = %e, "cannot give purged space back to the file system; it is tried again at the next interval");
    }
    Ok(cycle)
}

/// Gives free space back in the store's steps until none is left (a large purge frees more
/// than one step gives back, and a restart may have left free pages behind), or `stop`
/// flips. Each step holds the store's writer (up to about 85 ms for the embedded store),
/// so the pause after it is at least as long: everything else gets the writer at least
/// half the time.
async fn reclaim(store: &dyn Store, stop: &watch::Receiver<bool>) -> Result<(), StoreError> {
    let mut stop = stop.clone();
    while !*stop.borrow_and_update() {
        let started = std::time::Instant::now();
        if !store.reclaim().await? {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(started.elapsed().max(STEP_PAUSE)) => {}
            _ = stop.changed() => break,
        }
    }
    Ok(())
}

/// Purges every `[retention] interval` until `stop` flips.
pub async fn run(store: Arc<dyn Store>, config: RetentionConfig, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(config.interval.0);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        match purge_once(store.as_ref(), &config, now_ms(), &stop).await {
            Ok(cycle) if cycle.deliveries + cycle.events > 0 => tracing::info!(
                deliveries = cycle.deliveries,
                events = cycle.events,
                "purged what [retention] no longer keeps"
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "purge failed; it runs again at the next interval")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HumanDuration;
    use crate::store::store_with_padded_events;

    /// A purge of more than one reclaim step's pages (16 MiB) gives them all back in its
    /// cycle, not one step per cycle that purges: after a one-off large purge nothing may
    /// be left to purge in the next cycles.
    #[tokio::test]
    async fn a_large_purge_gives_all_its_pages_back_in_its_cycle() {
        let (_dir, store) = store_with_padded_events(4000).await;
        let pages = |what: &str| {
            let conn = rusqlite::Connection::open(store.path()).expect("open");
            conn.query_row(&format!("PRAGMA {what}"), [], |r| r.get::<_, i64>(0))
                .expect(what)
        };
        let full = pages("page_count");
        assert!(full > 2 * 4096, "{full} pages are too few for the test");
        let config = RetentionConfig {
            delivered: HumanDuration(Duration::from_secs(1)),
            ..RetentionConfig::default()
        };
        let (_stop, running) = watch::channel(false);
        let cycle = purge_once(&store, &config, now_ms(), &running)
            .await
            .expect("purge");
        assert_eq!(cycle.events, 4000);
        let (after, free) = (pages("page_count"), pages("freelist_count"));
        assert!(
            after < full / 8 && free == 0,
            "{after} of {full} pages left, {free} of them free"
        );
        let cycle = purge_once(&store, &config, now_ms(), &running)
            .await
            .expect("again");
        assert_eq!(cycle, Cycle::default(), "nothing left for the next cycle");
    }

    #[test]
    fn windows_become_cutoffs_and_zero_keeps_all() {
        let day = 86_400_000;
        let config = RetentionConfig {
            delivered: HumanDuration(Duration::from_secs(7 * 86_400)),
            dead_letters: HumanDuration(Duration::ZERO),
            ..RetentionConfig::default()
        };
        let c = cutoffs(&config, 100 * day);
        assert_eq!(c.finished_before, Some(93 * day));
        assert_eq!(c.dead_before, None, "0s keeps dead letters forever");
        assert_eq!(c.events_before, Some(93 * day));
        assert_eq!(c.counts_before, Some(98 * day));
        assert_eq!(
            c.latest(),
            Some(93 * day),
            "health counts do not widen the scan"
        );
    }
}
