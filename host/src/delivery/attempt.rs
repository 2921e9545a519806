//! One delivery attempt: run the adapter (or build the envelope), sign, send, and decide
//! what happens next. Returns the record to store; never panics on bad input.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Uri, header};
use http_body_util::Full;

use super::adapter_breakers::AdapterBreakers;
use super::breaker::{Admission, Transition};
use super::client::{HttpClient, SendError};
use super::endpoints::Endpoints;
use super::rate_limit::{Rate, RateLimits, Slot};
use super::retry::{AttemptResult, RetryPolicy, Verdict, parse_retry_after};
use crate::clock::now_ms;
use crate::cluster::Cluster;
use crate::event::ENGINE_TYPE_PREFIX;
use crate::metrics::Metrics;
use crate::ops::{
    CircuitOpened, DeadLettered, EndpointRecovered, OpsEmitter, OpsEvent, SubscriptionDisabled,
};
use crate::outbound::{endpoint_key, parse_target_url};
use crate::plugins::{
    Action, Fault, LoadedPlugin, OutboundRequest, OwnedCall, PluginLabel, Registry,
};
use crate::signing::signature_header;
use crate::store::{AttemptRecord, ClaimedDelivery, DisablePolicy, NextState, Store};
use crate::subscription::{Subscription, Subscriptions};

/// How long a delivery waits before looking again for a plugin that is not loaded. Loading
/// the plugin resumes its waiting deliveries at once (`Store::unpark`); this is the safety
/// net.
pub const PLUGIN_WAIT: Duration = Duration::from_secs(60);

/// About how long a delivery waits when its plugin's calls are all busy (jittered), and
/// when the adapters' memory budget is spent.
const GATE_WAIT: Duration = Duration::from_millis(200);

/// How long a delivery of a disabled subscription waits before looking again; enabling
/// the subscription makes it due at once (`Store::unpark`), this is the safety net.
pub const DISABLED_WAIT: Duration = Duration::from_secs(24 * 3600);

/// The park key of deliveries waiting for subscription `id` to be enabled.
pub fn subscription_park_key(id: &str) -> String {
    format!("subscription:{id}")
}

/// The park key of deliveries waiting for plugin `name`.
pub fn plugin_park_key(name: &str) -> String {
    format!("plugin:{name}")
}

/// What every attempt needs.
#[derive(Debug)]
pub struct Deliverer {
    /// The subscriptions.
    pub subscriptions: Arc<Subscriptions>,
    /// Per-endpoint breakers and limits.
    pub endpoints: Arc<Endpoints>,
    /// Backs off adapters that keep failing for a subscription.
    pub adapter_breakers: AdapterBreakers,
    /// Where operational events go.
    pub ops: OpsEmitter,
    /// When a subscription that keeps failing is disabled.
    pub disable_policy: DisablePolicy,
    /// Bytes of each response body kept on the attempt (`[retention] response_body_bytes`).
    pub response_body_bytes: usize,
    /// The loaded plugins.
    pub registry: Arc<Registry>,
    /// Per-subscription rate limits and the slots waiting deliveries hold.
    pub rate_limits: RateLimits,
    /// The nodes sharing the store: a rate limit is divided among the live ones.
    pub cluster: Arc<Cluster>,
    /// The outbound client.
    pub client: HttpClient,
    /// Adapter call counters and latency.
    pub metrics: Metrics,
    /// `wasmhook/<version>`.
    pub user_agent: HeaderValue,
}

/// A request ready to sign and send.
struct Prepared {
    method: Method,
    url: Uri,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    plugin_version: Option<String>,
}

/// The adapter stage's result.
enum Stage {
    Send(Prepared),
    Done(AttemptRecord),
}

impl Deliverer {
    /// Makes one attempt at `delivery` and returns what to record; a dead letter is also
    /// reported to operators.
    pub async fn attempt(&self, delivery: &ClaimedDelivery) -> AttemptRecord {
        let record = self.try_once(delivery).await;
        if record.next == NextState::DeadLetter {
            self.report_dead_letter(delivery, &record);
        }
        record
    }

    async fn try_once(&self, delivery: &ClaimedDelivery) -> AttemptRecord {
        let started_ms = now_ms();
        let clock = Instant::now();
        let catalog = self.subscriptions.catalog();
        let mut record = AttemptRecord {
            delivery_id: delivery.id.clone(),
            subscription_id: delivery.subscription_id.clone(),
            receiver: None,
            attempt: delivery.attempts + 1,
            started_at_ms: started_ms,
            latency_us: 0,
            status_code: None,
            error: None,
            response_body: None,
            plugin_version: None,
            next: NextState::DeadLetter,
            parked_on: None,
        };
        let Some(sub) = catalog.get(&delivery.subscription_id) else {
            record.error = Some(format!(
                "cancelled: subscription `{}` was deleted",
                delivery.subscription_id
            ));
            record.next = NextState::Cancelled;
            return record;
        };
        if !sub.enabled {
            // Parked until the subscription is enabled again, which makes it due at once.
            record.error = Some(format!(
                "waiting: subscription `{}` is disabled ({}); enabling it resumes the delivery; \
                 no attempt is spent",
                sub.id,
                sub.disabled_reason.as_deref().unwrap_or("by an operator")
            ));
            record.next = NextState::WaitUntil(started_ms + DISABLED_WAIT.as_millis() as i64);
            record.parked_on = Some(subscription_park_key(&sub.id));
            return record;
        }
        // Over its rate, a delivery waits for the slot it was given, before any work.
        if let Some(rate) = sub.rate_limit
            && let Slot::At(slot_ms) = self.rate_limits.admit(
                &sub.id,
                Rate::per_second(rate).shared_by(self.cluster.live_nodes()),
                &delivery.id,
                started_ms,
            )
        {
            record.error = Some(format!(
                "waiting: subscription `{}` is limited to {rate} deliveries a second; no attempt is spent",
                sub.id
            ));
            record.next = NextState::WaitUntil(slot_ms);
            return record;
        }
        let prepared = match self.prepare(sub, delivery, record.clone()).await {
            Stage::Send(p) => p,
            Stage::Done(mut record) => {
                record.latency_us = clock.elapsed().as_micros() as u64;
                return record;
            }
        };
        record.plugin_version = prepared.plugin_version.clone();

        // The endpoint's breaker and concurrency limit come before any network I/O.
        let endpoint = self.endpoints.get(&endpoint_key(&prepared.url));
        let _slot = match endpoint.slot().await {
            Some(slot) => slot,
            None => {
                record.error = Some(format!(
                    "waiting: {} already has its limit of attempts in flight; no attempt is spent",
                    endpoint.key()
                ));
                let wait = endpoint.busy_wait().mul_f64(0.5 + rand::random::<f64>());
                record.next = NextState::WaitUntil(started_ms + wait.as_millis() as i64);
                return record;
            }
        };
        if let Admission::Refuse { retry_at_ms } = endpoint.admit(started_ms) {
            record.error = Some(format!(
                "not sent: the circuit for {} is open after repeated failures; it probes again at {}",
                endpoint.key(),
                crate::clock::rfc3339(retry_at_ms)
            ));
            let reopens_in = Duration::from_millis((retry_at_ms - started_ms).max(0) as u64);
            record.next = decide(
                sub,
                delivery,
                AttemptResult::CircuitOpen { reopens_in },
                started_ms,
            )
            .0;
            return record;
        }

        let request = match sign(prepared, sub, &delivery.id, &self.user_agent, started_ms) {
            Ok(request) => request,
            // The request cannot be built (a header the adapter or subscription got wrong):
            // nothing reached the receiver, so its circuit breaker hears nothing of it.
            Err(reason) => {
                record.error = Some(format!("the request could not be built: {reason}"));
                record.latency_us = clock.elapsed().as_micros() as u64;
                record.next = decide(sub, delivery, AttemptResult::AdapterFailed, started_ms).0;
                return record;
            }
        };
        let result = self
            .client
            .send_reading(request, sub.timeout, self.response_body_bytes)
            .await;
        let latency = clock.elapsed();
        record.latency_us = latency.as_micros() as u64;
        let outcome = match result {
            Ok(response) => {
                record.status_code = Some(response.status);
                record.response_body = Some(response.body_snippet).filter(|b| !b.is_empty());
                let retry_after = response
                    .retry_after
                    .as_deref()
                    .and_then(|v| parse_retry_after(v, SystemTime::now()));
                if !(200..300).contains(&response.status) {
                    record.error = Some(format!("the receiver answered HTTP {}", response.status));
                }
                AttemptResult::Response {
                    status: response.status,
                    retry_after,
                }
            }
            Err(e) => {
                record.error = Some(e.to_string());
                match e {
                    SendError::Timeout(_) => AttemptResult::Timeout,
                    SendError::Blocked(_) | SendError::Network(_) => AttemptResult::NetworkError,
                }
            }
        };
        if let Some(transition) = endpoint.record(endpoint_healthy(outcome), latency, now_ms()) {
            self.report_circuit(endpoint.key(), transition, record.error.as_deref());
        }
        record.receiver = Some(matches!(
            outcome,
            AttemptResult::Response {
                status: 200..=299,
                ..
            }
        ));
        let disable;
        (record.next, disable) = decide(sub, delivery, outcome, started_ms);
        if disable {
            let reason = format!(
                "the receiver answered 410 Gone at {}",
                crate::clock::rfc3339(started_ms)
            );
            self.disable(&sub.id, "gone", reason).await;
        }
        record
    }

    /// Disables a subscription and tells operators why (`gone`, `failing`).
    pub async fn disable(&self, id: &str, reason: &'static str, detail: String) {
        match self.subscriptions.disable(id, detail.clone()).await {
            Ok(()) => self
                .ops
                .emit(OpsEvent::SubscriptionDisabled(SubscriptionDisabled {
                    subscription_id: id.to_owned(),
                    reason,
                    detail,
                })),
            Err(e) => {
                tracing::error!(subscription = %id, error = %e, "cannot disable the subscription")
            }
        }
    }

    /// Tells operators about a circuit that opened or recovered; the subscriptions sending
    /// to that endpoint do not get the report.
    fn report_circuit(&self, endpoint: &str, transition: Transition, last_error: Option<&str>) {
        let subscriptions = self
            .subscriptions
            .catalog()
            .iter()
            .filter(|s| s.endpoint() == endpoint)
            .map(|s| s.id.clone())
            .collect();
        let event = match transition {
            Transition::Opened { failures, until_ms } => OpsEvent::CircuitOpened(
                CircuitOpened {
                    endpoint: endpoint.to_owned(),
                    consecutive_failures: failures,
                    probe_at: crate::clock::rfc3339(until_ms),
                    last_error: last_error.map(str::to_owned),
                },
                subscriptions,
            ),
            Transition::Recovered => OpsEvent::EndpointRecovered(
                EndpointRecovered {
                    endpoint: endpoint.to_owned(),
                },
                subscriptions,
            ),
        };
        self.ops.emit(event);
    }

    /// Tells operators about a dead letter, unless it is one of the engine's own events
    /// (reporting those could go round in circles between two failing operator
    /// subscriptions); those are logged only.
    fn report_dead_letter(&self, delivery: &ClaimedDelivery, record: &AttemptRecord) {
        if delivery.event.kind.starts_with(ENGINE_TYPE_PREFIX) {
            return;
        }
        self.ops.emit(OpsEvent::DeadLettered(DeadLettered {
            subscription_id: delivery.subscription_id.clone(),
            delivery_id: delivery.id.clone(),
            event_id: delivery.event.id.clone(),
            event_type: delivery.event.kind.clone(),
            attempts: record.attempt,
            last_status: record.status_code,
            last_error: record.error.clone(),
            also_dead_lettered: 0,
        }));
    }

    /// Disables the enabled subscriptions whose attempts have all failed for `[delivery]
    /// disable_after`, judging from the health the store keeps. Run periodically, so a
    /// subscription whose circuit is open (no new failures recorded) is judged too.
    pub async fn disable_failing(&self, store: &dyn Store) {
        if self.disable_policy.after_ms <= 0 {
            return;
        }
        let now = now_ms();
        let health = match store.subscription_health(None, now).await {
            Ok(health) => health,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read subscription health; auto-disable waits");
                return;
            }
        };
        for (id, health) in health {
            let enabled = self
                .subscriptions
                .catalog()
                .get(&id)
                .is_some_and(|s| s.enabled);
            if !enabled {
                continue;
            }
            if let Some(detail) = self.disable_policy.verdict(&health, now) {
                self.disable(&id, "failing", detail).await;
            }
        }
    }

    /// Runs `disable_failing` a few times per `disable_after` window (at least every
    /// minute, at most every 100 ms) until `stop` flips.
    pub async fn disable_failing_loop(
        self: Arc<Self>,
        store: Arc<dyn Store>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        if self.disable_policy.after_ms <= 0 {
            return;
        }
        let every = Duration::from_millis((self.disable_policy.after_ms / 4) as u64)
            .clamp(Duration::from_millis(100), Duration::from_secs(60));
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => self.disable_failing(store.as_ref()).await,
                _ = stop.changed() => return,
            }
        }
    }

    /// Runs the adapter, or builds the envelope when the subscription has none.
    async fn prepare(
        &self,
        sub: &Subscription,
        delivery: &ClaimedDelivery,
        mut record: AttemptRecord,
    ) -> Stage {
        let Some(name) = &sub.plugin else {
            return Stage::Send(Prepared {
                method: Method::POST,
                url: sub.url.clone(),
                headers: vec![("content-type".into(), "application/json".into())],
                body: delivery.event.envelope(),
                plugin_version: None,
            });
        };
        let Some(plugin) = self.registry.get(name) else {
            record.error = Some(format!(
                "waiting for plugin `{name}`: it is not loaded (put {name}.wasm in {}); no attempt is spent",
                self.registry.dir().display()
            ));
            record.next =
                NextState::WaitUntil(record.started_at_ms + PLUGIN_WAIT.as_millis() as i64);
            record.parked_on = Some(plugin_park_key(name));
            return Stage::Done(record);
        };
        record.plugin_version = Some(plugin.label.record());
        // An adapter that keeps failing for this subscription waits out a cooldown first.
        if let Admission::Refuse { retry_at_ms } =
            self.adapter_breakers
                .admit(&sub.id, &plugin.label, record.started_at_ms)
        {
            record.error = Some(format!(
                "waiting: {} failed repeatedly for this subscription; it is tried again at {} \
                 or as soon as a new version is loaded; no attempt is spent",
                plugin.label,
                crate::clock::rfc3339(retry_at_ms)
            ));
            record.next = NextState::WaitUntil(retry_at_ms);
            record.parked_on = Some(plugin_park_key(name));
            return Stage::Done(record);
        }
        // A plugin reloaded with a new required setting refuses old subscriptions here,
        // before it runs.
        let settings = match plugin_settings(sub, &plugin) {
            Ok(settings) => settings,
            Err(fault) => return self.adapter_failed(sub, delivery, record, fault),
        };
        // A plugin whose calls are all busy (slow, or spinning to its budget) holds its own
        // queue, never a guest thread another plugin needs.
        let Some(_turn) = plugin.gate.enter().await else {
            record.error = Some(format!(
                "waiting: {} has its limit of calls running and queued ([plugins] max_concurrent_calls); \
                 no attempt is spent",
                plugin.label
            ));
            let wait = GATE_WAIT.mul_f64(0.5 + rand::random::<f64>());
            record.next = NextState::WaitUntil(record.started_at_ms + wait.as_millis() as i64);
            return Stage::Done(record);
        };
        let clock = Instant::now();
        let mut limits = self.registry.limits_for(name);
        // The operator's budget for the plugin is a ceiling a subscription cannot raise.
        if let Some(budget) = sub.cpu_budget {
            limits.cpu_budget = budget.min(limits.cpu_budget);
        }
        if let Some(reuse) = sub.instance_reuse {
            limits.instance_reuse = reuse;
        }
        let call = OwnedCall {
            label: plugin.label.clone(),
            event: delivery.event.clone(),
            subscription_id: sub.id.clone(),
            url: sub.url.to_string(),
            settings: settings.unwrap_or_else(|| sub.settings.clone()),
            attempt: record.attempt,
            // The same second `sign` puts into `webhook-timestamp`.
            timestamp: record.started_at_ms / 1000,
            signing_keys: sub.active_keys(record.started_at_ms),
            delivery_id: delivery.id.clone(),
            limits,
        };
        let result = self
            .registry
            .sandbox()
            .run(
                plugin.prepared.clone(),
                call,
                plugin.gate.on_probation(),
                sub.cancel.cancelled(),
            )
            .await;
        let result = result.and_then(|action| match action {
            Action::Deliver(req) => adapter_request(req, sub, &plugin.label).map(Ok),
            Action::Skip(reason) => Ok(Err(reason)),
        });
        let elapsed = clock.elapsed();
        plugin.stats.observe(elapsed, result.is_err());
        self.metrics.plugin_call(name, elapsed, result.is_err());
        // Short of memory engine-wide, or cut short by a deleted subscription: not the
        // adapter's failure.
        plugin.gate.ran_out_of_time(matches!(
            result,
            Err(Fault::CpuBudget { .. } | Fault::MemoryLimit { .. })
        ));
        let engine_side = matches!(
            result,
            Err(Fault::MemoryBudget { .. } | Fault::Cancelled { .. })
        );
        if !engine_side {
            self.adapter_breakers
                .record(&sub.id, &plugin.label, result.is_ok(), now_ms());
        }
        match result {
            Ok(Ok(mut prepared)) => {
                prepared.plugin_version = record.plugin_version;
                Stage::Send(prepared)
            }
            Ok(Err(reason)) => {
                record.error = Some(format!("skipped by {}: {reason}", plugin.label));
                record.next = NextState::Skipped;
                Stage::Done(record)
            }
            Err(Fault::MemoryBudget { .. }) => {
                let (used, limit) = self.registry.sandbox().memory();
                record.error = Some(format!(
                    "waiting: the adapters' memory budget is in use ({} of {} MiB, [plugins] total_memory_bytes); \
                     no attempt is spent",
                    used >> 20,
                    limit >> 20
                ));
                let wait = GATE_WAIT.mul_f64(0.5 + rand::random::<f64>());
                record.next = NextState::WaitUntil(record.started_at_ms + wait.as_millis() as i64);
                Stage::Done(record)
            }
            Err(fault @ Fault::Cancelled { .. }) => {
                // Deleted: the delivery is already cancelled. Disabled: the next look parks it.
                record.error = Some(fault.to_string());
                record.next = NextState::WaitUntil(record.started_at_ms);
                Stage::Done(record)
            }
            Err(fault) => self.adapter_failed(sub, delivery, record, fault),
        }
    }

    /// Records an adapter fault as a failed attempt, retried on the subscription's schedule.
    fn adapter_failed(
        &self,
        sub: &Subscription,
        delivery: &ClaimedDelivery,
        mut record: AttemptRecord,
        fault: Fault,
    ) -> Stage {
        tracing::warn!(delivery = %delivery.id, subscription = %sub.id, error = %fault, "adapter failed");
        record.error = Some(fault.to_string());
        record.next = decide(
            sub,
            delivery,
            AttemptResult::AdapterFailed,
            record.started_at_ms,
        )
        .0;
        Stage::Done(record)
    }
}

/// The settings a plugin with a manifest gets: checked against it (a plugin reloaded with
/// a new required setting refuses old subscriptions here, before running), with its
/// defaults filled in. `None` when the plugin has no manifest: the settings go as they are.
fn plugin_settings(
    sub: &Subscription,
    plugin: &LoadedPlugin,
) -> Result<Option<Vec<(String, String)>>, Fault> {
    let Some(manifest) = &plugin.manifest else {
        return Ok(None);
    };
    manifest
        .check_settings(&plugin.label.name, sub.settings.iter().map(|(k, v)| (k, v)))
        .map_err(|error| Fault::InvalidSettings {
            plugin: plugin.label.clone(),
            error: Box::new(error),
        })?;
    Ok(Some(manifest.with_defaults(&sub.settings)))
}

/// The signed request the engine sends for an adapter's answer: the URL override checked
/// as a subscription URL, the subscription's headers added, the body signed. `wasmhook
/// plugin run` shows exactly this, so a dry run is the engine's own path.
pub fn outbound_request(
    req: OutboundRequest,
    sub: &Subscription,
    label: &PluginLabel,
    msg_id: &str,
    user_agent: &HeaderValue,
    now_ms: i64,
) -> Result<Request<Full<Bytes>>, String> {
    let prepared = adapter_request(req, sub, label).map_err(|fault| fault.to_string())?;
    sign(prepared, sub, msg_id, user_agent, now_ms)
}

/// Checks an adapter's request. The URL override passes the same checks as a subscription
/// URL (and the SSRF guard at connect time); a bad one is the adapter's fault.
fn adapter_request(
    req: OutboundRequest,
    sub: &Subscription,
    label: &PluginLabel,
) -> Result<Prepared, Fault> {
    let url = match req.url.as_deref().map(parse_target_url).transpose() {
        Ok(url) => url.unwrap_or_else(|| sub.url.clone()),
        Err(e) => {
            return Err(Fault::InvalidOutput {
                plugin: label.clone(),
                reason: e.to_string(),
            });
        }
    };
    Ok(Prepared {
        // The sandbox only lets POST, PUT and PATCH through.
        method: Method::from_bytes(req.method.as_bytes()).unwrap_or(Method::POST),
        url,
        headers: req.headers,
        body: req.body,
        plugin_version: None,
    })
}

/// Whether an attempt shows the endpoint is up, for its breaker: any answer but 408, 429 and
/// 5xx. A 4xx is the request's fault, not the endpoint's.
fn endpoint_healthy(outcome: AttemptResult) -> bool {
    match outcome {
        AttemptResult::Response { status, .. } => !matches!(status, 408 | 429 | 500..=599),
        _ => false,
    }
}

/// Applies the subscription's retry policy: the next state, and whether the receiver asked
/// for the subscription to be disabled (`410 Gone`).
fn decide(
    sub: &Subscription,
    delivery: &ClaimedDelivery,
    outcome: AttemptResult,
    started_ms: i64,
) -> (NextState, bool) {
    let verdict = RetryPolicy::of(sub).decide(
        delivery.attempts_this_run + 1,
        outcome,
        rand::random::<f64>(),
    );
    match verdict {
        Verdict::Delivered => (NextState::Delivered, false),
        Verdict::Retry(wait) => (
            NextState::RetryAt(
                started_ms.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)),
            ),
            false,
        ),
        Verdict::DeadLetter {
            disable_subscription,
        } => (NextState::DeadLetter, disable_subscription),
    }
}

/// Adds the subscription's headers and the Standard Webhooks headers, signing the body.
fn sign(
    p: Prepared,
    sub: &Subscription,
    msg_id: &str,
    user_agent: &HeaderValue,
    now_ms: i64,
) -> Result<Request<Full<Bytes>>, String> {
    let timestamp = now_ms / 1000;
    let signature = signature_header(&sub.active_keys(now_ms), msg_id, timestamp, &p.body);
    let mut builder = Request::builder().method(p.method).uri(p.url);
    let headers = builder.headers_mut().ok_or("invalid request")?;
    for (name, value) in &sub.headers {
        headers.insert(name.clone(), value.clone());
    }
    for (name, value) in &p.headers {
        let name = http::HeaderName::try_from(name.as_str()).map_err(|e| e.to_string())?;
        let value = HeaderValue::try_from(value.as_str()).map_err(|e| e.to_string())?;
        headers.insert(name, value);
    }
    if !headers.contains_key(header::CONTENT_TYPE) {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    headers.insert(header::USER_AGENT, user_agent.clone());
    let value = |s: &str| HeaderValue::try_from(s).map_err(|e| e.to_string());
    headers.insert("webhook-id", value(msg_id)?);
    headers.insert("webhook-timestamp", value(&timestamp.to_string())?);
    headers.insert("webhook-signature", value(&signature)?);
    builder
        .body(Full::new(Bytes::from(p.body)))
        .map_err(|e| e.to_string())
}
