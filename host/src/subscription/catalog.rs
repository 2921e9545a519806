//! `Catalog`: an immutable snapshot of the subscriptions with its routing index, and
//! `Subscriptions`: the service that rebuilds it from the store whenever they change.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

use super::filter::FilterInput;
use super::spec::{Subscription, SubscriptionSpec};
use crate::config::DeliveryConfig;
use crate::event::{Event, now_ms};
use crate::router::Router;
use crate::store::{Store, StoreError, StoredSubscription};

/// An immutable set of subscriptions with its routing index (enabled ones only).
#[derive(Debug, Default)]
pub struct Catalog {
    subscriptions: Vec<Arc<Subscription>>,
    by_id: HashMap<String, usize>,
    router: Router,
}

impl Catalog {
    /// Indexes `subscriptions`; disabled ones are kept for lookups but never routed to.
    pub fn new(subscriptions: Vec<Subscription>) -> Self {
        let mut router = Router::default();
        let mut by_id = HashMap::with_capacity(subscriptions.len());
        for (i, sub) in subscriptions.iter().enumerate() {
            by_id.insert(sub.id.clone(), i);
            if sub.enabled {
                for pattern in &sub.patterns {
                    router.insert(pattern, i);
                }
            }
        }
        Self {
            subscriptions: subscriptions.into_iter().map(Arc::new).collect(),
            by_id,
            router,
        }
    }

    /// The enabled subscriptions that want `event`: one of their patterns matches its type
    /// and their payload filter, if any, passes. The payload is converted for the filters
    /// once, and only when a matching subscription has a filter.
    pub fn matching(&self, event: &Event) -> Vec<Arc<Subscription>> {
        let mut input: Option<FilterInput> = None;
        self.router
            .matching(&event.kind)
            .into_iter()
            .map(|i| &self.subscriptions[i])
            .filter(|sub| match &sub.filter {
                None => true,
                Some(filter) => {
                    filter.matches(input.get_or_insert_with(|| FilterInput::new(event)))
                }
            })
            .map(Arc::clone)
            .collect()
    }

    /// The subscription with this id, enabled or not.
    pub fn get(&self, id: &str) -> Option<&Arc<Subscription>> {
        self.by_id.get(id).map(|&i| &self.subscriptions[i])
    }

    /// Every subscription, by id.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Subscription>> {
        self.subscriptions.iter()
    }

    /// How many subscriptions there are.
    pub fn len(&self) -> usize {
        self.subscriptions.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.subscriptions.is_empty()
    }
}

/// The subscriptions service: the store is the source of truth, this keeps the current
/// catalog built from it.
#[derive(Debug)]
pub struct Subscriptions {
    store: Arc<dyn Store>,
    defaults: DeliveryConfig,
    current: ArcSwap<Catalog>,
}

impl Subscriptions {
    /// Loads the catalog from `store`.
    pub async fn load(store: Arc<dyn Store>, defaults: DeliveryConfig) -> Result<Self, StoreError> {
        let this = Self {
            store,
            defaults,
            current: ArcSwap::from_pointee(Catalog::default()),
        };
        this.reload().await?;
        Ok(this)
    }

    /// The current snapshot.
    pub fn catalog(&self) -> Guard<Arc<Catalog>> {
        self.current.load()
    }

    /// The defaults specs are built with.
    pub fn defaults(&self) -> &DeliveryConfig {
        &self.defaults
    }

    /// Rebuilds the catalog from the store. A stored spec that no longer validates (for
    /// example after an engine upgrade tightened a rule) is logged and left out.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let stored = self.store.subscriptions().await?;
        let built = stored.iter().filter_map(|s| match self.build(s) {
            Ok(sub) => Some(sub),
            Err(e) => {
                tracing::error!(subscription = %s.id, error = %e, "stored subscription is invalid; it is skipped");
                None
            }
        });
        self.current.store(Arc::new(Catalog::new(built.collect())));
        Ok(())
    }

    /// Builds the runtime subscription of a stored one.
    pub fn build(&self, stored: &StoredSubscription) -> Result<Subscription, String> {
        let spec: SubscriptionSpec =
            serde_json::from_str(&stored.spec).map_err(|e| format!("unreadable spec: {e}"))?;
        let mut sub = spec
            .build(&stored.id, stored.source, &self.defaults)
            .map_err(|e| e.to_string())?;
        sub.enabled = stored.enabled;
        sub.disabled_reason = stored.disabled_reason.clone();
        Ok(sub)
    }

    /// Disables a subscription (for example after `410 Gone`) and rebuilds the catalog.
    pub async fn disable(&self, id: &str, reason: String) -> Result<(), StoreError> {
        if self
            .store
            .set_subscription_enabled(id, false, Some(reason.clone()), now_ms())
            .await?
        {
            tracing::warn!(subscription = id, reason, "subscription disabled");
        }
        self.reload().await
    }
}
