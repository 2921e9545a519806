//! Prometheus metrics. Counters and the latency histogram live for the process; gauges that
//! describe current state (queue depth, circuits, plugins) are read at scrape time.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::plugins::PluginInfo;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::store::{AttemptRecord, NextState, QueueDepth};

/// Subscriptions that get their own label in the per-subscription counters; the rest are
/// counted under `subscription="_other"`, so a engine with many subscriptions cannot blow
/// up a Prometheus server's series count.
pub const MAX_SUBSCRIPTION_LABELS: usize = 1000;

type Labels = Vec<(&'static str, String)>;

/// A histogram family with one label.
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

/// The process-lifetime metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    events_ingested: Counter,
    deliveries_created: Counter,
    /// Deliveries that reached an end state, by outcome.
    deliveries_finished: Family<Labels, Counter>,
    attempts: Family<Labels, Counter>,
    attempt_seconds: Histogram,
    /// Adapter calls by plugin and result.
    plugin_calls: Family<Labels, Counter>,
    /// Adapter call latency by plugin, every version.
    plugin_seconds: Histograms,
    /// Attempts by subscription and outcome (waits are not attempts and are left out).
    subscription_attempts: Family<Labels, Counter>,
    /// Subscriptions with a label of their own, at most `MAX_SUBSCRIPTION_LABELS`.
    labelled: Arc<Mutex<HashSet<String>>>,
    /// Source messages settled, by source and outcome (accepted, duplicate, rejected).
    source_messages: Family<Labels, Counter>,
    /// Source messages that could not become events, by source and reason code.
    source_rejected: Family<Labels, Counter>,
}

fn plugin_buckets() -> Histogram {
    // 10 µs to ~1.3 s: a Rust adapter takes tens of µs, a JS one a few ms.
    Histogram::new(exponential_buckets(0.000_01, 2.0, 18))
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            events_ingested: Counter::default(),
            deliveries_created: Counter::default(),
            deliveries_finished: Family::default(),
            attempts: Family::default(),
            // 1 ms to ~65 s.
            attempt_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            plugin_calls: Family::default(),
            plugin_seconds: Family::new_with_constructor(plugin_buckets),
            subscription_attempts: Family::default(),
            labelled: Arc::default(),
            source_messages: Family::default(),
            source_rejected: Family::default(),
        }
    }
}

/// One endpoint's gauges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointGauge {
    /// `scheme://host:port`.
    pub endpoint: String,
    /// 0 closed, 1 half-open, 2 open.
    pub circuit: i64,
    /// Attempts in flight.
    pub in_flight: i64,
}

/// State read at scrape time.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Pending deliveries.
    pub queue: QueueDepth,
    /// Per-endpoint circuits.
    pub endpoints: Vec<EndpointGauge>,
    /// Loaded plugins.
    pub plugins: Vec<PluginInfo>,
    /// The embedded store's write batches (`Store::commit_seconds`); `None` on PostgreSQL.
    pub commits: Option<Histogram>,
}

impl Metrics {
    /// Counts accepted events and the deliveries they created.
    pub fn ingested(&self, events: u64, deliveries: u64) {
        self.events_ingested.inc_by(events);
        self.deliveries_created.inc_by(deliveries);
    }

    /// Counts one source message committed as an event (`accepted`, or `duplicate` when
    /// its id was already stored).
    pub fn source_message(&self, source: &str, outcome: &'static str) {
        self.source_messages
            .get_or_create(&vec![
                ("source", source.to_owned()),
                ("outcome", outcome.into()),
            ])
            .inc();
    }

    /// Counts one source message that cannot become an event, by its reason code.
    pub fn source_rejected(&self, source: &str, reason: &'static str) {
        self.source_message(source, "rejected");
        self.source_rejected
            .get_or_create(&vec![
                ("source", source.to_owned()),
                ("reason", reason.into()),
            ])
            .inc();
    }

    /// Counts one attempt by outcome and records its latency.
    pub fn attempt(&self, record: &AttemptRecord) {
        let outcome = match record.next {
            NextState::Delivered => "delivered",
            NextState::Skipped => "skipped",
            NextState::DeadLetter => "dead_letter",
            NextState::RetryAt(_) => "retry",
            NextState::WaitUntil(_) => "waiting",
            NextState::Cancelled => "cancelled",
        };
        self.attempts
            .get_or_create(&vec![("outcome", outcome.to_owned())])
            .inc();
        if !matches!(record.next, NextState::WaitUntil(_)) {
            let subscription = self.subscription_label(&record.subscription_id);
            self.subscription_attempts
                .get_or_create(&vec![
                    ("subscription", subscription),
                    ("outcome", outcome.to_owned()),
                ])
                .inc();
        }
        if matches!(
            record.next,
            NextState::Delivered
                | NextState::Skipped
                | NextState::DeadLetter
                | NextState::Cancelled
        ) {
            self.deliveries_finished
                .get_or_create(&vec![("outcome", outcome.to_owned())])
                .inc();
        }
        if record.status_code.is_some() || record.error.is_some() {
            self.attempt_seconds.observe(record.latency_us as f64 / 1e6);
        }
    }

    /// The label for `subscription`: its id while fewer than `MAX_SUBSCRIPTION_LABELS` have
    /// one, `_other` after.
    fn subscription_label(&self, subscription: &str) -> String {
        let mut labelled = self.labelled.lock().unwrap_or_else(|p| p.into_inner());
        if labelled.contains(subscription) {
            return subscription.to_owned();
        }
        if labelled.len() < MAX_SUBSCRIPTION_LABELS {
            labelled.insert(subscription.to_owned());
            return subscription.to_owned();
        }
        "_other".to_owned()
    }

    /// Counts one adapter call of `plugin` and records its latency.
    pub fn plugin_call(&self, plugin: &str, elapsed: std::time::Duration, failed: bool) {
        let result = if failed { "error" } else { "ok" };
        self.plugin_calls
            .get_or_create(&vec![
                ("plugin", plugin.to_owned()),
                ("result", result.to_owned()),
            ])
            .inc();
        self.plugin_seconds
            .get_or_create(&vec![("plugin", plugin.to_owned())])
            .observe(elapsed.as_secs_f64());
    }

    /// The text exposition format.
    pub fn render(&self, snapshot: Snapshot) -> String {
        let mut registry = Registry::with_prefix("wasmhook");
        registry.register(
            "events_ingested",
            "Events accepted",
            self.events_ingested.clone(),
        );
        registry.register(
            "deliveries_created",
            "Deliveries created by ingest",
            self.deliveries_created.clone(),
        );
        registry.register(
            "deliveries_finished",
            "Deliveries that reached an end state, by outcome: delivered, dead_letter, skipped",
            self.deliveries_finished.clone(),
        );
        registry.register(
            "attempts",
            "Delivery attempts by outcome: delivered, retry, dead_letter, skipped, waiting",
            self.attempts.clone(),
        );
        registry.register(
            "subscription_attempts",
            "Attempts by subscription and outcome (delivered, retry, dead_letter, skipped, cancelled); \
             past 1,000 subscriptions the rest count as subscription=\"_other\"",
            self.subscription_attempts.clone(),
        );
        registry.register(
            "plugin_invocations",
            "Adapter calls by plugin and result (ok, error), every version",
            self.plugin_calls.clone(),
        );
        registry.register(
            "plugin_call_duration_seconds",
            "Adapter call latency by plugin, every version",
            self.plugin_seconds.clone(),
        );
        registry.register(
            "source_messages",
            "Messages from [[sources]] by source and outcome: accepted, duplicate, rejected",
            self.source_messages.clone(),
        );
        registry.register(
            "source_messages_rejected",
            "Messages from [[sources]] that cannot become events (terminated), by source and reason code",
            self.source_rejected.clone(),
        );
        registry.register(
            "attempt_duration_seconds",
            "Attempt latency, adapter and HTTP",
            self.attempt_seconds.clone(),
        );

        let queue: Family<Labels, Gauge> = Family::default();
        queue
            .get_or_create(&vec![("state", "due".into())])
            .set(snapshot.queue.due as i64);
        queue
            .get_or_create(&vec![("state", "scheduled".into())])
            .set(snapshot.queue.scheduled as i64);
        registry.register(
            "queue_depth",
            "Pending deliveries: due now, or scheduled later",
            queue,
        );

        let circuit: Family<Labels, Gauge> = Family::default();
        let in_flight: Family<Labels, Gauge> = Family::default();
        for e in &snapshot.endpoints {
            circuit
                .get_or_create(&vec![("endpoint", e.endpoint.clone())])
                .set(e.circuit);
            in_flight
                .get_or_create(&vec![("endpoint", e.endpoint.clone())])
                .set(e.in_flight);
        }
        registry.register(
            "circuit_state",
            "Circuit per endpoint: 0 closed, 1 half-open, 2 open",
            circuit,
        );
        registry.register(
            "endpoint_in_flight",
            "Attempts in flight per endpoint",
            in_flight,
        );

        let calls: Family<Labels, Counter> = Family::default();
        let errors: Family<Labels, Counter> = Family::default();
        let latency: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>> = Family::default();
        for p in &snapshot.plugins {
            let labels = vec![("plugin", p.name.clone())];
            calls.get_or_create(&labels).inc_by(p.calls);
            errors.get_or_create(&labels).inc_by(p.errors);
            if let Some(us) = p.mean_latency_us {
                latency.get_or_create(&labels).set(us / 1e6);
            }
        }
        registry.register(
            "plugin_calls",
            "Adapter calls of the serving version",
            calls,
        );
        registry.register("plugin_errors", "Adapter calls that failed", errors);
        registry.register(
            "plugin_mean_latency_seconds",
            "Mean adapter call latency of the serving version",
            latency,
        );

        if let Some(commits) = snapshot.commits {
            registry.register(
                "store_commit_duration_seconds",
                "Embedded store: each write batch from its start to its callers' answers \
                 (transaction, commit, fsync), 0.5 ms to 8 s; a slow one holds up every write queued behind it",
                commits,
            );
        }

        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_snapshot_gauges() {
        let m = Metrics::default();
        m.ingested(2, 3);
        let snapshot = Snapshot {
            queue: QueueDepth {
                due: 4,
                scheduled: 5,
            },
            ..Default::default()
        };
        let text = m.render(snapshot);
        assert!(text.contains("wasmhook_events_ingested_total 2"), "{text}");
        assert!(
            text.contains("wasmhook_deliveries_created_total 3"),
            "{text}"
        );
        assert!(
            text.contains("wasmhook_queue_depth{state=\"due\"} 4"),
            "{text}"
        );
        m.plugin_call("slack", std::time::Duration::from_micros(40), false);
        let text = m.render(Snapshot::default());
        assert!(
            text.contains("wasmhook_plugin_invocations_total{plugin=\"slack\",result=\"ok\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("wasmhook_plugin_call_duration_seconds_count{plugin=\"slack\"} 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
        assert!(!text.contains("store_commit"), "{text}");

        let commits = Histogram::new(exponential_buckets(0.000_5, 2.0, 15));
        commits.observe(0.003);
        let text = m.render(Snapshot {
            commits: Some(commits),
            ..Default::default()
        });
        assert!(
            text.contains("wasmhook_store_commit_duration_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("wasmhook_store_commit_duration_seconds_bucket{le=\"0.004\"} 1"),
            "{text}"
        );
    }
}
