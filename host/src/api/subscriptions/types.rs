//! The bodies `/v1/subscriptions` takes and answers with, and the API's duration grammar.
//!
//! Over 500 lines only with its tests: the code is under 480, one documented struct per
//! body, which the OpenAPI document is generated from.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::handlers::bad_request;
use crate::api::ApiError;
use crate::config::HumanDuration;
use crate::secret::Secret;
use crate::store::{SubscriptionHealth, SubscriptionSource};
use crate::subscription::{ClientCertificate, StoredSecret, SubscriptionSpec};

/// Largest request body these endpoints read.
pub(super) const MAX_BODY: usize = 256 << 10;

/// An event-type pattern: dot-separated segments, each a word or `*`, and a last one that
/// may be `>` (the rest, as in NATS). Documentation only.
#[derive(Debug)]
pub struct EventPattern;

impl utoipa::PartialSchema for EventPattern {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .pattern(Some(
                r"^(>|([A-Za-z0-9_-]+|\*)(\.([A-Za-z0-9_-]+|\*))*(\.>)?)$",
            ))
            .max_length(Some(128))
            .examples([json!("host.>")])
            .into()
    }
}

impl ToSchema for EventPattern {}

/// A duration as the API takes it: whole numbers with a unit (`ms`, `s`, `m`, `h`, `d`),
/// run together: `500ms`, `30s`, `2h30m`. The config file is laxer (it takes whatever
/// `humantime` does, like `2h 30m`); the API holds to what its schema can state exactly.
#[derive(Debug)]
pub struct ApiDuration;

/// The grammar of [`ApiDuration`], for the schema and for [`api_duration`].
const DURATION_PATTERN: &str = r"^([0-9]{1,9}(ms|s|m|h|d))+$";

impl utoipa::PartialSchema for ApiDuration {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .pattern(Some(DURATION_PATTERN))
            .max_length(Some(64))
            .examples([json!("30s")])
            .into()
    }
}

impl ToSchema for ApiDuration {}

/// A duration the API does not take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiDurationError {
    /// Not in the API's grammar.
    #[error(
        "`{field}`: `{text}` is not a duration; write whole numbers with a unit (ms, s, m, h, d), like `500ms`, `30s` or `2h30m`"
    )]
    Grammar {
        /// The field.
        field: String,
        /// The text.
        text: String,
    },
    /// In the grammar but out of range.
    #[error("`{field}`: {error}")]
    Parse {
        /// The field.
        field: String,
        /// Why.
        error: crate::config::DurationError,
    },
}

/// Parses an API duration, holding it to [`DURATION_PATTERN`] first.
pub(super) fn api_duration(text: &str, field: &str) -> Result<HumanDuration, ApiDurationError> {
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut groups = 0;
    while i < bytes.len() {
        let digits = bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        let unit = bytes[i + digits..]
            .iter()
            .take_while(|b| b.is_ascii_lowercase())
            .count();
        let word = &text[i + digits..i + digits + unit];
        if !(1..=9).contains(&digits) || !matches!(word, "ms" | "s" | "m" | "h" | "d") {
            groups = 0;
            break;
        }
        i += digits + unit;
        groups += 1;
    }
    if groups == 0 || text.len() > 64 {
        return Err(ApiDurationError::Grammar {
            field: field.to_owned(),
            text: text.to_owned(),
        });
    }
    HumanDuration::parse(text).map_err(|e| ApiDurationError::Parse {
        field: field.to_owned(),
        error: e,
    })
}

/// The body of `POST /v1/subscriptions`. Only `url` and `events` are required. `Debug`
/// shows no secret, setting or header value.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSubscription {
    /// Stable id: 1 to 64 letters, digits, `_`, `-` and `.`. Default: a fresh `sub_…`.
    #[schema(pattern = r"^[A-Za-z0-9_.-]{1,64}$")]
    pub id: Option<String>,
    /// Whether it gets events. Default: true.
    pub enabled: Option<bool>,
    /// The signing secret: `whsec_` and base64 of 24 to 64 random bytes, or a plain secret
    /// of at least 16 characters (no blanks at its ends) for receivers with their own
    /// signature scheme, whose HMAC key is the text itself. Default: a fresh `whsec_` one,
    /// returned in the answer (and never again).
    #[schema(value_type = Option<String>, pattern = r"^(whsec_[A-Za-z0-9+/]+=*|\S.{14,}\S)$")]
    pub secret: Option<Secret>,
    /// The receiver, `http://` or `https://`. It must not be, or resolve to, an internal
    /// address unless `[delivery] allow_private_networks` or `allowed_cidrs` allows it.
    #[schema(examples("https://hooks.example.com/wasmhook"))]
    pub url: String,
    /// Event-type patterns: `host.enrolled`, `host.*` (one or more further segments),
    /// `host.*.failed` (exactly one), `*` (everything).
    #[schema(min_items = 1, value_type = Vec<EventPattern>)]
    pub events: Vec<String>,
    /// A human name.
    pub name: Option<String>,
    /// A CEL expression over the event; only events for which it is `true` are delivered.
    /// It sees `data` (the payload) and `event` (`id`, `type`, `timestamp`, `data`):
    /// `data.severity == "critical" && data.region.startsWith("eu")`.
    #[schema(min_length = 1, max_length = 4096)]
    pub filter: Option<String>,
    /// The adapter: a plugin name (`plugins/<name>.wasm`). Default: the standard envelope.
    #[schema(pattern = r"^[A-Za-z0-9_-]{1,64}$")]
    pub plugin: Option<String>,
    /// Extra request headers. `webhook-*` and framing headers are the engine's.
    pub headers: Option<BTreeMap<String, String>>,
    /// Settings passed to the adapter, such as a Slack `channel` or a PagerDuty
    /// `routing_key`.
    pub settings: Option<BTreeMap<String, String>>,
    /// Settings whose values are secret, besides those named like a credential (`*key*`,
    /// `*token*`, `*secret*`, `*password*`, …). They are never shown back.
    pub secret_settings: Option<Vec<String>>,
    /// Waits between attempts (`["5s", "5m", "1h"]`), each with full jitter. Default:
    /// `[delivery] retry_schedule`.
    #[schema(value_type = Option<Vec<ApiDuration>>)]
    pub retry_schedule: Option<Vec<String>>,
    /// Attempts before a dead letter. Default: the schedule's length plus one.
    #[schema(minimum = 1)]
    pub max_attempts: Option<u32>,
    /// Time limit of one attempt (`"15s"`). Default: `[delivery] timeout`.
    #[schema(value_type = Option<ApiDuration>)]
    pub timeout: Option<String>,
    /// Most deliveries a second (1 to 1,000,000). More wait their turn; none is dropped.
    /// Default: no limit.
    #[schema(minimum = 1, maximum = 1000000)]
    pub rate_limit: Option<u32>,
    /// The adapter's CPU budget for this subscription (`"100ms"`). Default: the plugin's.
    #[schema(value_type = Option<ApiDuration>)]
    pub cpu_budget: Option<String>,
    /// Reuse one adapter instance for up to this many deliveries (0: a fresh one each).
    /// Default: the plugin's.
    #[schema(minimum = 0, maximum = 1000000)]
    pub instance_reuse: Option<u32>,
    /// A TLS client certificate for a receiver that requires mutual TLS. The private key is
    /// never shown again.
    pub client_certificate: Option<ClientCertificateBody>,
}

/// A TLS client certificate and its private key, PEM. `Debug` hides the key.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientCertificateBody {
    /// The client certificate, then any intermediates: `-----BEGIN CERTIFICATE-----` blocks.
    #[schema(min_length = 1)]
    pub certificate: String,
    /// Its private key: a `-----BEGIN PRIVATE KEY-----` (PKCS#8), `RSA PRIVATE KEY` or
    /// `EC PRIVATE KEY` block. RSA, ECDSA (P-256, P-384) and Ed25519 keys work.
    #[schema(value_type = String, min_length = 1)]
    pub private_key: Secret,
}

impl std::fmt::Debug for ClientCertificateBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertificateBody")
            .field("certificate", &format!("{} bytes", self.certificate.len()))
            .field("private_key", &self.private_key)
            .finish()
    }
}

/// A subscription's client certificate as reads show it: which one, and when it runs out.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientCertificateView {
    /// The client certificate, PEM, as given (certificates are public).
    pub certificate: String,
    /// The certificate's subject, like `CN=wasmhook`.
    pub subject: String,
    /// Who issued it.
    pub issuer: String,
    /// Valid from, RFC 3339.
    #[schema(format = DateTime)]
    pub not_before: String,
    /// Valid until, RFC 3339.
    #[schema(format = DateTime)]
    pub not_after: String,
    /// SHA-256 fingerprint of the certificate (DER), lowercase hex.
    pub sha256: String,
}

/// The body of `PATCH /v1/subscriptions/{id}`: a JSON merge patch (RFC 7396). Fields
/// left out keep their value; `null` clears an optional one. The id and the secret cannot
/// change (rotate the secret with `rotate-secret`). A subscription from the config file
/// takes only `enabled`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // documents the merge patch, which is applied as JSON
pub struct PatchSubscription {
    enabled: Option<bool>,
    url: Option<String>,
    #[schema(min_items = 1, value_type = Option<Vec<EventPattern>>)]
    events: Option<Vec<String>>,
    name: Option<String>,
    #[schema(min_length = 1, max_length = 4096)]
    filter: Option<String>,
    #[schema(pattern = r"^[A-Za-z0-9_-]{1,64}$")]
    plugin: Option<String>,
    headers: Option<BTreeMap<String, String>>,
    settings: Option<BTreeMap<String, String>>,
    secret_settings: Option<Vec<String>>,
    #[schema(value_type = Option<Vec<ApiDuration>>)]
    retry_schedule: Option<Vec<String>>,
    #[schema(minimum = 1)]
    max_attempts: Option<u32>,
    #[schema(value_type = Option<ApiDuration>)]
    timeout: Option<String>,
    #[schema(minimum = 1, maximum = 1000000)]
    rate_limit: Option<u32>,
    #[schema(value_type = Option<ApiDuration>)]
    cpu_budget: Option<String>,
    #[schema(minimum = 0, maximum = 1000000)]
    instance_reuse: Option<u32>,
    /// Replaces the client certificate (both fields); `null` removes it.
    client_certificate: Option<ClientCertificateBody>,
}

impl std::fmt::Debug for CreateSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = |map: &Option<BTreeMap<String, String>>| {
            map.as_ref().map(|m| m.keys().cloned().collect::<Vec<_>>())
        };
        f.debug_struct("CreateSubscription")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("filter", &self.filter)
            .field("plugin", &self.plugin)
            .field("secret", &self.secret)
            .field("headers", &keys(&self.headers))
            .field("settings", &keys(&self.settings))
            .field("client_certificate", &self.client_certificate)
            .finish_non_exhaustive()
    }
}

/// One signing secret, without its value.
#[derive(Debug, Serialize, ToSchema)]
pub struct SigningSecretInfo {
    /// When it stops signing (a rotated-out secret), RFC 3339; null for the current one.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
}

/// A subscription as reads show it: never a secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionView {
    /// Id.
    pub id: String,
    /// `config` (from the config file; only `enabled` can change through the API) or `api`.
    pub source: SubscriptionSource,
    /// Whether it gets events.
    pub enabled: bool,
    /// Why it is disabled (for example the receiver answered `410 Gone`).
    pub disabled_reason: Option<String>,
    /// Human name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The receiver.
    pub url: String,
    /// Event-type patterns.
    pub events: Vec<String>,
    /// The payload filter (CEL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// The adapter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// Extra headers; secret values (`Authorization`, `*token*`, …) read `***`.
    pub headers: BTreeMap<String, String>,
    /// Adapter settings; secret values read `***`.
    pub settings: BTreeMap<String, String>,
    /// Settings declared secret.
    pub secret_settings: Vec<String>,
    /// Own retry schedule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_schedule: Option<Vec<String>>,
    /// Own attempt budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Own attempt time limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Most deliveries a second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
    /// Own adapter CPU budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_budget: Option<String>,
    /// Own adapter instance reuse.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_reuse: Option<u32>,
    /// The secrets that sign, newest first, without their values: two while a rotation's
    /// grace period runs.
    pub signing_secrets: Vec<SigningSecretInfo>,
    /// The TLS client certificate presented to the receiver, without its private key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<ClientCertificateView>,
    /// How its deliveries have been going: the last attempt, the current run of failures,
    /// and success rates.
    pub health: SubscriptionHealth,
    /// Created, RFC 3339.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// Last changed, RFC 3339.
    #[schema(format = DateTime)]
    pub updated_at: String,
}

/// The answer to a create: the subscription and, this once, its secret. `Debug` hides it.
#[derive(Serialize, ToSchema)]
pub struct CreatedSubscription {
    /// The subscription.
    #[serde(flatten)]
    pub subscription: SubscriptionView,
    /// The signing secret. It is not shown again.
    pub secret: String,
    /// Problems that did not stop the change, such as a host that does not resolve yet.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl std::fmt::Debug for CreatedSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedSubscription")
            .field("subscription", &self.subscription)
            .field("secret", &"***")
            .field("warnings", &self.warnings)
            .finish()
    }
}

/// The answer to a change.
#[derive(Debug, Serialize, ToSchema)]
pub struct UpdatedSubscription {
    /// The subscription.
    #[serde(flatten)]
    pub subscription: SubscriptionView,
    /// As for a create.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Every subscription.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionList {
    /// By id.
    pub data: Vec<SubscriptionView>,
}

/// The body of `POST /v1/subscriptions/{id}/rotate-secret`; optional.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// How long the old secret keeps signing beside the new one (`"24h"`). Default:
    /// `[delivery] secret_rotation_grace`. `"0s"` stops it at once.
    #[schema(value_type = Option<ApiDuration>)]
    pub grace: Option<String>,
}

/// The answer to a rotation: the new secret, shown this once. `Debug` hides it.
#[derive(Serialize, ToSchema)]
pub struct RotatedSecret {
    /// The subscription.
    #[serde(flatten)]
    pub subscription: SubscriptionView,
    /// The new signing secret.
    pub secret: String,
    /// When the previous secret stops signing, RFC 3339.
    #[schema(format = DateTime)]
    pub previous_expires_at: String,
}

impl std::fmt::Debug for RotatedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotatedSecret")
            .field("subscription", &self.subscription)
            .field("secret", &"***")
            .field("previous_expires_at", &self.previous_expires_at)
            .finish()
    }
}

fn durations(
    texts: Option<Vec<String>>,
    field: &str,
) -> Result<Option<Vec<HumanDuration>>, ApiError> {
    texts
        .map(|list| {
            list.iter()
                .map(|t| api_duration(t, field))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()
        .map_err(|e| bad_request("invalid_subscription", e.to_string()))
}

fn duration(text: Option<String>, field: &str) -> Result<Option<HumanDuration>, ApiError> {
    text.map(|t| api_duration(&t, field))
        .transpose()
        .map_err(|e| bad_request("invalid_subscription", e.to_string()))
}

impl CreateSubscription {
    /// The spec this body describes, signed with `secret`.
    pub(super) fn into_spec(self, secret: String) -> Result<SubscriptionSpec, ApiError> {
        Ok(SubscriptionSpec {
            url: self.url,
            events: self.events,
            name: self.name,
            filter: self.filter,
            plugin: self.plugin,
            headers: self.headers.unwrap_or_default(),
            settings: self.settings.unwrap_or_default(),
            retry_schedule: durations(self.retry_schedule, "retry_schedule")?,
            max_attempts: self.max_attempts,
            timeout: duration(self.timeout, "timeout")?,
            cpu_budget: duration(self.cpu_budget, "cpu_budget")?,
            instance_reuse: self.instance_reuse,
            rate_limit: self.rate_limit,
            secret_settings: self.secret_settings.unwrap_or_default(),
            secrets: vec![StoredSecret {
                secret,
                expires_at_ms: None,
            }],
            client_certificate: self.client_certificate.map(|c| ClientCertificate {
                certificate: c.certificate,
                private_key: c.private_key.expose().to_owned(),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// `#[schema(maximum)]` takes a literal only; this keeps it equal to the bound the
    /// spec enforces.
    #[test]
    fn the_documented_rate_limit_bound_is_the_enforced_one() {
        let document = serde_json::to_value(crate::api::document()).unwrap();
        for schema in ["CreateSubscription", "PatchSubscription"] {
            let rate = &document["components"]["schemas"][schema]["properties"]["rate_limit"];
            assert_eq!(
                rate["maximum"],
                json!(crate::subscription::MAX_RATE_LIMIT),
                "{schema}: {rate}"
            );
        }
    }

    #[test]
    fn debug_output_shows_no_secret() {
        let input: CreateSubscription = serde_json::from_value(json!({
            "url": "https://x.example/", "events": ["*"], "secret": "whsec_c2VjcmV0LXZhbHVlLXRoYXQtaXMtbG9uZw==",
            "settings": {"routing_key": "R0UT1NG"}, "headers": {"Authorization": "Bearer s3cr3t"},
            "client_certificate": {"certificate": "-----BEGIN CERTIFICATE-----", "private_key": "K3YM4T3R1AL"},
        }))
        .unwrap();
        let text = format!("{input:?}");
        for leaked in ["whsec_", "R0UT1NG", "s3cr3t", "K3YM4T3R1AL"] {
            assert!(!text.contains(leaked), "{leaked} in {text}");
        }
    }

    #[test]
    fn api_durations_follow_the_documented_grammar() {
        for ok in ["500ms", "30s", "2h30m", "1d", "0s", "15m10s"] {
            assert!(api_duration(ok, "t").is_ok(), "{ok}");
        }
        for bad in [
            "",
            "5",
            "s",
            "2h 30m",
            "5 parsecs",
            "1.5s",
            "10us",
            "-1s",
            "1234567890s",
        ] {
            let err = api_duration(bad, "t").unwrap_err().to_string();
            assert!(err.contains("not a duration"), "{bad}: {err}");
        }
        assert_eq!(
            api_duration("2h30m", "t").unwrap().0,
            Duration::from_secs(9000)
        );
        for d in ["1d", "2h30m", "500ms", "1d1h1m1s1ms", "0s"] {
            let parsed = api_duration(d, "t").unwrap().0;
            assert_eq!(HumanDuration(parsed).compact(), d);
        }
    }
}
