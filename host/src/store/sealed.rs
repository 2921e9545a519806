//! `SealedStore`: encrypts subscription specs at rest around any backend.
//!
//! A subscription's spec holds everything secret about it: signing secrets, secret
//! settings and headers, credentials in its URL. The store treats the spec as opaque text,
//! so the whole spec is sealed (see [`crate::keyring`]) on its way in and opened on its
//! way out, with the subscription id as context. The backends never see a plaintext spec,
//! and nothing about which fields are secret has to be known here: a field added to the
//! spec later is encrypted too.
//!
//! At open, every row not sealed with the ring's first key (a row from before encryption,
//! or one sealed with an older key) is sealed again in place. A row that no configured key
//! opens stops the start, naming the subscription and the key it needs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{
    Claim, DeliveryDetail, DeliveryFilter, DeliverySummary, IngestResult, NewEvent, NodeReport,
    NodeStatus, PurgeCutoffs, Purged, QueueDepth, ReplayFilter, RetryOutcome, SpecRewrite, Store,
    StoreError, StoredHealth, StoredSubscription,
};
use crate::keyring::{Keyring, is_sealed};

/// A store whose subscription specs are encrypted.
#[derive(Debug, Clone)]
pub struct SealedStore {
    inner: Arc<dyn Store>,
    keys: Arc<Keyring>,
}

/// The context a spec is sealed for: its subscription, so it cannot move to another row.
fn context(id: &str) -> String {
    format!("subscription:{id}")
}

/// Seals the spec of subscription `id`.
pub(super) fn seal_spec(keys: &Keyring, id: &str, spec: &str) -> String {
    keys.seal(&context(id), spec.as_bytes())
}

/// The plaintext of a stored spec. A spec written before encryption existed (by an older
/// engine) is plain JSON and is taken as it is.
pub(super) fn open_spec(keys: &Keyring, id: &str, stored: &str) -> Result<String, StoreError> {
    if !is_sealed(stored) {
        return Ok(stored.to_owned());
    }
    let undecryptable = |reason: String| StoreError::Undecryptable {
        id: id.to_owned(),
        reason,
    };
    let plain = keys
        .open(&context(id), stored)
        .map_err(|e| undecryptable(e.to_string()))?;
    String::from_utf8(plain).map_err(|_| undecryptable("it is not UTF-8 text".into()))
}

impl SealedStore {
    /// Wraps `inner`, first sealing again every spec that is not sealed with the ring's
    /// first key.
    pub async fn open(inner: Arc<dyn Store>, keys: Keyring) -> Result<Self, StoreError> {
        let this = Self {
            inner,
            keys: Arc::new(keys),
        };
        let resealed = this.reseal().await?;
        if resealed > 0 {
            tracing::info!(
                subscriptions = resealed,
                key = this.keys.primary_id(),
                "encrypted subscriptions with the current storage key"
            );
        }
        Ok(this)
    }

    /// The keys.
    pub fn keys(&self) -> &Keyring {
        &self.keys
    }

    /// Seals every spec that is plain text or sealed with another key than the first;
    /// returns how many were rewritten.
    async fn reseal(&self) -> Result<u64, StoreError> {
        let mut rewrites = Vec::new();
        for row in self.inner.subscriptions().await? {
            if self.keys.is_current(&row.spec) {
                continue;
            }
            let spec = open_spec(&self.keys, &row.id, &row.spec)?;
            rewrites.push(SpecRewrite {
                new: seal_spec(&self.keys, &row.id, &spec),
                id: row.id,
                old: row.spec,
            });
        }
        if rewrites.is_empty() {
            return Ok(0);
        }
        self.inner.rewrite_specs(rewrites).await
    }

    fn seal(&self, mut sub: StoredSubscription) -> StoredSubscription {
        sub.spec = seal_spec(&self.keys, &sub.id, &sub.spec);
        sub
    }
}

#[async_trait]
impl Store for SealedStore {
    async fn subscriptions(&self) -> Result<Vec<StoredSubscription>, StoreError> {
        let rows = self.inner.subscriptions().await?;
        Ok(rows
            .into_iter()
            .filter_map(|mut row| match open_spec(&self.keys, &row.id, &row.spec) {
                Ok(spec) => {
                    row.spec = spec;
                    Some(row)
                }
                Err(e) => {
                    // Another node wrote it with a key this one lacks: keep the others.
                    tracing::error!(error = %e, "a subscription is left out; give every node the same storage keys");
                    None
                }
            })
            .collect())
    }

    async fn put_subscription(&self, subscription: StoredSubscription) -> Result<(), StoreError> {
        self.inner.put_subscription(self.seal(subscription)).await
    }

    async fn create_subscription(
        &self,
        subscription: StoredSubscription,
    ) -> Result<bool, StoreError> {
        self.inner
            .create_subscription(self.seal(subscription))
            .await
    }

    async fn sync_config_subscriptions(
        &self,
        subscriptions: Vec<StoredSubscription>,
    ) -> Result<(), StoreError> {
        let sealed = subscriptions.into_iter().map(|s| self.seal(s)).collect();
        self.inner.sync_config_subscriptions(sealed).await
    }

    async fn rewrite_specs(&self, rewrites: Vec<SpecRewrite>) -> Result<u64, StoreError> {
        // Already stored text on both sides: nothing to seal.
        self.inner.rewrite_specs(rewrites).await
    }

    // Everything below holds no secret and passes through.

    async fn ingest(&self, batch: Vec<NewEvent>) -> Result<Vec<IngestResult>, StoreError> {
        self.inner.ingest(batch).await
    }

    async fn ingest_announcing(
        &self,
        batch: Vec<NewEvent>,
        committed: super::Committed,
    ) -> Result<Vec<IngestResult>, StoreError> {
        self.inner.ingest_announcing(batch, committed).await
    }

    async fn claim_due(
        &self,
        now_ms: i64,
        limit: usize,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        self.inner.claim_due(now_ms, limit, lease).await
    }

    async fn record(&self, records: Vec<super::AttemptRecord>) -> Result<(), StoreError> {
        self.inner.record(records).await
    }

    async fn delivery(&self, id: &str) -> Result<Option<DeliveryDetail>, StoreError> {
        self.inner.delivery(id).await
    }

    async fn list_deliveries(
        &self,
        filter: DeliveryFilter,
    ) -> Result<Vec<DeliverySummary>, StoreError> {
        self.inner.list_deliveries(filter).await
    }

    async fn retry_delivery(&self, id: &str, now_ms: i64) -> Result<RetryOutcome, StoreError> {
        self.inner.retry_delivery(id, now_ms).await
    }

    async fn replay_dead_letters(
        &self,
        filter: ReplayFilter,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        self.inner.replay_dead_letters(filter, now_ms).await
    }

    async fn unpark(&self, key: &str, now_ms: i64) -> Result<u64, StoreError> {
        self.inner.unpark(key, now_ms).await
    }

    async fn queue_depth(&self, now_ms: i64) -> Result<QueueDepth, StoreError> {
        self.inner.queue_depth(now_ms).await
    }

    async fn delete_subscription(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        self.inner.delete_subscription(id, now_ms).await
    }

    async fn subscription_health(
        &self,
        id: Option<&str>,
        now_ms: i64,
    ) -> Result<HashMap<String, StoredHealth>, StoreError> {
        self.inner.subscription_health(id, now_ms).await
    }

    async fn purge_deliveries(
        &self,
        cutoffs: PurgeCutoffs,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<Purged, StoreError> {
        self.inner.purge_deliveries(cutoffs, cursor, limit).await
    }

    async fn purge_events(
        &self,
        cutoffs: PurgeCutoffs,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<Purged, StoreError> {
        self.inner.purge_events(cutoffs, cursor, limit).await
    }

    async fn reclaim(&self) -> Result<bool, StoreError> {
        self.inner.reclaim().await
    }

    async fn set_subscription_enabled(
        &self,
        id: &str,
        enabled: bool,
        reason: Option<String>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.inner
            .set_subscription_enabled(id, enabled, reason, now_ms)
            .await
    }

    async fn heartbeat(
        &self,
        now_ms: i64,
        report: NodeReport,
    ) -> Result<Vec<NodeStatus>, StoreError> {
        self.inner.heartbeat(now_ms, report).await
    }

    async fn subscriptions_version(&self) -> Result<i64, StoreError> {
        self.inner.subscriptions_version().await
    }

    fn subscription_changes(&self) -> Option<Arc<tokio::sync::Notify>> {
        self.inner.subscription_changes()
    }

    fn ingest_commits(&self) -> Option<Arc<tokio::sync::Notify>> {
        self.inner.ingest_commits()
    }

    fn node_id(&self) -> &str {
        self.inner.node_id()
    }

    fn commit_seconds(&self) -> Option<prometheus_client::metrics::histogram::Histogram> {
        self.inner.commit_seconds()
    }

    async fn check_writable(&self, now_ms: i64) -> Result<(), StoreError> {
        self.inner.check_writable(now_ms).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{EmbeddedStore, SubscriptionSource};

    const SPEC: &str = r#"{"url":"https://example.com/hook","secrets":["whsec_plaintext-canary"]}"#;

    fn ring(keys: &[u8]) -> Keyring {
        Keyring::new(keys.iter().map(|&n| [n; 32])).unwrap()
    }

    fn sub(id: &str, spec: &str) -> StoredSubscription {
        StoredSubscription {
            id: id.into(),
            source: SubscriptionSource::Api,
            spec: spec.into(),
            enabled: true,
            disabled_reason: None,
            created_at_ms: 1,
            updated_at_ms: 1,
        }
    }

    fn temp_dir() -> std::path::PathBuf {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("wasmhook-sealed-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn embedded(dir: &std::path::Path) -> Arc<dyn Store> {
        Arc::new(EmbeddedStore::open(dir, 0).unwrap())
    }

    /// `raw` behind a `SealedStore` with the keys numbered `keys`.
    async fn sealed_over(raw: &Arc<dyn Store>, keys: &[u8]) -> SealedStore {
        SealedStore::open(Arc::clone(raw), ring(keys))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_backend_holds_only_sealed_specs_and_reads_give_them_back() {
        let dir = temp_dir();
        let raw = embedded(&dir);
        let sealed = sealed_over(&raw, &[1]).await;
        sealed.put_subscription(sub("a", SPEC)).await.unwrap();
        sealed
            .sync_config_subscriptions(vec![sub("c", SPEC)])
            .await
            .unwrap();
        assert!(sealed.create_subscription(sub("n", SPEC)).await.unwrap());
        for row in raw.subscriptions().await.unwrap() {
            assert!(row.spec.starts_with("whsealed:v1:"), "{}", row.spec);
            assert!(!row.spec.contains("canary"));
        }
        let read = sealed.subscriptions().await.unwrap();
        assert_eq!(read.len(), 3);
        assert!(read.iter().all(|r| r.spec == SPEC));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn plaintext_rows_and_rows_of_an_older_key_are_sealed_again_at_open() {
        let dir = temp_dir();
        let raw = embedded(&dir);
        raw.put_subscription(sub("legacy", SPEC)).await.unwrap();
        let old = sealed_over(&raw, &[1]).await;
        old.put_subscription(sub("old", SPEC)).await.unwrap();
        let old_id = old.keys().primary_id().to_owned();

        let rotated = sealed_over(&raw, &[2, 1]).await;
        let new_id = rotated.keys().primary_id().to_owned();
        for row in raw.subscriptions().await.unwrap() {
            assert!(
                row.spec.starts_with(&format!("whsealed:v1:{new_id}:")),
                "{}: {}",
                row.id,
                row.spec
            );
        }
        // Now only the new key is needed.
        let new_only = sealed_over(&raw, &[2]).await;
        let read = new_only.subscriptions().await.unwrap();
        assert_eq!(read.len(), 2);
        assert!(read.iter().all(|r| r.spec == SPEC));
        assert_ne!(old_id, new_id);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_missing_key_stops_the_open_naming_the_subscription_and_the_key() {
        let dir = temp_dir();
        let raw = embedded(&dir);
        let first = sealed_over(&raw, &[1]).await;
        first.put_subscription(sub("a", SPEC)).await.unwrap();
        let needed = first.keys().primary_id().to_owned();
        let err = SealedStore::open(Arc::clone(&raw), ring(&[3]))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("subscription `a`"), "{err}");
        assert!(err.contains(&needed), "{err}");
        assert!(err.contains("encryption_key_files"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_spec_copied_to_another_row_does_not_open() {
        let dir = temp_dir();
        let raw = embedded(&dir);
        let sealed = sealed_over(&raw, &[1]).await;
        sealed.put_subscription(sub("a", SPEC)).await.unwrap();
        let a = raw.subscriptions().await.unwrap().remove(0);
        raw.put_subscription(sub("b", &a.spec)).await.unwrap();
        let ids: Vec<String> = sealed
            .subscriptions()
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["a"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
