//! Per-endpoint state (`scheme://host:port`): the circuit breaker, the concurrency limit and
//! a latency estimate. One slow or dead endpoint can hold at most its own limit of attempts
//! in flight, and once its circuit opens its deliveries fail fast without a request, so
//! healthy endpoints keep their pace.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::breaker::{Admission, Breaker, BreakerConfig, BreakerState, Transition};

/// Endpoints tracked at most; idle, healthy ones are forgotten beyond this.
const MAX_TRACKED: usize = 10_000;

/// Limits applied to every endpoint.
#[derive(Debug, Clone, Copy)]
pub struct EndpointLimits {
    /// Breaker settings.
    pub breaker: BreakerConfig,
    /// Attempts in flight to one endpoint at most.
    pub concurrency: usize,
}

/// One endpoint.
#[derive(Debug)]
pub struct Endpoint {
    key: String,
    breaker: Mutex<Breaker>,
    permits: Arc<Semaphore>,
    limit: usize,
    /// Smoothed attempt latency, microseconds; how long to wait when the endpoint is busy.
    latency_us: AtomicU64,
}

impl Endpoint {
    /// Asks the breaker whether a request may go at `now_ms`.
    pub fn admit(&self, now_ms: i64) -> Admission {
        self.lock().admit(now_ms)
    }

    /// Takes one of the endpoint's slots, waiting for one to free for up to about two of
    /// the endpoint's attempts (at most 50 ms). A busy, healthy endpoint frees slots in
    /// that time, and the attempt goes on without a round trip through the store; a hanging
    /// one does not, and its deliveries then wait in the store instead of holding the
    /// engine's attempt slots.
    pub async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() {
            return Some(permit);
        }
        let wait = match self.latency_us.load(Ordering::Relaxed) {
            0 => return None,
            us => (Duration::from_micros(us) * 2).min(Duration::from_millis(50)),
        };
        tokio::time::timeout(wait, Arc::clone(&self.permits).acquire_owned())
            .await
            .ok()?
            .ok()
    }

    /// Reports an attempt's result to the breaker and the latency estimate; answers the
    /// circuit's transition, if it caused one.
    pub fn record(&self, success: bool, latency: Duration, now_ms: i64) -> Option<Transition> {
        let transition = self.lock().record(success, now_ms);
        let sample = latency.as_micros() as u64;
        let old = self.latency_us.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample
        } else {
            (old * 7 + sample) / 8
        };
        self.latency_us.store(new, Ordering::Relaxed);
        transition
    }

    /// How long a delivery should wait when every slot is taken: about one attempt's time,
    /// or a quarter second while no attempt has finished yet (a hanging endpoint).
    pub fn busy_wait(&self) -> Duration {
        match self.latency_us.load(Ordering::Relaxed) {
            0 => Duration::from_millis(250),
            us => {
                Duration::from_micros(us).clamp(Duration::from_millis(20), Duration::from_secs(2))
            }
        }
    }

    /// The breaker's state.
    pub fn state(&self) -> BreakerState {
        self.lock().state()
    }

    /// The endpoint key.
    pub fn key(&self) -> &str {
        &self.key
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn in_flight(&self) -> usize {
        self.limit - self.permits.available_permits()
    }
}

/// One endpoint's state at a moment, for the API and the metrics to show.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointStatus {
    /// `scheme://host:port`.
    pub endpoint: String,
    /// The circuit.
    pub circuit: BreakerState,
    /// Attempts in flight now.
    pub in_flight: usize,
    /// The concurrency limit.
    pub concurrency_limit: usize,
    /// Smoothed attempt latency, microseconds.
    pub latency_us: u64,
}

/// All endpoints seen so far.
#[derive(Debug)]
pub struct Endpoints {
    limits: EndpointLimits,
    map: Mutex<HashMap<String, Arc<Endpoint>>>,
}

impl Endpoints {
    /// An empty set.
    pub fn new(limits: EndpointLimits) -> Self {
        Self {
            limits,
            map: Mutex::default(),
        }
    }

    /// The endpoint for `key`, created on first use.
    pub fn get(&self, key: &str) -> Arc<Endpoint> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = map.get(key) {
            return Arc::clone(e);
        }
        if map.len() >= MAX_TRACKED {
            map.retain(|_, e| {
                e.in_flight() > 0
                    || e.state()
                        != BreakerState::Closed {
                            consecutive_failures: 0,
                        }
            });
        }
        let endpoint = Arc::new(Endpoint {
            key: key.to_owned(),
            breaker: Mutex::new(Breaker::new(self.limits.breaker)),
            permits: Arc::new(Semaphore::new(self.limits.concurrency)),
            limit: self.limits.concurrency,
            latency_us: AtomicU64::new(0),
        });
        map.insert(key.to_owned(), Arc::clone(&endpoint));
        endpoint
    }

    /// Every endpoint, sorted by key.
    pub fn snapshot(&self) -> Vec<EndpointStatus> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<EndpointStatus> = map
            .values()
            .map(|e| EndpointStatus {
                endpoint: e.key.clone(),
                circuit: e.state(),
                in_flight: e.in_flight(),
                concurrency_limit: e.limit,
                latency_us: e.latency_us.load(Ordering::Relaxed),
            })
            .collect();
        out.sort_by(|a, b| a.endpoint.cmp(&b.endpoint));
        out
    }
}
