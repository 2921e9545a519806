//! A subscription's spec (what is stored, as JSON) and its validation into the runtime
//! `Subscription` the delivery path uses.
//!
//! Over 500 lines because every field's check lives here, next to the field, so the
//! config file, the API and the store all validate a subscription the same way; a
//! hundred of the lines are those checks' tests.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Uri};
use serde::{Deserialize, Serialize};

use super::client_cert::{ClientCertificate, ClientIdentity};
use super::filter::PayloadFilter;
use crate::config::{DeliveryConfig, Env, HumanDuration, SubscriptionConfig, check_retry_bounds};
use crate::outbound::{endpoint_key, parse_header, parse_target_url};
use crate::router::validate_pattern;
use crate::secret::Secret;
use crate::signing::SigningKey;
use crate::store::SubscriptionSource;

/// The highest `rate_limit` accepted, deliveries a second: far above what one engine
/// delivers, and a plain 32-bit integer for every client (the API documents it).
pub const MAX_RATE_LIMIT: u32 = 1_000_000;

/// The highest `instance_reuse` accepted, deliveries per instance: a plain 32-bit integer
/// for every client (the API documents it), where a `u32` past `i32::MAX` was taken though
/// the document says `int32`.
pub const MAX_INSTANCE_REUSE: u32 = 1_000_000;

/// What defines a subscription; stored as JSON, so fields can be added with defaults.
/// `Debug` shows setting and header names but never secret values.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionSpec {
    /// Where requests go.
    pub url: String,
    /// Event-type patterns.
    pub events: Vec<String>,
    /// A human name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A CEL expression over the event; only events for which it is true are delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Adapter name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// Extra request headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Adapter settings.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, String>,
    /// Own retry schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_schedule: Option<Vec<HumanDuration>>,
    /// Own attempt budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Own attempt timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    /// Own CPU budget for the adapter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_budget: Option<HumanDuration>,
    /// Own instance reuse count for the adapter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_reuse: Option<u32>,
    /// Most deliveries a second; more wait their turn, none is dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
    /// Settings whose values are secret, besides those whose names say so.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_settings: Vec<String>,
    /// Signing secrets, newest first; older ones carry an expiry while a rotation runs.
    pub secrets: Vec<StoredSecret>,
    /// The TLS client certificate presented to receivers that ask for one (mutual TLS).
    /// Its private key is a secret, never shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<ClientCertificate>,
}

impl std::fmt::Debug for SubscriptionSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriptionSpec")
            .field("url", &crate::secret::redact_url(&self.url))
            .field("events", &self.events)
            .field("filter", &self.filter)
            .field("plugin", &self.plugin)
            .field("rate_limit", &self.rate_limit)
            .field("headers", &redacted(&self.headers, &self.secret_settings))
            .field("settings", &redacted(&self.settings, &self.secret_settings))
            .field("secrets", &self.secrets)
            .field("client_certificate", &self.client_certificate)
            .finish_non_exhaustive()
    }
}

/// The value shown in place of a secret.
pub const REDACTED: &str = "***";

/// Whether a setting or header is secret: listed in `declared`, or named like a credential
/// (`routing_key`, `api_token`, `client_secret`, `password`, `Authorization`, `Cookie`).
pub fn is_secret_name(declared: &[String], name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    declared.iter().any(|d| d.eq_ignore_ascii_case(name))
        || [
            "key",
            "token",
            "secret",
            "password",
            "authorization",
            "cookie",
            "credential",
        ]
        .iter()
        .any(|word| lower.contains(word))
}

/// `pairs` with secret values replaced by `***`.
pub fn redacted<'a>(
    pairs: impl IntoIterator<Item = (&'a String, &'a String)>,
    declared: &[String],
) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|(k, v)| {
            let v = if is_secret_name(declared, k) {
                REDACTED.to_owned()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}

/// One signing secret with an optional expiry (set on the old secret by a rotation).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StoredSecret {
    /// `whsec_…`.
    pub secret: String,
    /// Stops signing at this time, Unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
}

impl std::fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSecret")
            .field("secret", &"***")
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

/// A spec that cannot be used, naming the field and the fix.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{message}")]
pub struct SpecError {
    /// The offending field.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

fn spec_err(field: &'static str, message: impl Into<String>) -> SpecError {
    SpecError {
        field,
        message: message.into(),
    }
}

/// One subscription, validated and ready to deliver to. `Debug` hides secret values.
#[derive(Clone)]
pub struct Subscription {
    /// Stable id.
    pub id: String,
    /// Config file or API.
    pub source: SubscriptionSource,
    /// Whether it gets new deliveries and attempts.
    pub enabled: bool,
    /// Why it is disabled.
    pub disabled_reason: Option<String>,
    /// Target URL, http or https.
    pub url: Uri,
    /// Event-type patterns.
    pub patterns: Vec<String>,
    /// The payload filter, if any: events must pass it as well as a pattern.
    pub filter: Option<PayloadFilter>,
    /// Most deliveries a second, if limited.
    pub rate_limit: Option<u32>,
    /// Keys that sign each request, with their expiry; more than one during a rotation.
    pub signing_keys: Vec<(SigningKey, Option<i64>)>,
    /// Adapter name (`plugins/<name>.wasm`); `None` sends the standard envelope.
    pub plugin: Option<String>,
    /// Extra request headers, already validated.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Adapter settings, sorted by key.
    pub settings: Vec<(String, String)>,
    /// Waits before the 2nd, 3rd, … attempt; the last one repeats.
    pub retry_schedule: Vec<Duration>,
    /// Attempts before a dead letter, counting the first.
    pub max_attempts: u32,
    /// Time limit of one attempt.
    pub timeout: Duration,
    /// The adapter's CPU budget for this subscription, if it overrides the plugin's.
    pub cpu_budget: Option<Duration>,
    /// The adapter's instance reuse for this subscription, if it overrides the plugin's.
    pub instance_reuse: Option<u32>,
    /// Settings whose values are secret, besides those whose names say so.
    pub secret_settings: Vec<String>,
    /// The TLS client certificate for mutual TLS, if the receiver asks for one.
    pub client_identity: Option<Arc<ClientIdentity>>,
    /// Cancelled when the subscription is deleted or disabled, which interrupts adapter
    /// calls still running for it. Kept across catalog rebuilds while it lives.
    pub cancel: tokio_util::sync::CancellationToken,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let settings = redacted(
            self.settings.iter().map(|(k, v)| (k, v)),
            &self.secret_settings,
        );
        let headers: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("enabled", &self.enabled)
            .field("url", &crate::secret::redact_url(&self.url.to_string()))
            .field("patterns", &self.patterns)
            .field("filter", &self.filter)
            .field("rate_limit", &self.rate_limit)
            .field("plugin", &self.plugin)
            .field("headers", &headers)
            .field("settings", &settings)
            .field("keys", &self.signing_keys.len())
            .field("client_identity", &self.client_identity.is_some())
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// The keys that sign at `now_ms`.
    pub fn active_keys(&self, now_ms: i64) -> Vec<SigningKey> {
        self.signing_keys
            .iter()
            .filter(|(_, expires)| expires.is_none_or(|at| at > now_ms))
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// The scheme, host and port requests go to: the unit of circuit breaking.
    pub fn endpoint(&self) -> String {
        endpoint_key(&self.url)
    }
}

/// Subscription ids: letters, digits, `_`, `-` and `.`, 1 to 64 characters.
pub fn validate_subscription_id(id: &str) -> Result<(), SpecError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(spec_err(
            "id",
            format!(
                "invalid subscription id `{id}`: use 1 to 64 letters, digits, `_`, `-` and `.`"
            ),
        ))
    }
}

/// A plugin name that is not a usable file stem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid plugin name `{0}`: use the file name without `.wasm`, made of letters, digits, `_` and `-`"
)]
pub struct PluginNameError(pub String);

/// Plugin names are file stems: `[A-Za-z0-9_-]`, 1 to 64 characters.
pub fn validate_plugin_name(name: &str) -> Result<(), PluginNameError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(PluginNameError(name.to_owned()))
    }
}

impl SubscriptionSpec {
    /// Adds settings that the adapter's manifest declares secret to `secret_settings`, so
    /// reads and logs hide them like the ones the operator declared.
    pub fn add_secret_settings(&mut self, names: impl IntoIterator<Item = String>) {
        for name in names {
            if !self.secret_settings.contains(&name) {
                self.secret_settings.push(name);
            }
        }
    }

    /// The stored form. A spec is strings, numbers and lists, so serialising cannot fail;
    /// a failure would be a bug, and storing an empty spec instead would lose the
    /// subscription, so it panics (the API turns that into a `500`).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a subscription spec always serialises")
    }

    /// A subscription may lower its adapter's CPU budget, never raise it above `ceiling`,
    /// the operator's budget for the plugin (`[plugins] cpu_budget` or its override).
    pub fn check_cpu_budget(&self, ceiling: Duration) -> Result<(), SpecError> {
        match (self.cpu_budget, &self.plugin) {
            (Some(budget), Some(plugin)) if budget.0 > ceiling => Err(spec_err(
                "cpu_budget",
                format!(
                    "`cpu_budget` {} is above the {} the operator gives plugin `{plugin}` \
                     ([plugins] cpu_budget or [plugins.overrides.{plugin}]); a subscription can only lower it",
                    budget.compact(),
                    HumanDuration(ceiling).compact()
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The spec of a config-file entry, resolving `secret_env` through `env`.
    pub fn from_config(cfg: &SubscriptionConfig, env: &dyn Env) -> Result<Self, SpecError> {
        let secret = match (&cfg.secret, &cfg.secret_env) {
            (Some(_), Some(_)) => {
                return Err(spec_err("secret", "set `secret` or `secret_env`, not both"));
            }
            (Some(secret), None) => secret.clone(),
            (None, Some(var)) => Secret::new(env.var(var).ok_or_else(|| {
                spec_err(
                    "secret_env",
                    format!("`secret_env` names `{var}`, but that environment variable is not set"),
                )
            })?),
            (None, None) => {
                return Err(spec_err(
                    "secret",
                    "no signing secret: set `secret = \"whsec_...\"` or `secret_env = \"VAR\"` (generate one with `wasmhook secret`)",
                ));
            }
        };
        let client_certificate = match (&cfg.client_certificate_file, &cfg.client_key_file) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                let read = |field: &'static str, path: &std::path::Path| {
                    std::fs::read_to_string(path).map_err(|e| {
                        spec_err(
                            field,
                            format!("cannot read `{field}` {}: {e}", path.display()),
                        )
                    })
                };
                Some(ClientCertificate {
                    certificate: read("client_certificate_file", cert)?,
                    private_key: read("client_key_file", key)?,
                })
            }
            _ => {
                return Err(spec_err(
                    "client_certificate_file",
                    "set both `client_certificate_file` and `client_key_file`, or neither",
                ));
            }
        };
        Ok(Self {
            url: cfg.url.clone(),
            events: cfg.events.clone(),
            name: cfg.name.clone(),
            filter: cfg.filter.clone(),
            plugin: cfg.plugin.clone(),
            headers: cfg.headers.clone(),
            settings: cfg
                .settings
                .iter()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect(),
            retry_schedule: cfg.retry_schedule.clone(),
            max_attempts: cfg.max_attempts,
            timeout: cfg.timeout,
            cpu_budget: cfg.cpu_budget,
            instance_reuse: cfg.instance_reuse,
            rate_limit: cfg.rate_limit,
            secret_settings: cfg.secret_settings.clone(),
            secrets: vec![StoredSecret {
                secret: secret.expose().to_owned(),
                expires_at_ms: None,
            }],
            client_certificate,
        })
    }

    /// Validates the spec and builds the runtime subscription, with `defaults` filling what
    /// the spec leaves out.
    pub fn build(
        &self,
        id: &str,
        source: SubscriptionSource,
        defaults: &DeliveryConfig,
    ) -> Result<Subscription, SpecError> {
        validate_subscription_id(id)?;
        let url = parse_target_url(&self.url).map_err(|e| spec_err("url", e.to_string()))?;
        if self.events.is_empty() {
            return Err(spec_err(
                "events",
                "`events` is empty; list patterns such as [\"host.*\"] or [\"*\"]",
            ));
        }
        for pattern in &self.events {
            validate_pattern(pattern).map_err(|e| spec_err("events", e.to_string()))?;
        }
        let filter = self
            .filter
            .as_deref()
            .map(PayloadFilter::parse)
            .transpose()
            .map_err(|e| spec_err("filter", e.to_string()))?;
        if let Some(rate) = self.rate_limit
            && !(1..=MAX_RATE_LIMIT).contains(&rate)
        {
            return Err(spec_err(
                "rate_limit",
                format!(
                    "`rate_limit` must be between 1 and {MAX_RATE_LIMIT} (deliveries a second); leave it out for no limit"
                ),
            ));
        }
        if let Some(reuse) = self.instance_reuse
            && reuse > MAX_INSTANCE_REUSE
        {
            return Err(spec_err(
                "instance_reuse",
                format!(
                    "`instance_reuse` must be between 0 and {MAX_INSTANCE_REUSE} (deliveries per adapter instance)"
                ),
            ));
        }
        if self.secrets.is_empty() {
            return Err(spec_err("secret", "the subscription has no signing secret"));
        }
        let signing_keys = self
            .secrets
            .iter()
            .map(|s| {
                SigningKey::from_secret(&Secret::new(s.secret.clone()))
                    .map(|k| (k, s.expires_at_ms))
                    .map_err(|e| spec_err("secret", e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        if let Some(plugin) = &self.plugin {
            validate_plugin_name(plugin).map_err(|e| spec_err("plugin", e.to_string()))?;
        }
        let headers = self
            .headers
            .iter()
            .map(|(k, v)| parse_header(k, v))
            .collect::<Result<_, _>>()
            .map_err(|e| spec_err("headers", e.to_string()))?;
        let schedule: Vec<Duration> = self
            .retry_schedule
            .as_ref()
            .unwrap_or(&defaults.retry_schedule)
            .iter()
            .map(|d| d.0)
            .collect();
        if let Some(own) = &self.retry_schedule {
            check_retry_bounds(own, self.max_attempts)
                .map_err(|e| spec_err("retry_schedule", e))?;
        } else {
            check_retry_bounds(&defaults.retry_schedule, self.max_attempts)
                .map_err(|e| spec_err("max_attempts", e))?;
        }
        // An own schedule brings its own default budget; otherwise the global one applies.
        let max_attempts = self
            .max_attempts
            .or(if self.retry_schedule.is_some() {
                None
            } else {
                defaults.max_attempts
            })
            .unwrap_or((schedule.len() as u32 + 1).min(crate::config::MAX_ATTEMPTS));
        if max_attempts == 0 {
            return Err(spec_err(
                "max_attempts",
                "`max_attempts` must be at least 1",
            ));
        }
        let timeout = self.timeout.unwrap_or(defaults.timeout).0;
        if self
            .cpu_budget
            .is_some_and(|b| b.0 < Duration::from_millis(1))
        {
            return Err(spec_err("cpu_budget", "`cpu_budget` must be at least 1ms"));
        }
        if timeout.is_zero() {
            return Err(spec_err("timeout", "`timeout` must be longer than 0s"));
        }
        let client_identity = self
            .client_certificate
            .as_ref()
            .map(|c| c.identity().map(Arc::new))
            .transpose()
            .map_err(|e| spec_err("client_certificate", e.to_string()))?;
        Ok(Subscription {
            id: id.to_owned(),
            source,
            enabled: true,
            disabled_reason: None,
            url,
            patterns: self.events.clone(),
            filter,
            rate_limit: self.rate_limit,
            signing_keys,
            plugin: self.plugin.clone(),
            headers,
            settings: self
                .settings
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            retry_schedule: schedule,
            max_attempts,
            timeout,
            cpu_budget: self.cpu_budget.map(|b| b.0),
            instance_reuse: self.instance_reuse,
            secret_settings: self.secret_settings.clone(),
            client_identity,
            cancel: tokio_util::sync::CancellationToken::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    struct Vars;
    impl Env for Vars {
        fn var(&self, name: &str) -> Option<String> {
            (name == "HOOK_SECRET").then(|| "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned())
        }
    }

    fn build(extra: &str) -> Result<Subscription, SpecError> {
        let text = format!(
            "[[subscriptions]]\nid = \"ops\"\nurl = \"https://hooks.example.com/x\"\nevents = [\"host.*\"]\n{extra}"
        );
        let config = Config::parse(&text).expect("parses");
        let cfg = &config.subscriptions[0];
        SubscriptionSpec::from_config(cfg, &Vars)?.build(
            &cfg.id,
            SubscriptionSource::Config,
            &config.delivery,
        )
    }

    #[test]
    fn builds_with_defaults_from_delivery() {
        let s = build("secret_env = \"HOOK_SECRET\"").unwrap();
        assert_eq!(s.max_attempts, 10);
        assert_eq!(s.timeout, Duration::from_secs(15));
        assert_eq!(s.url.host(), Some("hooks.example.com"));
        assert_eq!(s.endpoint(), "https://hooks.example.com:443");
    }

    #[test]
    fn own_schedule_sets_the_default_max_attempts() {
        let s = build("secret_env = \"HOOK_SECRET\"\nretry_schedule = [\"1s\", \"2s\"]").unwrap();
        assert_eq!(s.max_attempts, 3);
        let s = build("secret_env = \"HOOK_SECRET\"\nretry_schedule = [\"1s\"]\nmax_attempts = 7")
            .unwrap();
        assert_eq!(s.max_attempts, 7);
    }

    #[test]
    fn instance_reuse_is_at_most_a_million() {
        let reuse = |n: u64| {
            build(&format!(
                "secret_env = \"HOOK_SECRET\"\ninstance_reuse = {n}"
            ))
        };
        assert!(reuse(0).is_ok() && reuse(1_000_000).is_ok());
        for bad in [1_000_001, 2_147_483_648] {
            assert_eq!(reuse(bad).unwrap_err().field, "instance_reuse", "{bad}");
        }
    }

    #[test]
    fn a_rate_limit_is_between_one_and_a_million() {
        let rate = |n: u64| build(&format!("secret_env = \"HOOK_SECRET\"\nrate_limit = {n}"));
        assert!(rate(1).is_ok() && rate(1_000_000).is_ok());
        for bad in [0, 1_000_001] {
            assert_eq!(rate(bad).unwrap_err().field, "rate_limit", "{bad}");
        }
    }

    #[test]
    fn errors_name_the_field_and_the_fix() {
        let err = |extra: &str| build(extra).unwrap_err();
        assert_eq!(err("").field, "secret");
        assert!(err("").message.contains("no signing secret"));
        assert!(err("secret_env = \"NOPE\"").message.contains("`NOPE`"));
        assert!(
            err("secret = \"abc\"")
                .message
                .contains("or a plain secret of at least 16 characters")
        );
        let e = err("secret_env = \"HOOK_SECRET\"\nheaders = { webhook-id = \"x\" }");
        assert_eq!(e.field, "headers");
        assert!(e.message.contains("set by the engine"));
        let e = err("secret_env = \"HOOK_SECRET\"\nplugin = \"../evil\"");
        assert!(e.message.contains("invalid plugin name"));
    }

    #[test]
    fn expired_keys_stop_signing() {
        let mut spec = SubscriptionSpec::from_config(
            &Config::parse(
                "[[subscriptions]]\nid=\"a\"\nurl=\"http://x\"\nevents=[\"*\"]\nsecret_env=\"HOOK_SECRET\"\n",
            )
            .unwrap()
            .subscriptions[0],
            &Vars,
        )
        .unwrap();
        spec.secrets.push(StoredSecret {
            secret: "whsec_dGhpcyBpcyBhbm90aGVyIHNlY3JldCBrZXkh".into(),
            expires_at_ms: Some(1_000),
        });
        let s = spec
            .build("a", SubscriptionSource::Api, &DeliveryConfig::default())
            .unwrap();
        assert_eq!(s.active_keys(999).len(), 2);
        assert_eq!(s.active_keys(1_000).len(), 1);
        assert!(
            !format!("{spec:?}").contains("whsec_"),
            "Debug must hide secrets"
        );
    }
}
