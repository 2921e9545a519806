//! The store conformance suite: one set of checks every backend must pass. Each check takes
//! a function that opens a fresh, empty store (and can reopen it, to simulate a restart);
//! `store_conformance!` instantiates the whole suite for one backend.
//!
//! Over 500 lines on purpose: it is the store contract, one check per behaviour every
//! backend owes, and split across files it would stop reading as one contract.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::event::Event;

/// Opens the store under test at time `now_ms`. Calling it again opens the same store
/// again, as a restarted process would.
pub type Opener =
    Arc<dyn Fn(i64) -> Pin<Box<dyn Future<Output = Arc<dyn Store>> + Send>> + Send + Sync>;

const LEASE: Duration = Duration::from_secs(60);

/// Stored with every test event; claims must hand it back.
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn new_event(id: &str, subs: &[&str]) -> NewEvent {
    NewEvent {
        event: Event {
            id: id.into(),
            kind: "host.up".into(),
            created_at_ms: 1_000,
            data: "{\"n\":1}".into(),
            traceparent: Some(TRACEPARENT.into()),
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

fn attempt(id: &str, attempt: u32, next: NextState) -> AttemptRecord {
    AttemptRecord {
        delivery_id: id.into(),
        // Delivery ids here are `msg_<event>_<subscription>`.
        subscription_id: id.rsplit('_').next().unwrap_or("").into(),
        receiver: Some(false),
        attempt,
        started_at_ms: 2_000,
        latency_us: 1_500,
        status_code: Some(500),
        error: Some("boom".into()),
        response_body: Some("oops".into()),
        plugin_version: Some("p v1 sha256:0".into()),
        next,
        parked_on: None,
    }
}

fn all() -> DeliveryFilter {
    DeliveryFilter {
        limit: 100,
        ..Default::default()
    }
}

/// Ingest stores deliveries with the event and is idempotent on the event id.
pub async fn ingest_is_idempotent(open: Opener) {
    let store = open(0).await;
    let first = store
        .ingest(vec![new_event("e1", &["a", "b"])])
        .await
        .unwrap();
    assert_eq!(
        first[0],
        IngestResult {
            id: "e1".into(),
            deliveries: 2,
            duplicate: false
        }
    );
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
    assert_eq!(store.list_deliveries(all()).await.unwrap().len(), 2);
    // A batch with a duplicate inside stores the rest.
    let batch = store
        .ingest(vec![
            new_event("e2", &["a"]),
            new_event("e1", &["a"]),
            new_event("e3", &[]),
        ])
        .await
        .unwrap();
    assert_eq!(
        batch.iter().map(|r| r.duplicate).collect::<Vec<_>>(),
        [false, true, false]
    );
    assert_eq!(store.list_deliveries(all()).await.unwrap().len(), 3);
}

/// Claims lease deliveries; records move them on; due times are honoured.
pub async fn claim_and_record(open: Opener) {
    let store = open(0).await;
    store
        .ingest(vec![new_event("e1", &["a"]), new_event("e2", &["a"])])
        .await
        .unwrap();
    let claim = store.claim_due(1_000, 10, LEASE).await.unwrap();
    assert_eq!(claim.deliveries.len(), 2);
    assert_eq!(claim.deliveries[0].event.data, "{\"n\":1}");
    assert_eq!(
        claim.deliveries[0].event.traceparent.as_deref(),
        Some(TRACEPARENT)
    );
    assert_eq!(claim.deliveries[0].event.kind, "host.up");
    assert!(
        store
            .claim_due(1_000, 10, LEASE)
            .await
            .unwrap()
            .deliveries
            .is_empty(),
        "leased twice"
    );
    store
        .record(vec![
            attempt("msg_e1_a", 1, NextState::RetryAt(5_000)),
            attempt("msg_e2_a", 1, NextState::DeadLetter),
        ])
        .await
        .unwrap();
    let claim = store.claim_due(4_999, 10, LEASE).await.unwrap();
    assert!(claim.deliveries.is_empty());
    assert_eq!(claim.next_due_ms, Some(5_000));
    let claim = store.claim_due(5_000, 10, LEASE).await.unwrap();
    assert_eq!(claim.deliveries.len(), 1);
    assert_eq!(claim.deliveries[0].attempts, 1);
    assert_eq!(claim.deliveries[0].attempts_this_run, 1);
    let dead = store.delivery("msg_e2_a").await.unwrap().unwrap();
    assert_eq!(dead.delivery.status, DeliveryStatus::DeadLetter);
    assert_eq!(dead.delivery.last_status, Some(500));
    assert_eq!(dead.attempts_log.len(), 1);
    assert_eq!(dead.attempts_log[0].response_body.as_deref(), Some("oops"));
    assert_eq!(
        dead.attempts_log[0].plugin_version.as_deref(),
        Some("p v1 sha256:0")
    );
    assert!(store.delivery("msg_nope").await.unwrap().is_none());
    // A claim never returns more than asked, and reports more work as due now.
    store
        .ingest(
            (0..5)
                .map(|i| new_event(&format!("b{i}"), &["a"]))
                .collect(),
        )
        .await
        .unwrap();
    let claim = store.claim_due(6_000, 2, LEASE).await.unwrap();
    assert_eq!(claim.deliveries.len(), 2);
    assert_eq!(claim.next_due_ms, Some(6_000));
}

/// A lease held when the process died is released when the store is opened again.
pub async fn leases_are_released_on_reopen(open: Opener) {
    let store = open(0).await;
    store.ingest(vec![new_event("e1", &["a"])]).await.unwrap();
    assert_eq!(
        store
            .claim_due(1_000, 10, Duration::from_secs(3600))
            .await
            .unwrap()
            .deliveries
            .len(),
        1
    );
    drop(store);
    let store = open(2_000).await;
    assert_eq!(
        store
            .claim_due(2_000, 10, LEASE)
            .await
            .unwrap()
            .deliveries
            .len(),
        1
    );
}

/// A delivery scheduled for later keeps its time across a restart.
pub async fn scheduled_retries_survive_reopen(open: Opener) {
    let store = open(0).await;
    store.ingest(vec![new_event("e1", &["a"])]).await.unwrap();
    store.claim_due(1_000, 10, LEASE).await.unwrap();
    store
        .record(vec![attempt("msg_e1_a", 1, NextState::RetryAt(90_000))])
        .await
        .unwrap();
    drop(store);
    let store = open(2_000).await;
    let claim = store.claim_due(2_000, 10, LEASE).await.unwrap();
    assert!(claim.deliveries.is_empty(), "not at once");
    assert_eq!(claim.next_due_ms, Some(90_000), "not never");
}

/// Waiting (plugin missing) spends no attempt and records no attempt row.
pub async fn waiting_spends_no_attempt(open: Opener) {
    let store = open(0).await;
    store.ingest(vec![new_event("e1", &["a"])]).await.unwrap();
    store.claim_due(1_000, 10, LEASE).await.unwrap();
    let mut r = attempt("msg_e1_a", 1, NextState::WaitUntil(9_000));
    r.error = Some("plugin `x` is not loaded".into());
    store.record(vec![r]).await.unwrap();
    let d = store.delivery("msg_e1_a").await.unwrap().unwrap();
    assert_eq!(d.delivery.attempts, 0);
    assert_eq!(d.delivery.status, DeliveryStatus::Pending);
    assert!(d.attempts_log.is_empty());
    assert_eq!(
        d.delivery.last_error.as_deref(),
        Some("plugin `x` is not loaded")
    );
    assert_eq!(
        store.claim_due(8_999, 10, LEASE).await.unwrap().next_due_ms,
        Some(9_000)
    );
}

/// Filters and pagination of the delivery list.
pub async fn list_filters_and_pages(open: Opener) {
    let store = open(0).await;
    for i in 0..5 {
        store
            .ingest(vec![new_event(&format!("e{i}"), &["a", "b"])])
            .await
            .unwrap();
    }
    store.claim_due(1_000, 100, LEASE).await.unwrap();
    store
        .record(vec![attempt("msg_e0_a", 1, NextState::DeadLetter)])
        .await
        .unwrap();
    let f = |sub: Option<&str>, status: Option<DeliveryStatus>| DeliveryFilter {
        subscription_id: sub.map(Into::into),
        status,
        limit: 100,
        ..Default::default()
    };
    assert_eq!(
        store
            .list_deliveries(f(Some("a"), None))
            .await
            .unwrap()
            .len(),
        5
    );
    let dead = store
        .list_deliveries(f(None, Some(DeliveryStatus::DeadLetter)))
        .await
        .unwrap();
    assert_eq!(
        dead.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["msg_e0_a"]
    );
    let by_event = DeliveryFilter {
        event_id: Some("e3".into()),
        limit: 100,
        ..Default::default()
    };
    assert_eq!(store.list_deliveries(by_event).await.unwrap().len(), 2);
    let by_type = DeliveryFilter {
        event_type: Some("nope".into()),
        limit: 100,
        ..Default::default()
    };
    assert!(store.list_deliveries(by_type).await.unwrap().is_empty());
    // Pages of 3 walk all 10 deliveries, newest first, without overlap.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .list_deliveries(DeliveryFilter {
                before: before.clone(),
                limit: 3,
                ..Default::default()
            })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        before = page.last().map(|d| d.id.clone());
        seen.extend(page.into_iter().map(|d| d.id));
    }
    assert_eq!(seen.len(), 10);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(seen, sorted);
}

/// Replay and manual retry make deliveries due with a fresh budget and keep their ids.
pub async fn replay_and_retry(open: Opener) {
    let store = open(0).await;
    store
        .ingest(vec![new_event("e1", &["a", "b"]), new_event("e2", &["a"])])
        .await
        .unwrap();
    store.claim_due(1_000, 10, LEASE).await.unwrap();
    store
        .record(vec![
            attempt("msg_e1_a", 3, NextState::DeadLetter),
            attempt("msg_e1_b", 1, NextState::DeadLetter),
            attempt("msg_e2_a", 1, NextState::Delivered),
        ])
        .await
        .unwrap();
    let only_b = ReplayFilter {
        subscription_id: Some("b".into()),
        ..Default::default()
    };
    assert_eq!(store.replay_dead_letters(only_b, 3_000).await.unwrap(), 1);
    let late = ReplayFilter {
        since_ms: Some(5_000),
        ..Default::default()
    };
    assert_eq!(store.replay_dead_letters(late, 3_000).await.unwrap(), 0);
    assert_eq!(
        store
            .replay_dead_letters(ReplayFilter::default(), 3_000)
            .await
            .unwrap(),
        1
    );
    let claim = store.claim_due(3_000, 10, LEASE).await.unwrap();
    let mut ids: Vec<_> = claim
        .deliveries
        .iter()
        .map(|d| (d.id.as_str(), d.attempts, d.attempts_this_run))
        .collect();
    ids.sort();
    assert_eq!(ids, [("msg_e1_a", 3, 0), ("msg_e1_b", 1, 0)]);

    // Retry: refused while in flight, works on a delivered one, unknown ids say so.
    assert!(matches!(
        store.retry_delivery("msg_e1_a", 4_000).await.unwrap(),
        RetryOutcome::InFlight
    ));
    match store.retry_delivery("msg_e2_a", 4_000).await.unwrap() {
        RetryOutcome::Scheduled(d) => assert_eq!(d.status, DeliveryStatus::Pending),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        store.retry_delivery("msg_nope", 4_000).await.unwrap(),
        RetryOutcome::NotFound
    ));
    let claim = store.claim_due(4_000, 10, LEASE).await.unwrap();
    assert_eq!(claim.deliveries[0].id, "msg_e2_a");
    assert_eq!(claim.deliveries[0].attempts_this_run, 0);
}

/// Queue depth counts due and scheduled pending deliveries.
pub async fn queue_depth(open: Opener) {
    let store = open(0).await;
    store
        .ingest(vec![new_event("e1", &["a", "b", "c"])])
        .await
        .unwrap();
    // A leased delivery still counts as due.
    store.claim_due(1_000, 1, LEASE).await.unwrap();
    assert_eq!(
        store.queue_depth(1_000).await.unwrap(),
        QueueDepth {
            due: 3,
            scheduled: 0
        }
    );
    store.claim_due(1_000, 10, LEASE).await.unwrap();
    store
        .record(vec![attempt("msg_e1_a", 1, NextState::RetryAt(50_000))])
        .await
        .unwrap();
    store
        .record(vec![attempt("msg_e1_b", 1, NextState::Delivered)])
        .await
        .unwrap();
    assert_eq!(
        store.queue_depth(1_000).await.unwrap(),
        QueueDepth {
            due: 1,
            scheduled: 1
        }
    );
}

fn stored(id: &str, source: SubscriptionSource, spec: &str) -> StoredSubscription {
    StoredSubscription {
        id: id.into(),
        source,
        spec: spec.into(),
        enabled: true,
        disabled_reason: None,
        created_at_ms: 1,
        updated_at_ms: 1,
    }
}

/// A fresh store at time 0 holding API subscription `id`.
async fn with_subscription(open: Opener, id: &str) -> Arc<dyn Store> {
    let store = open(0).await;
    store
        .put_subscription(stored(id, SubscriptionSource::Api, "{}"))
        .await
        .unwrap();
    store
}

/// Subscriptions: CRUD, config sync keeping state, enable and disable.
pub async fn subscriptions(open: Opener) {
    let store = open(0).await;
    store
        .put_subscription(stored("api1", SubscriptionSource::Api, "{\"v\":1}"))
        .await
        .unwrap();
    store
        .sync_config_subscriptions(vec![
            stored("cfg1", SubscriptionSource::Config, "{}"),
            stored("cfg2", SubscriptionSource::Config, "{}"),
        ])
        .await
        .unwrap();
    assert!(
        store
            .set_subscription_enabled("cfg1", false, Some("410 Gone".into()), 5)
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_subscription_enabled("nope", false, None, 5)
            .await
            .unwrap()
    );
    // A new config: cfg2 goes, cfg1 keeps its disabled state, api1 is untouched.
    store
        .sync_config_subscriptions(vec![stored(
            "cfg1",
            SubscriptionSource::Config,
            "{\"new\":true}",
        )])
        .await
        .unwrap();
    let subs = store.subscriptions().await.unwrap();
    assert_eq!(
        subs.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["api1", "cfg1"]
    );
    let cfg1 = &subs[1];
    assert!(!cfg1.enabled);
    assert_eq!(cfg1.disabled_reason.as_deref(), Some("410 Gone"));
    assert_eq!(cfg1.spec, "{\"new\":true}");
    assert!(
        store
            .set_subscription_enabled("cfg1", true, Some("ignored".into()), 6)
            .await
            .unwrap()
    );
    let subs = store.subscriptions().await.unwrap();
    assert!(subs[1].enabled && subs[1].disabled_reason.is_none());
    let mut updated = stored("api1", SubscriptionSource::Api, "{\"v\":2}");
    updated.enabled = false;
    store.put_subscription(updated).await.unwrap();
    let subs = store.subscriptions().await.unwrap();
    assert_eq!(
        (subs[0].spec.as_str(), subs[0].enabled),
        ("{\"v\":2}", false)
    );
    assert!(store.delete_subscription("api1", 7).await.unwrap());
    assert!(!store.delete_subscription("api1", 7).await.unwrap());
    assert_eq!(store.subscriptions().await.unwrap().len(), 1);

    // Create never replaces: of twenty concurrent creates with one id, one wins.
    let creates = (0..20).map(|i| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let spec = format!("{{\"attempt\":{i}}}");
            let won = store
                .create_subscription(stored("race", SubscriptionSource::Api, &spec))
                .await
                .unwrap();
            (won, spec)
        })
    });
    let results = futures_util::future::join_all(creates).await;
    let winners: Vec<String> = results
        .into_iter()
        .map(Result::unwrap)
        .filter(|(won, _)| *won)
        .map(|(_, spec)| spec)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one create wins");
    let subs = store.subscriptions().await.unwrap();
    let race = subs.iter().find(|s| s.id == "race").unwrap();
    assert_eq!(race.spec, winners[0], "the winner's spec is the one kept");
}

/// Health: the run of failures and the hourly counts follow the records; enabling resets
/// the run; deleting a subscription cancels its pending deliveries for good.
pub async fn health_and_cancellation(open: Opener) {
    let store = with_subscription(open, "s").await;
    store
        .ingest(vec![new_event("e1", &["s"]), new_event("e2", &["s"])])
        .await
        .unwrap();
    let mut ok = attempt("msg_e1_s", 2, NextState::Delivered);
    (ok.receiver, ok.status_code, ok.started_at_ms) = (Some(true), Some(200), 3_000);
    let mut late = attempt("msg_e2_s", 2, NextState::RetryAt(9_000));
    late.started_at_ms = 4_000;
    let not_sent = AttemptRecord {
        receiver: None,
        ..attempt("msg_e2_s", 3, NextState::WaitUntil(9_000))
    };
    // A delivery has one record per batch at most: it stays leased until its record is in.
    store
        .record(vec![attempt("msg_e1_s", 1, NextState::RetryAt(2_500))])
        .await
        .unwrap();
    store.record(vec![ok, late]).await.unwrap();
    store.record(vec![not_sent]).await.unwrap();
    store
        .record(vec![attempt("msg_e2_s", 3, NextState::RetryAt(9_000))])
        .await
        .unwrap();
    let health = store.subscription_health(Some("s"), 10_000).await.unwrap();
    let h = &health["s"];
    assert_eq!(h.consecutive_failures, 2, "{h:?}");
    assert_eq!(h.failing_since, Some(4_001));
    assert_eq!(h.last_success_at, Some(3_001));
    assert_eq!((h.last_success, h.last_status), (Some(false), Some(500)));
    assert_eq!(h.buckets, vec![(0, 1, 3)]);
    assert!(
        store
            .subscription_health(None, 10_000)
            .await
            .unwrap()
            .contains_key("s")
    );

    store
        .set_subscription_enabled("s", false, None, 11_000)
        .await
        .unwrap();
    store
        .set_subscription_enabled("s", true, None, 12_000)
        .await
        .unwrap();
    let h = &store.subscription_health(Some("s"), 12_000).await.unwrap()["s"];
    assert_eq!((h.consecutive_failures, h.failing_since), (0, None));

    assert!(store.delete_subscription("s", 13_000).await.unwrap());
    let d = store.delivery("msg_e2_s").await.unwrap().unwrap().delivery;
    assert_eq!(d.status, DeliveryStatus::Cancelled);
    store
        .record(vec![attempt("msg_e2_s", 4, NextState::RetryAt(20_000))])
        .await
        .unwrap();
    let d = store.delivery("msg_e2_s").await.unwrap().unwrap().delivery;
    assert_eq!(
        d.status,
        DeliveryStatus::Cancelled,
        "a late record does not revive it"
    );
    let e1 = store.delivery("msg_e1_s").await.unwrap().unwrap().delivery;
    assert_eq!(
        e1.status,
        DeliveryStatus::Delivered,
        "finished ones stay as they were"
    );
}

/// Purging: finished deliveries and dead letters go by their own windows, pending ones
/// never, events once no delivery is left; the scan resumes from its cursor.
pub async fn purge(open: Opener) {
    let store = open(0).await;
    // e1..e4 at t=1000 (new_event's time), with one delivery each to `s`.
    for e in ["e1", "e2", "e3", "e4"] {
        store.ingest(vec![new_event(e, &["s"])]).await.unwrap();
    }
    store.ingest(vec![new_event("lonely", &[])]).await.unwrap();
    store
        .record(vec![
            attempt("msg_e1_s", 1, NextState::Delivered),
            attempt("msg_e2_s", 1, NextState::DeadLetter),
            attempt("msg_e3_s", 1, NextState::RetryAt(9_000)),
        ])
        .await
        .unwrap();
    store
        .record(vec![attempt("msg_e4_s", 1, NextState::Cancelled)])
        .await
        .unwrap();
    let keep_dead = PurgeCutoffs {
        finished_before: Some(5_000),
        dead_before: None,
        events_before: Some(5_000),
        counts_before: Some(0),
    };
    let mut cursor = None;
    let mut deleted = 0;
    loop {
        let step = store.purge_deliveries(keep_dead, cursor, 1).await.unwrap();
        deleted += step.deleted;
        match step.cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(deleted, 2, "the delivered and the cancelled one");
    assert!(store.delivery("msg_e1_s").await.unwrap().is_none());
    assert!(store.delivery("msg_e4_s").await.unwrap().is_none());
    assert!(
        store.delivery("msg_e2_s").await.unwrap().is_some(),
        "dead letters are kept"
    );
    assert!(
        store.delivery("msg_e3_s").await.unwrap().is_some(),
        "pending never goes"
    );
    let events = store.purge_events(keep_dead, None, 100).await.unwrap();
    assert_eq!(events.deleted, 3, "e1, e4 and the event without deliveries");
    let too_early = PurgeCutoffs {
        finished_before: Some(500),
        dead_before: Some(500),
        events_before: Some(500),
        counts_before: None,
    };
    let step = store.purge_deliveries(too_early, None, 100).await.unwrap();
    assert_eq!(step, Purged::default(), "nothing was that old");
    let all_dead = PurgeCutoffs {
        dead_before: Some(5_000),
        ..keep_dead
    };
    assert_eq!(
        store
            .purge_deliveries(all_dead, None, 100)
            .await
            .unwrap()
            .deleted,
        1
    );
    assert_eq!(
        store
            .purge_events(all_dead, None, 100)
            .await
            .unwrap()
            .deleted,
        1
    );
    store.reclaim().await.unwrap();
    assert!(store.delivery("msg_e3_s").await.unwrap().is_some());
    let (_, depth) = (0, store.queue_depth(10_000).await.unwrap());
    assert_eq!(depth.due + depth.scheduled, 1);
}

/// Rewriting specs in place changes only rows that still hold the expected text, and
/// leaves their state alone.
pub async fn rewrite_specs(open: Opener) {
    let store = open(0).await;
    store
        .put_subscription(stored("a", SubscriptionSource::Api, "{\"v\":1}"))
        .await
        .unwrap();
    store
        .set_subscription_enabled("a", false, Some("410 Gone".into()), 5)
        .await
        .unwrap();
    store
        .put_subscription(stored("b", SubscriptionSource::Api, "{\"v\":1}"))
        .await
        .unwrap();
    let rewrite = |id: &str, old: &str, new: &str| SpecRewrite {
        id: id.into(),
        old: old.into(),
        new: new.into(),
    };
    let changed = store
        .rewrite_specs(vec![
            rewrite("a", "{\"v\":1}", "sealed-a"),
            rewrite("b", "{\"v\":0}", "sealed-b"),
            rewrite("gone", "{}", "x"),
        ])
        .await
        .unwrap();
    assert_eq!(changed, 1);
    let subs = store.subscriptions().await.unwrap();
    assert_eq!(subs[0].spec, "sealed-a");
    assert!(!subs[0].enabled, "the rewrite keeps the state");
    assert_eq!(subs[0].disabled_reason.as_deref(), Some("410 Gone"));
    assert_eq!(subs[1].spec, "{\"v\":1}", "a changed row is left alone");
    drop(store);
    let reopened = open(0).await;
    assert_eq!(reopened.subscriptions().await.unwrap()[0].spec, "sealed-a");
}

/// Many concurrent writers all land (group commit must answer every caller).
pub async fn concurrent_writers(open: Opener) {
    let store = open(0).await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            store
                .ingest(vec![new_event(&format!("c{i}"), &["a"])])
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        assert!(!t.await.unwrap()[0].duplicate);
    }
    let claim = store.claim_due(1_000, 1_000, LEASE).await.unwrap();
    assert_eq!(claim.deliveries.len(), 200);
}

/// Claims racing the records of earlier claims never hand out a delivery twice: a
/// delivery recorded as delivered stays leased until that record is visible to claims.
pub async fn claims_racing_records_hand_out_each_delivery_once(open: Opener) {
    const EVENTS: usize = 300;
    let store = open(0).await;
    store
        .ingest(
            (0..EVENTS)
                .map(|i| new_event(&format!("r{i}"), &["a"]))
                .collect(),
        )
        .await
        .unwrap();
    let claimed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorded = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut claimers = Vec::new();
    for _ in 0..4 {
        let (store, claimed, recorded) = (
            Arc::clone(&store),
            Arc::clone(&claimed),
            Arc::clone(&recorded),
        );
        claimers.push(tokio::spawn(async move {
            let mut records = Vec::new();
            loop {
                // Later than every record's time, so only its status keeps a recorded
                // delivery from being due again.
                let claim = store.claim_due(10_000, 3, LEASE).await.unwrap();
                if claim.deliveries.is_empty() {
                    if recorded.load(std::sync::atomic::Ordering::SeqCst) >= EVENTS {
                        break;
                    }
                    tokio::task::yield_now().await;
                    continue;
                }
                let ids: Vec<String> = claim.deliveries.into_iter().map(|d| d.id).collect();
                {
                    let mut claimed = claimed.lock().unwrap();
                    claimed.extend(ids.iter().cloned());
                    if claimed.len() > EVENTS {
                        break; // something was handed out twice: the asserts say so
                    }
                }
                // Recorded while this claimer claims again, as the engine's attempts are.
                let (store, recorded) = (Arc::clone(&store), Arc::clone(&recorded));
                records.push(tokio::spawn(async move {
                    let n = ids.len();
                    store
                        .record(
                            ids.iter()
                                .map(|id| attempt(id, 1, NextState::Delivered))
                                .collect(),
                        )
                        .await
                        .unwrap();
                    recorded.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
                }));
            }
            for r in records {
                r.await.unwrap();
            }
        }));
    }
    for c in claimers {
        c.await.unwrap();
    }
    let mut claimed = claimed.lock().unwrap().clone();
    let total = claimed.len();
    claimed.sort();
    claimed.dedup();
    assert_eq!(claimed.len(), EVENTS, "every delivery claimed");
    assert_eq!(
        total, EVENTS,
        "a delivery was claimed again after its record"
    );
}

/// The write probe behind `/healthz` commits on a fresh store and again and again.
pub async fn write_probe(open: Opener) {
    let store = open(0).await;
    for now in [1, 2, 2] {
        store.check_writable(now).await.unwrap();
    }
    // Nothing it writes shows anywhere else.
    assert_eq!(store.subscriptions().await.unwrap().len(), 0);
    assert_eq!(
        store
            .claim_due(1_000, 10, LEASE)
            .await
            .unwrap()
            .deliveries
            .len(),
        0
    );
}

/// A first attempt that delivered is logged like any other (the embedded store keeps it in
/// the delivery row), before the attempts of a retry, and also when its delivery was
/// cancelled while it ran.
pub async fn a_first_attempt_that_delivered_is_logged(open: Opener) {
    let store = with_subscription(open, "s").await;
    store
        .ingest(vec![new_event("e1", &["s"]), new_event("e2", &["s"])])
        .await
        .unwrap();
    let claim = store.claim_due(1_000, 10, LEASE).await.unwrap();
    assert_eq!(claim.deliveries.len(), 2);
    let delivered = |id: &str, n: u32| {
        let mut ok = attempt(id, n, NextState::Delivered);
        (ok.receiver, ok.status_code, ok.error) = (Some(true), Some(200), None);
        ok.response_body = Some("ok".into());
        ok
    };
    store.record(vec![delivered("msg_e1_s", 1)]).await.unwrap();
    let d = store.delivery("msg_e1_s").await.unwrap().unwrap();
    assert_eq!(
        (
            d.delivery.status,
            d.delivery.attempts,
            d.delivery.last_status
        ),
        (DeliveryStatus::Delivered, 1, Some(200))
    );
    assert_eq!(d.delivery.last_error, None);
    let log: Vec<_> = d
        .attempts_log
        .iter()
        .map(|a| {
            (
                a.attempt,
                a.started_at.as_str(),
                a.latency_us,
                a.status_code,
                a.error.as_deref(),
                a.response_body.as_deref(),
                a.plugin_version.as_deref(),
            )
        })
        .collect();
    let first = (
        1,
        "1970-01-01T00:00:02.000Z",
        1_500,
        Some(200),
        None,
        Some("ok"),
        Some("p v1 sha256:0"),
    );
    assert_eq!(log, [first]);
    // Sent again by hand: the second attempt comes after the first.
    assert!(matches!(
        store.retry_delivery("msg_e1_s", 1_200).await.unwrap(),
        RetryOutcome::Scheduled(_)
    ));
    let claim = store.claim_due(1_200, 10, LEASE).await.unwrap();
    assert_eq!(claim.deliveries.len(), 1);
    store
        .record(vec![attempt("msg_e1_s", 2, NextState::DeadLetter)])
        .await
        .unwrap();
    let d = store.delivery("msg_e1_s").await.unwrap().unwrap();
    let numbers: Vec<_> = d
        .attempts_log
        .iter()
        .map(|a| (a.attempt, a.status_code))
        .collect();
    assert_eq!(numbers, [(1, Some(200)), (2, Some(500))]);
    assert_eq!(d.delivery.status, DeliveryStatus::DeadLetter);
    // Cancelled while its attempt ran: it stays cancelled, and the attempt is logged and
    // counted.
    assert!(store.delete_subscription("s", 1_300).await.unwrap());
    store.record(vec![delivered("msg_e2_s", 1)]).await.unwrap();
    let d = store.delivery("msg_e2_s").await.unwrap().unwrap();
    assert_eq!(
        (d.delivery.status, d.delivery.attempts),
        (DeliveryStatus::Cancelled, 1)
    );
    assert_eq!(d.attempts_log.len(), 1);
    assert_eq!(d.attempts_log[0].status_code, Some(200));
    // So once retried by hand, its next attempt is number 2, not 1 again: a failure after
    // a success here, a success after a failure for e3, each logged beside the first.
    store
        .put_subscription(stored("s", SubscriptionSource::Api, "{}"))
        .await
        .unwrap();
    store.ingest(vec![new_event("e3", &["s"])]).await.unwrap();
    let claim = store.claim_due(1_400, 10, LEASE).await.unwrap();
    assert_eq!(claim.deliveries.len(), 1);
    assert!(store.delete_subscription("s", 1_400).await.unwrap());
    store
        .record(vec![attempt("msg_e3_s", 1, NextState::RetryAt(9_000))])
        .await
        .unwrap();
    store
        .put_subscription(stored("s", SubscriptionSource::Api, "{}"))
        .await
        .unwrap();
    for id in ["msg_e2_s", "msg_e3_s"] {
        assert!(matches!(
            store.retry_delivery(id, 1_500).await.unwrap(),
            RetryOutcome::Scheduled(_)
        ));
    }
    let claim = store.claim_due(1_500, 10, LEASE).await.unwrap();
    assert_eq!(claim.deliveries.len(), 2);
    assert!(claim.deliveries.iter().all(|d| d.attempts == 1));
    store
        .record(vec![
            attempt("msg_e2_s", 2, NextState::DeadLetter),
            delivered("msg_e3_s", 2),
        ])
        .await
        .unwrap();
    for (id, codes) in [("msg_e2_s", [200, 500]), ("msg_e3_s", [500, 200])] {
        let d = store.delivery(id).await.unwrap().unwrap();
        let log: Vec<_> = d
            .attempts_log
            .iter()
            .map(|a| (a.attempt, a.status_code))
            .collect();
        assert_eq!(log, [(1, Some(codes[0])), (2, Some(codes[1]))], "{id}");
    }
}

/// A record that comes back after its delivery was cancelled and purged changes no other
/// delivery, not even one stored since in the purged one's place (the embedded store
/// finds leased rows by rowid, which SQLite may hand out again), and leaves nothing
/// leased behind.
pub async fn a_late_record_touches_only_its_own_delivery(open: Opener) {
    let store = with_subscription(open, "s").await;
    store.ingest(vec![new_event("e1", &["s"])]).await.unwrap();
    let claim = store.claim_due(1_000, 10, LEASE).await.unwrap();
    assert_eq!(claim.deliveries.len(), 1);
    assert!(store.delete_subscription("s", 1_100).await.unwrap());
    let cutoffs = PurgeCutoffs {
        finished_before: Some(5_000),
        dead_before: None,
        events_before: Some(5_000),
        counts_before: None,
    };
    let purged = store.purge_deliveries(cutoffs, None, 100).await.unwrap();
    assert_eq!(purged.deleted, 1, "the cancelled delivery, still in flight");
    store.ingest(vec![new_event("e2", &["t"])]).await.unwrap();
    let mut late = attempt("msg_e1_s", 1, NextState::Delivered);
    (late.receiver, late.status_code) = (Some(true), Some(200));
    store.record(vec![late]).await.unwrap();
    let other = store.delivery("msg_e2_t").await.unwrap().unwrap().delivery;
    assert_eq!(
        (other.status, other.attempts),
        (DeliveryStatus::Pending, 0),
        "the late record changed another delivery"
    );
    let claim = store.claim_due(2_000, 10, LEASE).await.unwrap();
    let ids: Vec<_> = claim.deliveries.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["msg_e2_t"], "the new delivery is free to claim");
}

/// Instantiates the suite for one backend: `store_conformance!(embedded, opener_fn)`. The
/// opener returns `None` when the backend cannot run here (no server); it then says so.
#[macro_export]
macro_rules! store_conformance {
    ($backend:ident, $opener:expr) => {
        mod $backend {
            use $crate::store::conformance as suite;
            use super::*;
            $crate::store_conformance!(@tests $opener;
                ingest_is_idempotent, claim_and_record, a_first_attempt_that_delivered_is_logged,
                leases_are_released_on_reopen, scheduled_retries_survive_reopen,
                waiting_spends_no_attempt, list_filters_and_pages, replay_and_retry, queue_depth,
                subscriptions, health_and_cancellation, purge, concurrent_writers,
                claims_racing_records_hand_out_each_delivery_once, write_probe,
                a_late_record_touches_only_its_own_delivery, rewrite_specs);
        }
    };
    // A wrapper store: every check but `rewrite_specs`, which works on the stored text
    // of a backend.
    (wrapper $backend:ident, $opener:expr) => {
        mod $backend {
            use $crate::store::conformance as suite;
            use super::*;
            $crate::store_conformance!(@tests $opener;
                ingest_is_idempotent, claim_and_record, a_first_attempt_that_delivered_is_logged,
                leases_are_released_on_reopen, scheduled_retries_survive_reopen,
                waiting_spends_no_attempt, list_filters_and_pages, replay_and_retry, queue_depth,
                subscriptions, health_and_cancellation, purge, concurrent_writers,
                claims_racing_records_hand_out_each_delivery_once, write_probe,
                a_late_record_touches_only_its_own_delivery);
        }
    };
    (@tests $opener:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                if let Some(open) = $opener() {
                    suite::$name(open).await;
                }
            }
        )*
    };
}

/// A fresh embedded store in a temporary folder.
pub fn embedded() -> Option<Opener> {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("wasmhook-conformance-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    Some(Arc::new(move |now| {
        let dir = dir.clone();
        Box::pin(async move { Arc::new(EmbeddedStore::open(&dir, now).unwrap()) as Arc<dyn Store> })
    }))
}

crate::store_conformance!(embedded_store, embedded);

/// The embedded store behind `SealedStore`, so the wrapper is held to the same contract.
pub fn sealed_embedded() -> Option<Opener> {
    let open_embedded = embedded()?;
    Some(Arc::new(move |now| {
        let open_embedded = Arc::clone(&open_embedded);
        Box::pin(async move {
            let keys = crate::keyring::Keyring::new([[7; 32]]).unwrap();
            Arc::new(
                SealedStore::open(open_embedded(now).await, keys)
                    .await
                    .unwrap(),
            ) as Arc<dyn Store>
        })
    }))
}

crate::store_conformance!(wrapper sealed_embedded_store, sealed_embedded);

/// The PostgreSQL server the suite runs against: `WASMHOOK_TEST_DATABASE_URL`, which
/// `scripts/test` sets after starting a throwaway cluster. Without it the PostgreSQL suite
/// is skipped with a note, unless `WASMHOOK_REQUIRE_POSTGRES` is set (as `scripts/test`
/// does), which makes a missing server an error instead of a silent pass.
pub fn postgres_url() -> Option<String> {
    match std::env::var("WASMHOOK_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("WASMHOOK_REQUIRE_POSTGRES").is_none(),
                "WASMHOOK_REQUIRE_POSTGRES is set but WASMHOOK_TEST_DATABASE_URL is not"
            );
            eprintln!(
                "skipped: no PostgreSQL (set WASMHOOK_TEST_DATABASE_URL, or run scripts/test)"
            );
            None
        }
    }
}

/// A PostgreSQL store in a schema of its own; reopening it uses the same node id, as a
/// restarted process configured with `[storage] node_id` would.
pub fn postgres() -> Option<Opener> {
    let url = postgres_url()?;
    let schema = postgres_schema();
    let created = Arc::new(tokio::sync::OnceCell::new());
    Some(Arc::new(move |now| {
        let (url, schema, created) = (url.clone(), schema.clone(), Arc::clone(&created));
        Box::pin(async move {
            created.get_or_init(|| create_schema(&url, &schema)).await;
            let node = format!("{schema}-node");
            Arc::new(open_postgres_node(&url, &schema, &node, now).await) as Arc<dyn Store>
        })
    }))
}

/// A schema name no other test in this run uses.
pub fn postgres_schema() -> String {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("conformance_{}_{n}", std::process::id())
}

/// Creates `schema` empty on the test server.
pub async fn create_schema(url: &str, schema: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test server");
    tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
        ))
        .await
        .expect("create schema");
}

/// One node of a cluster on `schema`, with a 30 s lease renewed by its heartbeat.
async fn open_postgres_node(url: &str, schema: &str, node_id: &str, now: i64) -> PostgresStore {
    PostgresStore::open(postgres_options(url, schema, node_id), now)
        .await
        .expect("open the PostgreSQL store")
}

/// Options for a node on `schema` of the test server.
pub fn postgres_options(url: &str, schema: &str, node_id: &str) -> PostgresOptions {
    let sep = if url.contains('?') { '&' } else { '?' };
    PostgresOptions {
        url: format!("{url}{sep}options=-csearch_path%3D{schema}"),
        pool_size: 8,
        node_id: node_id.to_owned(),
        heartbeat: Duration::from_secs(1),
        lease: Duration::from_secs(30),
        tls: PgTls::default(),
    }
}

/// Issue 13, defect 1 on PostgreSQL: an attempt that runs past its claim's lease (a
/// receiver taking minutes under a long `timeout`) is not handed to another node while
/// its own node is alive, because every heartbeat renews that node's leases. When the
/// node stops beating, another takes the delivery once the renewed lease ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_heartbeats_renew_the_leases_of_long_attempts() {
    let Some(url) = postgres_url() else { return };
    let schema = postgres_schema();
    create_schema(&url, &schema).await;
    let a = open_postgres_node(&url, &schema, "node-a", 0).await;
    let b = open_postgres_node(&url, &schema, "node-b", 0).await;
    let lease = Duration::from_secs(30);
    a.ingest(vec![new_event("e1", &["s"])]).await.unwrap();
    assert_eq!(
        a.claim_due(1_000, 10, lease)
            .await
            .unwrap()
            .deliveries
            .len(),
        1
    );
    let report = || NodeReport {
        started_at_ms: 0,
        plugins: Default::default(),
    };
    // Node a is still in the attempt 25 s and 50 s later, and beats.
    a.heartbeat(26_000, report()).await.unwrap();
    a.heartbeat(51_000, report()).await.unwrap();
    // Long past the claim's own lease (31 s), node b must not start a second attempt.
    let taken = b.claim_due(60_000, 10, lease).await.unwrap();
    assert!(
        taken.deliveries.is_empty(),
        "a live node's delivery was handed to another node while its attempt ran"
    );
    // Node a dies: no more beats. Once the last renewal ends, b takes over.
    let taken = b.claim_due(81_000, 10, lease).await.unwrap();
    assert_eq!(taken.deliveries.len(), 1, "a dead node's lease never ended");
}

crate::store_conformance!(postgres_store, postgres);
