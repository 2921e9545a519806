//! `Catalog`: an immutable snapshot of the subscriptions with its routing index, and
//! `Subscriptions`: the service that rebuilds it from the store whenever they change.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

use super::filter::FilterInput;
use super::spec::{SpecError, Subscription, SubscriptionSpec};
use crate::clock::now_ms;
use crate::config::DeliveryConfig;
use crate::event::{ENGINE_TYPE_PREFIX, Event};
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
    ///
    /// The engine's own events (`wasmhook.*`) go only to subscriptions with a pattern that
    /// names that prefix (`wasmhook.*`, `wasmhook.endpoint.*`, …), never through a bare `*`:
    /// a catch-all receiver, perhaps a customer's, must not get news about other
    /// subscriptions' endpoints unless an operator asked for it.
    pub fn matching(&self, event: &Event) -> Vec<Arc<Subscription>> {
        let mut input: Option<FilterInput> = None;
        let own = event.kind.starts_with(ENGINE_TYPE_PREFIX);
        self.router
            .matching(&event.kind)
            .into_iter()
            .map(|i| &self.subscriptions[i])
            .filter(|sub| !own || sub.patterns.iter().any(|p| names_engine_prefix(p)))
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

/// Why a stored subscription cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The stored spec is not one this engine can read.
    #[error("unreadable spec: {0}")]
    Unreadable(String),
    /// The spec no longer validates (a rule got stricter, say).
    #[error(transparent)]
    Invalid(#[from] SpecError),
}

/// Whether `pattern` starts with the engine's own segment (`wasmhook.…`).
fn names_engine_prefix(pattern: &str) -> bool {
    pattern.split('.').next() == ENGINE_TYPE_PREFIX.strip_suffix('.')
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
        let old = self.current.load_full();
        let built: Vec<Subscription> = stored
            .iter()
            .filter_map(|s| match self.build(s) {
                Ok(mut sub) => {
                    // A subscription that lives on keeps its token, so its running calls
                    // carry on; a disabled one's token is cancelled below.
                    if let Some(before) = old.get(&sub.id).filter(|b| b.enabled && sub.enabled) {
                        sub.cancel = before.cancel.clone();
                    }
                    Some(sub)
                }
                Err(e) => {
                    tracing::error!(subscription = %s.id, error = %e, "stored subscription is invalid; it is skipped");
                    None
                }
            })
            .collect();
        let next = Arc::new(Catalog::new(built));
        for before in old.iter() {
            let lives = before.enabled && next.get(&before.id).is_some_and(|now| now.enabled);
            if !lives {
                before.cancel.cancel();
            }
        }
        self.current.store(next);
        Ok(())
    }

    /// Builds the runtime subscription of a stored one.
    pub fn build(&self, stored: &StoredSubscription) -> Result<Subscription, BuildError> {
        let spec: SubscriptionSpec = serde_json::from_str(&stored.spec)
            .map_err(|e| BuildError::Unreadable(e.to_string()))?;
        let mut sub = spec.build(&stored.id, stored.source, &self.defaults)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SubscriptionSource;
    use crate::subscription::StoredSecret;

    fn sub(id: &str, events: &[&str]) -> Subscription {
        SubscriptionSpec {
            url: "https://hooks.example.com/x".into(),
            events: events.iter().map(|e| (*e).to_owned()).collect(),
            secrets: vec![StoredSecret {
                secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
                expires_at_ms: None,
            }],
            ..SubscriptionSpec::default()
        }
        .build(id, SubscriptionSource::Api, &DeliveryConfig::default())
        .expect("valid")
    }

    fn ids(catalog: &Catalog, kind: &str) -> Vec<String> {
        let event = Event {
            id: "evt_1".into(),
            kind: kind.into(),
            created_at_ms: 0,
            data: "{}".into(),
            traceparent: None,
        };
        let mut ids: Vec<String> = catalog
            .matching(&event)
            .iter()
            .map(|s| s.id.clone())
            .collect();
        ids.sort();
        ids
    }

    #[test]
    fn engine_events_need_a_pattern_that_names_them() {
        let catalog = Catalog::new(vec![
            sub("all", &["*"]),
            sub("ops", &["wasmhook.*"]),
            sub("circuits", &["wasmhook.endpoint.*"]),
            sub("hosts", &["host.*"]),
        ]);
        assert_eq!(
            ids(&catalog, "wasmhook.endpoint.circuit_opened"),
            ["circuits", "ops"]
        );
        assert_eq!(ids(&catalog, "wasmhook.plugin.loaded"), ["ops"]);
        assert_eq!(ids(&catalog, "host.down"), ["all", "hosts"]);
    }
}
