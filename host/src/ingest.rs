//! The ingest service: the one path every producer takes (the HTTP API, the test endpoint,
//! NATS sources, programs embedding the engine, the engine's own events, the bench preload).
//!
//! It validates each [`EventDraft`], routes the event to the subscriptions that want it,
//! mints one delivery id per match, writes the event with its deliveries in one transaction
//! (durable before it returns), wakes the scheduler and counts. Nothing else writes events.

use std::sync::Arc;

use tokio::sync::Notify;

use crate::clock::now_ms;
use crate::event::catalog::EventTypes;
use crate::event::{Event, EventDraft, EventError, EventLimits, Publisher, new_id};
use crate::feed::{Feed, FeedItem};
use crate::metrics::Metrics;
use crate::plugins::Registry;
use crate::store::{IngestResult, NewDelivery, NewEvent, Store, StoreError};
use crate::subscription::Subscriptions;

/// Why nothing was stored.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// An event is invalid; `index` is its place in a batch.
    #[error("{}{error}", index.map(|i| format!("event {i}: ")).unwrap_or_default())]
    Invalid {
        /// Which event of a batch, if it was one.
        index: Option<usize>,
        /// What is wrong with it.
        error: EventError,
    },
    /// A targeted publish named a subscription that does not exist.
    #[error("no subscription `{0}`")]
    UnknownSubscription(String),
    /// The store could not take it; nothing was stored.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl IngestError {
    fn at(index: Option<usize>) -> impl Fn(EventError) -> Self {
        move |error| Self::Invalid { index, error }
    }
}

/// What ingest did: one result per event, in order, and problems that did not stop them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// One per event.
    pub results: Vec<IngestResult>,
    /// For example a matching subscription whose plugin is not loaded (its delivery is
    /// stored and waits for it). Sorted, without repeats.
    pub warnings: Vec<String>,
}

/// The ingest service. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Ingest {
    store: Arc<dyn Store>,
    subscriptions: Arc<Subscriptions>,
    /// To warn about matching subscriptions whose plugin is not loaded; `None` where no
    /// plugins run (the bench preload).
    registry: Option<Arc<Registry>>,
    /// The scheduler's wake-up, poked after each write; `None` where the store pokes it
    /// itself at the commit (`Store::ingest_commits`).
    wake: Option<Arc<Notify>>,
    metrics: Metrics,
    limits: EventLimits,
    /// Where accepted events are announced (`/v1/stream`); `None` where nobody watches.
    feed: Option<Feed>,
    /// The declared types whose schemas producers' events are held to.
    event_types: Arc<EventTypes>,
}

impl Ingest {
    /// A service writing to `store`, routing with `subscriptions`, and waking `wake` (the
    /// scheduler) after each write, unless the store wakes the scheduler at the commit.
    pub fn new(
        store: Arc<dyn Store>,
        subscriptions: Arc<Subscriptions>,
        registry: Option<Arc<Registry>>,
        wake: Arc<Notify>,
        metrics: Metrics,
        limits: EventLimits,
    ) -> Self {
        let wake = store.ingest_commits().is_none().then_some(wake);
        Self {
            store,
            subscriptions,
            registry,
            wake,
            metrics,
            limits,
            feed: None,
            event_types: Arc::default(),
        }
    }

    /// Announces every newly accepted event on `feed`.
    pub fn with_feed(mut self, feed: Feed) -> Self {
        self.feed = Some(feed);
        self
    }

    /// The same service, holding producers' events to the schemas of `event_types`.
    pub fn with_event_types(mut self, event_types: Arc<EventTypes>) -> Self {
        self.event_types = event_types;
        self
    }

    /// The declared event types.
    pub fn event_types(&self) -> &EventTypes {
        &self.event_types
    }

    /// Validates a producer's draft, then holds it to its type's schema; a schema warning
    /// (`warn` mode) goes to `warnings`.
    fn accept(
        &self,
        draft: EventDraft,
        now: i64,
        warnings: &mut Vec<String>,
    ) -> Result<Event, EventError> {
        let event = draft.validate(now, &self.limits, Publisher::Producer)?;
        if let Some(warning) = self.event_types.check(&event)? {
            tracing::warn!(event = %event.id, "{warning}");
            warnings.push(warning);
        }
        Ok(event)
    }

    /// What drafts are held to.
    pub fn limits(&self) -> &EventLimits {
        &self.limits
    }

    /// Publishes one event from a producer; returns once it is durable. `traceparent`
    /// (W3C) is kept with it, the parent of its delivery attempts' spans.
    pub async fn publish(
        &self,
        draft: EventDraft,
        traceparent: Option<String>,
    ) -> Result<Accepted, IngestError> {
        let mut warnings = Vec::new();
        let mut event = self
            .accept(draft, now_ms(), &mut warnings)
            .map_err(IngestError::at(None))?;
        event.traceparent = traceparent;
        self.store_routed(vec![event], &[], warnings).await
    }

    /// Publishes up to [`crate::event::MAX_BATCH_EVENTS`] events from a producer under one
    /// commit. If any is invalid, none is stored and the error names its index.
    /// Each event keeps `traceparent`, like a single one.
    pub async fn publish_batch(
        &self,
        drafts: Vec<EventDraft>,
        traceparent: Option<String>,
    ) -> Result<Accepted, IngestError> {
        if drafts.len() > crate::event::MAX_BATCH_EVENTS {
            return Err(IngestError::at(None)(EventError::BatchTooLarge));
        }
        let now = now_ms();
        let mut warnings = Vec::new();
        let events = drafts
            .into_iter()
            .enumerate()
            .map(|(i, d)| {
                let mut event = self
                    .accept(d, now, &mut warnings)
                    .map_err(IngestError::at(Some(i)))?;
                event.traceparent.clone_from(&traceparent);
                Ok::<_, IngestError>(event)
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.store_routed(events, &[], warnings).await
    }

    /// Publishes what is valid among `drafts` under one commit and refuses the rest, each
    /// on its own: one result per draft, in order. For sources, where one bad message must
    /// not hold back the others. Only a store failure fails the whole call.
    pub async fn publish_each(
        &self,
        drafts: Vec<EventDraft>,
    ) -> Result<Vec<Result<IngestResult, EventError>>, StoreError> {
        let now = now_ms();
        let mut warnings = Vec::new();
        let mut batch = Vec::new();
        // `None` where the draft is valid and its result comes from the store.
        let refused: Vec<Option<EventError>> = drafts
            .into_iter()
            .map(|d| match self.accept(d, now, &mut warnings) {
                Ok(event) => {
                    batch.push(self.route(event, &[], &mut warnings));
                    None
                }
                Err(e) => Some(e),
            })
            .collect();
        let mut stored = if batch.is_empty() {
            Vec::new()
        } else {
            self.write(batch).await?
        }
        .into_iter();
        Ok(refused
            .into_iter()
            .map(|r| match r {
                Some(e) => Err(e),
                None => Ok(stored
                    .next()
                    .expect("the store returns one result per event")),
            })
            .collect())
    }

    /// Publishes one of the engine's own events (`wasmhook.*`), routed like any other,
    /// except that it is never delivered to the subscriptions it is `about`.
    pub async fn publish_own(
        &self,
        draft: EventDraft,
        about: &[String],
    ) -> Result<Accepted, IngestError> {
        let event = draft
            .validate(now_ms(), &self.limits, Publisher::Engine)
            .map_err(IngestError::at(None))?;
        self.store_routed(vec![event], about, Vec::new()).await
    }

    /// Publishes one of the engine's own events to exactly one subscription, whatever its
    /// patterns and filter say (the test endpoint). Returns the delivery id.
    pub async fn publish_to(
        &self,
        draft: EventDraft,
        subscription_id: &str,
    ) -> Result<String, IngestError> {
        if self.subscriptions.catalog().get(subscription_id).is_none() {
            return Err(IngestError::UnknownSubscription(subscription_id.to_owned()));
        }
        let event = draft
            .validate(now_ms(), &self.limits, Publisher::Engine)
            .map_err(IngestError::at(None))?;
        let delivery = new_id("msg");
        let new = NewEvent {
            event,
            deliveries: vec![NewDelivery {
                id: delivery.clone(),
                subscription_id: subscription_id.to_owned(),
            }],
        };
        self.write(vec![new]).await?;
        Ok(delivery)
    }

    /// Routes each event and writes them all under one commit.
    async fn store_routed(
        &self,
        events: Vec<Event>,
        exclude: &[String],
        mut warnings: Vec<String>,
    ) -> Result<Accepted, IngestError> {
        let batch = events
            .into_iter()
            .map(|event| self.route(event, exclude, &mut warnings))
            .collect();
        let results = self.write(batch).await?;
        warnings.sort();
        warnings.dedup();
        Ok(Accepted { results, warnings })
    }

    /// One delivery per matching subscription (but those in `exclude`), plus a warning for
    /// each whose plugin is not loaded.
    fn route(&self, event: Event, exclude: &[String], warnings: &mut Vec<String>) -> NewEvent {
        let catalog = self.subscriptions.catalog();
        let deliveries = catalog
            .matching(&event)
            .into_iter()
            .filter(|sub| !exclude.contains(&sub.id))
            .map(|sub| {
                if let (Some(plugin), Some(registry)) = (&sub.plugin, &self.registry)
                    && registry.get(plugin).is_none()
                {
                    warnings.push(format!(
                        "subscription `{}`: plugin `{plugin}` is not loaded (no {plugin}.wasm in {}); its delivery waits until it is",
                        sub.id,
                        registry.dir().display()
                    ));
                }
                NewDelivery {
                    id: new_id("msg"),
                    subscription_id: sub.id.clone(),
                }
            })
            .collect();
        NewEvent { event, deliveries }
    }

    /// Writes, wakes the scheduler and counts what was new.
    async fn write(&self, batch: Vec<NewEvent>) -> Result<Vec<IngestResult>, StoreError> {
        let announced = self.feed.as_ref().map(|_| {
            batch
                .iter()
                .map(|new| FeedItem::EventAccepted {
                    event_id: new.event.id.clone(),
                    event_type: new.event.kind.clone(),
                    subscriptions: new
                        .deliveries
                        .iter()
                        .map(|d| d.subscription_id.clone())
                        .collect(),
                    at: new.event.timestamp(),
                })
                .collect::<Vec<_>>()
        });
        // Accepted events are announced at the commit, before their deliveries can be
        // claimed, so the feed shows each event before its outcomes.
        let results = match (&self.feed, announced) {
            (Some(feed), Some(items)) => {
                let feed = feed.clone();
                let announce = Box::new(move |results: &[IngestResult]| {
                    for (item, result) in items.into_iter().zip(results) {
                        if !result.duplicate {
                            feed.publish(item);
                        }
                    }
                });
                self.store.ingest_announcing(batch, announce).await?
            }
            _ => self.store.ingest(batch).await?,
        };
        if let Some(wake) = &self.wake {
            wake.notify_one();
        }
        let fresh = results.iter().filter(|r| !r.duplicate);
        let (events, deliveries) =
            fresh.fold((0, 0), |(e, d), r| (e + 1, d + u64::from(r.deliveries)));
        self.metrics.ingested(events, deliveries);
        Ok(results)
    }
}
