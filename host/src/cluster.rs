//! What this node knows about the others sharing its store: the heartbeat that renews its
//! leases and tells the others it is alive (with the plugins it serves), and the follower
//! that reloads the subscription catalog when another node changes it.
//!
//! With the embedded store there is one node, this one; both loops still run, cheaply, so
//! one code path serves both backends.
//!
//! Rate limits are kept per node, with each subscription's limit divided by the number of
//! live nodes (see `Cluster::live_nodes`). That costs no database round trip per delivery;
//! the price is that the total rate can fall below the limit while load is uneven between
//! nodes, or briefly exceed it for a heartbeat after a node joins. Circuit breakers are per
//! node too: each node learns on its own that an endpoint is down, so a dead endpoint gets
//! at most one probe per node per cooldown.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{Notify, watch};

use crate::clock::now_ms;
use crate::plugins::Registry;
use crate::store::{NodeReport, NodeStatus, Store};
use crate::subscription::Subscriptions;

/// How often a node polls the subscriptions version, in case a notification was missed.
const SUBSCRIPTIONS_POLL: Duration = Duration::from_millis(500);

/// The nodes this node last heard of.
#[derive(Debug)]
pub struct Cluster {
    nodes: ArcSwap<Vec<NodeStatus>>,
    live: AtomicUsize,
}

impl Default for Cluster {
    fn default() -> Self {
        Self {
            nodes: ArcSwap::from_pointee(Vec::new()),
            live: AtomicUsize::new(1),
        }
    }
}

impl Cluster {
    /// Live nodes, this one included (at least 1).
    pub fn live_nodes(&self) -> usize {
        self.live.load(Ordering::Relaxed).max(1)
    }

    /// Every node of the last heartbeat, live or recently gone.
    pub fn nodes(&self) -> Arc<Vec<NodeStatus>> {
        self.nodes.load_full()
    }

    fn update(&self, nodes: Vec<NodeStatus>) {
        let live = nodes.iter().filter(|n| n.live).count();
        self.live.store(live.max(1), Ordering::Relaxed);
        self.nodes.store(Arc::new(nodes));
    }

    /// One heartbeat now: renews leases, reports the plugins, refreshes the view.
    pub async fn beat(&self, store: &dyn Store, registry: &Registry, started_at_ms: i64) {
        let plugins = registry
            .list()
            .into_iter()
            .filter_map(|p| Some((p.name, p.sha256?)))
            .collect();
        let report = NodeReport {
            started_at_ms,
            plugins,
        };
        match store.heartbeat(now_ms(), report).await {
            Ok(nodes) => self.update(nodes),
            Err(e) => {
                tracing::error!(error = %e, "heartbeat failed; this node's leases are not renewed until it succeeds")
            }
        }
    }
}

/// Beats every `interval` until `shutdown`.
pub async fn heartbeat_loop(
    cluster: Arc<Cluster>,
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let started_at_ms = now_ms();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => cluster.beat(store.as_ref(), &registry, started_at_ms).await,
            _ = shutdown.changed() => return,
        }
    }
}

/// Reloads the catalog when another node changes subscriptions: at once on a notification,
/// and at the latest after `SUBSCRIPTIONS_POLL`, by comparing the store's version. Wakes
/// the scheduler after a reload, since a newly enabled subscription may have deliveries.
/// Returns at once for a store no other node writes to.
pub async fn follow_subscriptions(
    store: Arc<dyn Store>,
    subscriptions: Arc<Subscriptions>,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(changes) = store.subscription_changes() else {
        return;
    };
    let mut seen = store.subscriptions_version().await.ok();
    loop {
        tokio::select! {
            _ = changes.notified() => {}
            _ = tokio::time::sleep(SUBSCRIPTIONS_POLL) => {}
            _ = shutdown.changed() => return,
        }
        let version = match store.subscriptions_version().await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the subscriptions version; will retry");
                continue;
            }
        };
        if seen == Some(version) {
            continue;
        }
        match subscriptions.reload().await {
            Ok(()) => {
                seen = Some(version);
                tracing::debug!(
                    version,
                    "subscriptions reloaded after a change on another node"
                );
                wake.notify_one();
            }
            Err(e) => tracing::warn!(error = %e, "cannot reload subscriptions; will retry"),
        }
    }
}
