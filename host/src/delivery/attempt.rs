//! One delivery attempt: run the adapter (or build the envelope), sign, send, and decide
//! what happens next. Returns the record to store; never panics on bad input.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Uri, header};
use http_body_util::Full;

use super::breaker::Admission;
use super::client::{HttpClient, SendError};
use super::endpoints::Endpoints;
use super::rate_limit::{RateLimits, Slot};
use super::retry::{AttemptResult, Verdict, parse_retry_after};
use super::signing::{SigningKey, signature_header};
use crate::cluster::Cluster;
use crate::event::now_ms;
use crate::metrics::Metrics;
use crate::plugins::{
    Action, AdapterInput, Call, Fault, LoadedPlugin, OutboundRequest, PluginLabel, Registry,
};
use crate::store::{AttemptRecord, ClaimedDelivery, NextState};
use crate::subscription::{Subscription, Subscriptions, endpoint_key, parse_target_url};

/// How long a delivery waits before looking again for a plugin that is not loaded. Loading
/// the plugin resumes its waiting deliveries at once (`Store::unpark`); this is the safety
/// net.
pub const PLUGIN_WAIT: Duration = Duration::from_secs(60);

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
    /// Makes one attempt at `delivery` and returns what to record.
    pub async fn attempt(&self, delivery: &ClaimedDelivery) -> AttemptRecord {
        let started_ms = now_ms();
        let clock = Instant::now();
        let catalog = self.subscriptions.catalog();
        let mut record = AttemptRecord {
            delivery_id: delivery.id.clone(),
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
                "subscription `{}` no longer exists; the delivery cannot be attempted",
                delivery.subscription_id
            ));
            return record;
        };
        if !sub.enabled {
            record.error = Some(format!(
                "subscription `{}` is disabled ({}); replay this dead letter after enabling it",
                sub.id,
                sub.disabled_reason.as_deref().unwrap_or("by an operator")
            ));
            return record;
        }
        // Over its rate, a delivery waits for the slot it was given, before any work.
        if let Some(rate) = sub.rate_limit
            && let Slot::At(slot_ms) = self.rate_limits.admit(
                &sub.id,
                rate.shared_by(self.cluster.live_nodes()),
                &delivery.id,
                started_ms,
            )
        {
            record.error = Some(format!(
                "waiting: subscription `{}` is limited to {} deliveries a second; no attempt is spent",
                sub.id, rate.per_second
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
        let _slot = match endpoint.try_slot() {
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
                crate::event::rfc3339(retry_at_ms)
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

        let request = sign(prepared, sub, &delivery.id, &self.user_agent, started_ms);
        let result = match request {
            Ok(request) => self.client.send(request, sub.timeout).await,
            Err(reason) => Err(SendError::Network(reason)),
        };
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
        endpoint.record(endpoint_healthy(outcome), latency, now_ms());
        let disable;
        (record.next, disable) = decide(sub, delivery, outcome, started_ms);
        if disable {
            let reason = format!(
                "the receiver answered 410 Gone at {}",
                crate::event::rfc3339(started_ms)
            );
            if let Err(e) = self.subscriptions.disable(&sub.id, reason).await {
                tracing::error!(subscription = %sub.id, error = %e, "cannot disable the subscription after 410");
            }
        }
        record
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
        let url = sub.url.to_string();
        let keys = sub.active_keys(record.started_at_ms);
        let key_bytes: Vec<&[u8]> = keys.iter().map(SigningKey::as_bytes).collect();
        let settings = match plugin_settings(sub, &plugin) {
            Ok(settings) => settings,
            Err(fault) => return self.adapter_failed(sub, delivery, record, fault),
        };
        let input = AdapterInput {
            subscription_id: &sub.id,
            url: &url,
            settings: settings.as_deref().unwrap_or(&sub.settings),
            attempt: record.attempt,
            // The same second `sign` puts into `webhook-timestamp`.
            timestamp: record.started_at_ms / 1000,
            signing_keys: &key_bytes,
        };
        let clock = Instant::now();
        let mut limits = self.registry.limits_for(name);
        if let Some(budget) = sub.cpu_budget {
            limits.cpu_budget = budget;
        }
        if let Some(reuse) = sub.instance_reuse {
            limits.instance_reuse = reuse;
        }
        let call = Call {
            label: &plugin.label,
            event: &delivery.event,
            input: &input,
            delivery_id: &delivery.id,
            limits,
        };
        let result = self
            .registry
            .sandbox()
            .transform(&plugin.prepared, call)
            .await;
        let result = result.and_then(|action| match action {
            Action::Deliver(req) => adapter_request(req, sub, &plugin.label).map(Ok),
            Action::Skip(reason) => Ok(Err(reason)),
        });
        let elapsed = clock.elapsed();
        plugin.stats.observe(elapsed, result.is_err());
        self.metrics.plugin_call(name, elapsed, result.is_err());
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
        Err(reason) => {
            return Err(Fault::InvalidOutput {
                plugin: label.clone(),
                reason,
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
    let verdict = sub.retry.decide(
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
