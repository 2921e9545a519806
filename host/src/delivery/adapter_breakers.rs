//! Backs off an adapter that keeps failing for one subscription. After a run of errors or
//! faults in a row, that subscription's deliveries wait out a cooldown without spending an
//! attempt, then one probe decides; a new version of the plugin starts with a clean slate
//! (and loading it makes the waiting deliveries due at once). Keyed by subscription and
//! plugin version, so one subscription's bad settings never hold back another's.

use std::collections::HashMap;
use std::sync::Mutex;

use super::breaker::{Admission, Breaker, BreakerConfig, BreakerState};
use crate::plugins::PluginLabel;

/// Breakers tracked at most; beyond it, closed ones are forgotten first.
const MAX_TRACKED: usize = 10_000;

/// One breaker per (subscription, plugin version) that has failed lately.
#[derive(Debug)]
pub struct AdapterBreakers {
    config: BreakerConfig,
    map: Mutex<HashMap<(String, String), Breaker>>,
}

impl AdapterBreakers {
    /// No breaker open yet.
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            map: Mutex::default(),
        }
    }

    /// May `plugin` run for `subscription` at `now_ms`?
    pub fn admit(&self, subscription: &str, plugin: &PluginLabel, now_ms: i64) -> Admission {
        let mut map = self.lock();
        match map.get_mut(&key(subscription, plugin)) {
            Some(breaker) => breaker.admit(now_ms),
            None => Admission::Go,
        }
    }

    /// Reports how a call that was let through ended: an error or fault is a failure, a
    /// request or a skip a success (which forgets the breaker).
    pub fn record(&self, subscription: &str, plugin: &PluginLabel, success: bool, now_ms: i64) {
        let mut map = self.lock();
        let key = key(subscription, plugin);
        if success {
            map.remove(&key);
            return;
        }
        if map.len() >= MAX_TRACKED && !map.contains_key(&key) {
            map.retain(|_, b| {
                matches!(
                    b.state(),
                    BreakerState::Open { .. } | BreakerState::HalfOpen
                )
            });
        }
        map.entry(key)
            .or_insert_with(|| Breaker::new(self.config))
            .record(false, now_ms);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Breaker>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn key(subscription: &str, plugin: &PluginLabel) -> (String, String) {
    (subscription.to_owned(), plugin.record())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn label(version: u32) -> PluginLabel {
        PluginLabel {
            name: "slack".into(),
            version,
            hash: "0123456789ab".into(),
        }
    }

    fn breakers() -> AdapterBreakers {
        AdapterBreakers::new(BreakerConfig {
            failure_threshold: 3,
            cooldown: Duration::from_secs(30),
        })
    }

    #[test]
    fn a_run_of_failures_holds_that_subscription_only() {
        let b = breakers();
        for _ in 0..3 {
            assert_eq!(b.admit("a", &label(1), 0), Admission::Go);
            b.record("a", &label(1), false, 0);
        }
        assert_eq!(
            b.admit("a", &label(1), 1_000),
            Admission::Refuse {
                retry_at_ms: 30_000
            }
        );
        assert_eq!(b.admit("b", &label(1), 1_000), Admission::Go);
        assert_eq!(
            b.admit("a", &label(2), 1_000),
            Admission::Go,
            "a new version starts afresh"
        );
        assert_eq!(b.admit("a", &label(1), 30_000), Admission::Probe);
        b.record("a", &label(1), true, 30_010);
        assert_eq!(b.admit("a", &label(1), 30_020), Admission::Go);
    }
}
