//! The live feed: an in-process broadcast of events accepted (from ingest) and delivery
//! outcomes (from the scheduler's recorder, once durable), with a short in-memory backlog
//! so a client that reconnects with `Last-Event-ID` misses nothing recent. `/v1/stream`
//! and the console's live tail read it.
//!
//! Ids are `<boot>-<sequence>`: `boot` changes at every start, so an id from an earlier
//! process (or another node) is recognised as unknown and the reader is told about the gap
//! instead of being handed the wrong items.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::broadcast;
use utoipa::ToSchema;

use crate::router::Router;

/// Items kept for `Last-Event-ID` resume.
pub const BACKLOG: usize = 1024;

/// Items a slow reader may fall behind before it is told it missed some.
const CHANNEL: usize = 4096;

/// One item of the feed.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(tag = "kind")]
pub enum FeedItem {
    /// An event was stored durably, with one delivery per subscription listed.
    #[serde(rename = "event.accepted")]
    EventAccepted {
        /// The event id.
        event_id: String,
        /// The event type.
        event_type: String,
        /// The subscriptions it was routed to.
        subscriptions: Vec<String>,
        /// When it was accepted, RFC 3339.
        at: String,
    },
    /// An attempt's outcome was recorded.
    #[serde(rename = "delivery.outcome")]
    DeliveryOutcome {
        /// `msg_…`.
        delivery_id: String,
        /// Its subscription.
        subscription_id: String,
        /// Its event.
        event_id: String,
        /// The event's type.
        event_type: String,
        /// Which attempt this was, from 1.
        attempt: u32,
        /// `delivered`, `retrying`, `dead_letter`, `skipped` or `cancelled`.
        outcome: &'static str,
        /// The receiver's status code, if it answered.
        status_code: Option<u16>,
        /// What went wrong, or why the adapter skipped.
        error: Option<String>,
        /// How long the attempt took, in milliseconds.
        latency_ms: u64,
        /// When the attempt started, RFC 3339 with milliseconds.
        at: String,
    },
}

impl FeedItem {
    /// The SSE event name: `event.accepted` or `delivery.outcome`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::EventAccepted { .. } => "event.accepted",
            Self::DeliveryOutcome { .. } => "delivery.outcome",
        }
    }

    fn event_type(&self) -> &str {
        match self {
            Self::EventAccepted { event_type, .. } | Self::DeliveryOutcome { event_type, .. } => {
                event_type
            }
        }
    }

    fn concerns(&self, subscription: &str) -> bool {
        match self {
            Self::EventAccepted { subscriptions, .. } => {
                subscriptions.iter().any(|s| s == subscription)
            }
            Self::DeliveryOutcome {
                subscription_id, ..
            } => subscription_id == subscription,
        }
    }
}

/// A feed item with its id.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Position in this process's feed, from 1.
    pub seq: u64,
    /// The item.
    pub item: Arc<FeedItem>,
}

/// Which items a reader wants: types matching one of `patterns` (all when empty), and
/// only those about `subscription` when set.
#[derive(Debug, Default)]
pub struct FeedFilter {
    patterns: Option<Router>,
    subscription: Option<String>,
}

impl FeedFilter {
    /// A filter on type patterns (already validated, as subscriptions' are) and a
    /// subscription.
    pub fn new(patterns: &[String], subscription: Option<String>) -> Self {
        let patterns = (!patterns.is_empty()).then(|| {
            let mut router = Router::default();
            for p in patterns {
                router.insert(p, 0);
            }
            router
        });
        Self {
            patterns,
            subscription,
        }
    }

    /// Whether `item` passes.
    pub fn admits(&self, item: &FeedItem) -> bool {
        self.patterns
            .as_ref()
            .is_none_or(|r| !r.matching(item.event_type()).is_empty())
            && self
                .subscription
                .as_deref()
                .is_none_or(|s| item.concerns(s))
    }
}

/// Where a resumed reader starts.
#[derive(Debug, PartialEq, Eq)]
pub enum Resume {
    /// Nothing was missed, or everything missed is in the backlog.
    Complete,
    /// Some items after the given id are gone (too old, or the id is from another
    /// process); the reader gets what is left.
    Gap,
}

/// The feed. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Feed {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Random per process, so ids of an earlier run are not mistaken for this one's.
    boot: String,
    sender: broadcast::Sender<Entry>,
    /// The last [`BACKLOG`] entries and the next sequence number. Publishing holds the
    /// lock while it sends, so a reader that subscribes under it sees every later item on
    /// its receiver and every earlier one in the backlog, none twice.
    state: Mutex<(VecDeque<Entry>, u64)>,
}

impl Default for Feed {
    fn default() -> Self {
        Self::new()
    }
}

impl Feed {
    /// An empty feed.
    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(CHANNEL);
        Self {
            inner: Arc::new(Inner {
                boot: format!("{:08x}", rand::random::<u32>()),
                sender,
                state: Mutex::new((VecDeque::with_capacity(BACKLOG), 1)),
            }),
        }
    }

    /// Adds an item; never blocks on readers.
    pub fn publish(&self, item: FeedItem) {
        let mut state = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        let entry = Entry {
            seq: state.1,
            item: Arc::new(item),
        };
        state.1 += 1;
        if state.0.len() == BACKLOG {
            state.0.pop_front();
        }
        state.0.push_back(entry.clone());
        // No receiver is fine: nobody is watching.
        let _ = self.inner.sender.send(entry);
    }

    /// The id of an entry, as sent in SSE `id:` lines.
    pub fn id(&self, entry: &Entry) -> String {
        format!("{}-{}", self.inner.boot, entry.seq)
    }

    /// A receiver of items published from now on, and, when `last_id` is given, the
    /// backlog entries after it and whether some were lost.
    pub fn subscribe(
        &self,
        last_id: Option<&str>,
    ) -> (Vec<Entry>, Resume, broadcast::Receiver<Entry>) {
        let state = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        let receiver = self.inner.sender.subscribe();
        let Some(last_id) = last_id else {
            return (Vec::new(), Resume::Complete, receiver);
        };
        let (backlog, next) = (&state.0, state.1);
        let (replay, resume) = resume_from(&self.inner.boot, last_id, backlog, next);
        (replay, resume, receiver)
    }
}

/// The pure part of resuming: which backlog entries follow `last_id`, and whether any
/// after it are gone.
fn resume_from(
    boot: &str,
    last_id: &str,
    backlog: &VecDeque<Entry>,
    next: u64,
) -> (Vec<Entry>, Resume) {
    let seq = last_id
        .split_once('-')
        .filter(|(b, _)| *b == boot)
        .and_then(|(_, s)| s.parse::<u64>().ok())
        .filter(|s| *s < next);
    let Some(seq) = seq else {
        return (backlog.iter().cloned().collect(), Resume::Gap);
    };
    let oldest = backlog.front().map_or(next, |e| e.seq);
    let resume = if seq + 1 >= oldest {
        Resume::Complete
    } else {
        Resume::Gap
    };
    let replay = backlog.iter().filter(|e| e.seq > seq).cloned().collect();
    (replay, resume)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(event_type: &str, subs: &[&str]) -> FeedItem {
        FeedItem::EventAccepted {
            event_id: "evt_1".into(),
            event_type: event_type.into(),
            subscriptions: subs.iter().map(|s| s.to_string()).collect(),
            at: "2026-06-13T12:00:00Z".into(),
        }
    }

    #[test]
    fn filters_take_type_patterns_and_a_subscription() {
        let item = accepted("host.disk.full", &["sub_a"]);
        assert!(FeedFilter::default().admits(&item));
        assert!(FeedFilter::new(&["host.*".into()], None).admits(&item));
        assert!(FeedFilter::new(&["cert.*".into(), "*".into()], None).admits(&item));
        assert!(!FeedFilter::new(&["cert.*".into()], None).admits(&item));
        assert!(FeedFilter::new(&[], Some("sub_a".into())).admits(&item));
        assert!(!FeedFilter::new(&[], Some("sub_b".into())).admits(&item));
        assert!(!FeedFilter::new(&["host.*".into()], Some("sub_b".into())).admits(&item));
    }

    #[test]
    fn resume_replays_the_backlog_after_the_id_and_reports_gaps() {
        let feed = Feed::new();
        for i in 0..(BACKLOG + 10) {
            feed.publish(accepted(&format!("t{i}"), &[]));
        }
        let boot = feed.inner.boot.clone();
        // Within the backlog: exactly what followed.
        let last = format!("{boot}-{}", BACKLOG + 5);
        let (replay, resume, _) = feed.subscribe(Some(&last));
        assert_eq!(resume, Resume::Complete);
        assert_eq!(
            replay.iter().map(|e| e.seq).collect::<Vec<_>>(),
            ((BACKLOG as u64 + 6)..=(BACKLOG as u64 + 10)).collect::<Vec<_>>()
        );
        // Up to date: nothing to replay.
        let (replay, resume, _) = feed.subscribe(Some(&format!("{boot}-{}", BACKLOG + 10)));
        assert!(replay.is_empty());
        assert_eq!(resume, Resume::Complete);
        // Too old: the whole backlog, and a gap.
        let (replay, resume, _) = feed.subscribe(Some(&format!("{boot}-3")));
        assert_eq!(resume, Resume::Gap);
        assert_eq!(replay.len(), BACKLOG);
        // Another process's id, or nonsense: a gap.
        for other in ["deadbeef-5", "5", "", &format!("{boot}-999999")] {
            assert_eq!(feed.subscribe(Some(other)).1, Resume::Gap, "{other}");
        }
        // No id: live only.
        let (replay, resume, _) = feed.subscribe(None);
        assert!(replay.is_empty());
        assert_eq!(resume, Resume::Complete);
    }

    #[tokio::test]
    async fn readers_get_items_published_after_they_subscribe() {
        let feed = Feed::new();
        feed.publish(accepted("before", &[]));
        let (_, _, mut rx) = feed.subscribe(None);
        feed.publish(accepted("after", &[]));
        let entry = rx.recv().await.unwrap();
        assert_eq!(entry.seq, 2);
        assert_eq!(entry.item.event_type(), "after");
        assert!(feed.id(&entry).ends_with("-2"));
    }
}
