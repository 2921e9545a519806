//! The engine's own events (`wasmhook.*`): what it tells operators about itself, published
//! through its own bus so operators subscribe to them like any event, with filters and
//! adapters (an endpoint disabled can reach Slack through the Slack adapter).
//!
//! Parts of the engine report through an [`OpsEmitter`]; one task ([`run`]) publishes the
//! reports through the ingest service. Two rules keep this from feeding on itself:
//! - an event about a subscription (or about the endpoint it sends to) is never delivered
//!   to that subscription;
//! - storms are coalesced: circuit events are sent on transitions only (one per endpoint
//!   per outage, not one per delivery), dead letters at most one per subscription per
//!   [`DEAD_LETTER_WINDOW`] with a count of the others, and the engine's own events that
//!   become dead letters are logged, not reported again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;
use utoipa::ToSchema;

use crate::event::EventDraft;
use crate::ingest::Ingest;

/// Reports of dead letters for one subscription are at most this frequent; the others in
/// between are counted in the next report.
pub const DEAD_LETTER_WINDOW: Duration = Duration::from_secs(60);
/// Reports waiting to be published at most; beyond this (a stalled store) they are dropped
/// and counted in the log.
const QUEUE: usize = 4096;

/// `wasmhook.subscription.disabled`: a subscription stopped getting deliveries.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SubscriptionDisabled {
    /// The subscription.
    pub subscription_id: String,
    /// `gone` (the receiver answered 410), `failing` (every attempt failed for the
    /// configured time) or `operator` (through the API).
    #[schema(pattern = "^(gone|failing|operator)$")]
    pub reason: &'static str,
    /// What happened, for a person.
    pub detail: String,
}

/// `wasmhook.endpoint.circuit_opened`: an endpoint failed repeatedly; its deliveries wait.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CircuitOpened {
    /// `scheme://host:port`.
    pub endpoint: String,
    /// Failures in a row that opened it.
    pub consecutive_failures: u32,
    /// When it lets a probe through, RFC 3339.
    #[schema(format = DateTime)]
    pub probe_at: String,
    /// The last failure.
    pub last_error: Option<String>,
}

/// `wasmhook.endpoint.recovered`: a probe through an open circuit succeeded.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EndpointRecovered {
    /// `scheme://host:port`.
    pub endpoint: String,
}

/// `wasmhook.delivery.dead_lettered`: a delivery gave up.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DeadLettered {
    /// The subscription.
    pub subscription_id: String,
    /// The delivery (`msg_…`), which `POST /v1/dead-letters/replay` or
    /// `POST /v1/deliveries/{id}/retry` can bring back.
    pub delivery_id: String,
    /// Its event.
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// Attempts made.
    pub attempts: u32,
    /// The last HTTP status, if the receiver answered.
    pub last_status: Option<u16>,
    /// The last error.
    pub last_error: Option<String>,
    /// Further dead letters of this subscription since the last report, not reported one
    /// by one (at most one report per subscription a minute).
    pub also_dead_lettered: u64,
}

/// `wasmhook.plugin.loaded`: a new version of an adapter is serving (hot reload).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PluginLoaded {
    /// The plugin name (file stem).
    pub plugin: String,
    /// Its load counter since the engine started.
    pub version: u32,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// The WIT world version it implements.
    pub world_version: String,
}

/// `wasmhook.plugin.rejected`: a plugin file could not be loaded; the previous version, if
/// any, keeps serving.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PluginRejected {
    /// The plugin name (file stem).
    pub plugin: String,
    /// Why.
    pub error: String,
}

/// One report.
#[derive(Debug, Clone, PartialEq)]
pub enum OpsEvent {
    /// See [`SubscriptionDisabled`].
    SubscriptionDisabled(SubscriptionDisabled),
    /// See [`CircuitOpened`]; `subscriptions` send to the endpoint and do not get it.
    CircuitOpened(CircuitOpened, Vec<String>),
    /// See [`EndpointRecovered`]; as above.
    EndpointRecovered(EndpointRecovered, Vec<String>),
    /// See [`DeadLettered`].
    DeadLettered(DeadLettered),
    /// See [`PluginLoaded`].
    PluginLoaded(PluginLoaded),
    /// See [`PluginRejected`].
    PluginRejected(PluginRejected),
}

/// Every type the engine publishes, with its payload schema's name.
pub const TYPES: [(&str, &str); 6] = [
    ("wasmhook.subscription.disabled", "SubscriptionDisabled"),
    ("wasmhook.endpoint.circuit_opened", "CircuitOpened"),
    ("wasmhook.endpoint.recovered", "EndpointRecovered"),
    ("wasmhook.delivery.dead_lettered", "DeadLettered"),
    ("wasmhook.plugin.loaded", "PluginLoaded"),
    ("wasmhook.plugin.rejected", "PluginRejected"),
];

impl OpsEvent {
    /// The event type.
    pub fn kind(&self) -> &'static str {
        let i = match self {
            Self::SubscriptionDisabled(_) => 0,
            Self::CircuitOpened(..) => 1,
            Self::EndpointRecovered(..) => 2,
            Self::DeadLettered(_) => 3,
            Self::PluginLoaded(_) => 4,
            Self::PluginRejected(_) => 5,
        };
        TYPES[i].0
    }

    /// The payload.
    pub fn data(&self) -> serde_json::Value {
        let value = match self {
            Self::SubscriptionDisabled(d) => serde_json::to_value(d),
            Self::CircuitOpened(d, _) => serde_json::to_value(d),
            Self::EndpointRecovered(d, _) => serde_json::to_value(d),
            Self::DeadLettered(d) => serde_json::to_value(d),
            Self::PluginLoaded(d) => serde_json::to_value(d),
            Self::PluginRejected(d) => serde_json::to_value(d),
        };
        value.unwrap_or_default()
    }

    /// The subscriptions this report must not reach: the ones it is about.
    pub fn about(&self) -> Vec<String> {
        match self {
            Self::SubscriptionDisabled(d) => vec![d.subscription_id.clone()],
            Self::DeadLettered(d) => vec![d.subscription_id.clone()],
            Self::CircuitOpened(_, subs) | Self::EndpointRecovered(_, subs) => subs.clone(),
            Self::PluginLoaded(_) | Self::PluginRejected(_) => Vec::new(),
        }
    }
}

/// Hands reports to the publishing task. Cheap to clone; a disconnected emitter (tests,
/// tools) drops reports.
#[derive(Debug, Clone, Default)]
pub struct OpsEmitter(Option<mpsc::Sender<OpsEvent>>);

impl OpsEmitter {
    /// Reports `event`, without waiting: a full queue drops it with a log line.
    pub fn emit(&self, event: OpsEvent) {
        let Some(tx) = &self.0 else { return };
        if let Err(e) = tx.try_send(event) {
            tracing::warn!(error = %e, "operational event dropped: the queue is full");
        }
    }
}

/// An emitter and the receiving end for [`run`].
pub fn channel() -> (OpsEmitter, mpsc::Receiver<OpsEvent>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (OpsEmitter(Some(tx)), rx)
}

/// Which dead letters to report now, per subscription: the first in a window at once, the
/// others counted into the next report. Pure; the caller supplies the time.
#[derive(Debug, Default)]
pub struct DeadLetterCoalescer {
    /// Per subscription: when the last report went, and how many were held back since.
    windows: HashMap<String, (i64, u64)>,
}

impl DeadLetterCoalescer {
    /// Takes a dead letter at `now_ms`: `Some` with the report to send now.
    pub fn offer(&mut self, mut d: DeadLettered, now_ms: i64) -> Option<DeadLettered> {
        let window = DEAD_LETTER_WINDOW.as_millis() as i64;
        match self.windows.get_mut(&d.subscription_id) {
            Some((sent_at, held)) if now_ms - *sent_at < window => {
                *held += 1;
                None
            }
            Some((sent_at, held)) => {
                d.also_dead_lettered = std::mem::take(held);
                *sent_at = now_ms;
                Some(d)
            }
            None => {
                self.windows.insert(d.subscription_id.clone(), (now_ms, 0));
                Some(d)
            }
        }
    }

    /// Subscriptions whose window has ended with dead letters held back: their count, as a
    /// summary report; quiet windows are forgotten.
    pub fn flush(&mut self, now_ms: i64) -> Vec<(String, u64)> {
        let window = DEAD_LETTER_WINDOW.as_millis() as i64;
        let mut due = Vec::new();
        self.windows.retain(|sub, (sent_at, held)| {
            if now_ms - *sent_at < window {
                return true;
            }
            if *held > 0 {
                due.push((sub.clone(), std::mem::take(held)));
                *sent_at = now_ms;
                return true;
            }
            false
        });
        due
    }
}

/// Publishes reports through `ingest` until every emitter is gone.
pub async fn run(mut reports: mpsc::Receiver<OpsEvent>, ingest: Arc<Ingest>) {
    let mut coalescer = DeadLetterCoalescer::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let event = tokio::select! {
            event = reports.recv() => match event {
                Some(event) => event,
                None => return,
            },
            _ = tick.tick() => {
                for (subscription_id, count) in coalescer.flush(crate::clock::now_ms()) {
                    let summary = DeadLettered {
                        subscription_id,
                        delivery_id: String::new(),
                        event_id: String::new(),
                        event_type: String::new(),
                        attempts: 0,
                        last_status: None,
                        last_error: Some(format!("{count} more deliveries became dead letters in the last minute")),
                        also_dead_lettered: count,
                    };
                    publish(&ingest, OpsEvent::DeadLettered(summary)).await;
                }
                continue;
            }
        };
        let event = match event {
            OpsEvent::DeadLettered(d) => match coalescer.offer(d, crate::clock::now_ms()) {
                Some(d) => OpsEvent::DeadLettered(d),
                None => continue,
            },
            other => other,
        };
        publish(&ingest, event).await;
    }
}

async fn publish(ingest: &Ingest, event: OpsEvent) {
    let draft = EventDraft::new(event.kind(), &event.data());
    if let Err(e) = ingest.publish_own(draft, &event.about()).await {
        tracing::error!(kind = event.kind(), error = %e, "cannot publish an operational event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead(sub: &str, id: &str) -> DeadLettered {
        DeadLettered {
            subscription_id: sub.into(),
            delivery_id: id.into(),
            event_id: "evt_1".into(),
            event_type: "a.b".into(),
            attempts: 3,
            last_status: Some(500),
            last_error: None,
            also_dead_lettered: 0,
        }
    }

    #[test]
    fn a_storm_of_dead_letters_is_one_report_per_window() {
        let mut c = DeadLetterCoalescer::default();
        assert!(
            c.offer(dead("a", "m1"), 0).is_some(),
            "the first goes at once"
        );
        assert!(c.offer(dead("b", "m2"), 10).is_some(), "per subscription");
        for i in 0..500 {
            assert!(c.offer(dead("a", &format!("x{i}")), 1_000 + i).is_none());
        }
        assert!(c.flush(59_000).is_empty(), "the window is still open");
        assert_eq!(c.flush(60_000), vec![("a".to_owned(), 500)]);
        let next = c.offer(dead("a", "m3"), 130_000).expect("a new window");
        assert_eq!(
            next.also_dead_lettered, 0,
            "the summary already counted them"
        );
        assert!(c.flush(1_000_000).is_empty());
        assert!(c.windows.is_empty(), "quiet windows are forgotten");
    }

    #[test]
    fn every_type_has_its_payload() {
        let e = OpsEvent::CircuitOpened(
            CircuitOpened {
                endpoint: "https://h:443".into(),
                consecutive_failures: 5,
                probe_at: "2026-06-13T12:00:30Z".into(),
                last_error: None,
            },
            vec!["s1".into()],
        );
        assert_eq!(e.kind(), "wasmhook.endpoint.circuit_opened");
        assert_eq!(e.data()["endpoint"], "https://h:443");
        assert_eq!(e.about(), ["s1"]);
    }
}
