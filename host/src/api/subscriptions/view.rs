//! What reads show of a stored subscription: everything but secrets.

use serde_json::{Map, Value};

use super::types::{ClientCertificateView, SigningSecretInfo, SubscriptionView};
use crate::clock::rfc3339;
use crate::config::HumanDuration;
use crate::secret::redact_url;
use crate::store::{StoredHealth, StoredSubscription};
use crate::subscription::{SubscriptionSpec, redacted};

/// The spec's fields as a JSON object (a struct always serialises to one).
pub(super) fn spec_fields(spec: &SubscriptionSpec) -> Map<String, Value> {
    match serde_json::to_value(spec) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// What reads show of a subscription: everything but secrets.
pub fn view(
    stored: &StoredSubscription,
    spec: &SubscriptionSpec,
    health: Option<&StoredHealth>,
    now_ms: i64,
) -> SubscriptionView {
    // Destructured in full, so a new spec field cannot be left out of reads unnoticed.
    let SubscriptionSpec {
        url,
        events,
        name,
        filter,
        plugin,
        headers,
        settings,
        retry_schedule,
        max_attempts,
        timeout,
        cpu_budget,
        instance_reuse,
        rate_limit,
        secret_settings,
        secrets,
        client_certificate,
    } = spec;
    let text = |d: &HumanDuration| d.compact();
    SubscriptionView {
        id: stored.id.clone(),
        source: stored.source,
        enabled: stored.enabled,
        disabled_reason: stored.disabled_reason.clone(),
        name: name.clone(),
        url: redact_url(url),
        events: events.clone(),
        filter: filter.clone(),
        plugin: plugin.clone(),
        headers: redacted(headers, secret_settings),
        settings: redacted(settings, secret_settings),
        secret_settings: secret_settings.clone(),
        retry_schedule: retry_schedule
            .as_ref()
            .map(|list| list.iter().map(text).collect()),
        max_attempts: *max_attempts,
        timeout: timeout.as_ref().map(text),
        rate_limit: *rate_limit,
        cpu_budget: cpu_budget.as_ref().map(text),
        instance_reuse: *instance_reuse,
        signing_secrets: secrets
            .iter()
            .map(|s| SigningSecretInfo {
                expires_at: s.expires_at_ms.map(rfc3339),
            })
            .collect(),
        // The certificate and what it says; never the private key.
        client_certificate: client_certificate.as_ref().and_then(|c| {
            let info = c.info()?;
            Some(ClientCertificateView {
                certificate: c.certificate.clone(),
                subject: info.subject,
                issuer: info.issuer,
                not_before: rfc3339(info.not_before_ms),
                not_after: rfc3339(info.not_after_ms),
                sha256: info.sha256,
            })
        }),
        health: health.map(|h| h.view(now_ms)).unwrap_or_default(),
        created_at: rfc3339(stored.created_at_ms),
        updated_at: rfc3339(stored.updated_at_ms),
    }
}
