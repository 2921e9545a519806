//! Subscriptions: who wants which events, where they go, through which adapter, and how they
//! are signed and retried. `Catalog` is an immutable snapshot with its routing index; the
//! engine swaps in a new one when subscriptions change.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use http::{HeaderName, HeaderValue, Uri};

use crate::config::{DeliveryConfig, Env, SubscriptionConfig};
use crate::delivery::retry::RetryPolicy;
use crate::delivery::signing::SigningKey;
use crate::router::{Router, validate_pattern};
use crate::secret::Secret;

/// The longest `Retry-After` a receiver can impose.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(3600);

/// One subscription, validated and ready to deliver to.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// Stable id.
    pub id: String,
    /// Target URL, http or https.
    pub url: Uri,
    /// Event-type patterns.
    pub patterns: Vec<String>,
    /// Keys that sign each request; more than one while a secret is being rotated.
    pub signing_keys: Vec<SigningKey>,
    /// Adapter name (`plugins/<name>.wasm`); `None` sends the standard envelope.
    pub plugin: Option<String>,
    /// Extra request headers, already validated.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Adapter settings, sorted by key.
    pub settings: Vec<(String, String)>,
    /// When and how often to retry.
    pub retry: RetryPolicy,
    /// Time limit of one attempt.
    pub timeout: Duration,
}

/// Headers the engine owns; a subscription or adapter setting them would break signing or
/// HTTP framing, so they are refused.
pub fn is_reserved_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.starts_with("webhook-")
        || matches!(
            name.as_str(),
            "host"
                | "content-length"
                | "transfer-encoding"
                | "connection"
                | "user-agent"
                | "upgrade"
                | "te"
                | "trailer"
        )
}

/// Parses and checks a receiver URL: absolute, http or https, with a host.
pub fn parse_target_url(url: &str) -> Result<Uri, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("`{url}` is not a valid URL ({e})"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(format!("`{url}` must start with http:// or https://")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("`{url}` has no host"));
    }
    Ok(uri)
}

/// Checks one custom header.
pub fn parse_header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    if is_reserved_header(name) {
        return Err(format!(
            "header `{name}` is set by the engine and cannot be overridden"
        ));
    }
    let name =
        HeaderName::try_from(name).map_err(|_| format!("`{name}` is not a valid header name"))?;
    let value = HeaderValue::try_from(value)
        .map_err(|_| format!("the value of header `{name}` is not valid"))?;
    Ok((name, value))
}

impl Subscription {
    /// Builds a subscription from a config entry, resolving `secret_env` through `env`.
    pub fn from_config(
        cfg: &SubscriptionConfig,
        defaults: &DeliveryConfig,
        env: &dyn Env,
    ) -> anyhow::Result<Self> {
        let context = || format!("subscription `{}`", cfg.id);
        Self::try_from_config(cfg, defaults, env).with_context(context)
    }

    fn try_from_config(
        cfg: &SubscriptionConfig,
        defaults: &DeliveryConfig,
        env: &dyn Env,
    ) -> anyhow::Result<Self> {
        if cfg.id.is_empty()
            || !cfg
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
        {
            bail!("the id must be non-empty and use only letters, digits, `_`, `-` and `.`");
        }
        let url = parse_target_url(&cfg.url).map_err(|e| anyhow!(e))?;
        if cfg.events.is_empty() {
            bail!("`events` is empty; list patterns such as [\"host.*\"] or [\"*\"]");
        }
        for pattern in &cfg.events {
            validate_pattern(pattern).map_err(|e| anyhow!(e))?;
        }
        let secret = match (&cfg.secret, &cfg.secret_env) {
            (Some(_), Some(_)) => bail!("set `secret` or `secret_env`, not both"),
            (Some(secret), None) => secret.clone(),
            (None, Some(var)) => Secret::new(env.var(var).ok_or_else(|| {
                anyhow!("`secret_env` names `{var}`, but that environment variable is not set")
            })?),
            (None, None) => bail!(
                "no signing secret: set `secret = \"whsec_...\"` or `secret_env = \"VAR\"` (generate one with `wasmhook secret`)"
            ),
        };
        let key = SigningKey::from_secret(&secret)?;
        if let Some(plugin) = &cfg.plugin {
            validate_plugin_name(plugin).map_err(|e| anyhow!(e))?;
        }
        let headers = cfg
            .headers
            .iter()
            .map(|(k, v)| parse_header(k, v))
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow!(e))?;
        let schedule: Vec<Duration> = cfg
            .retry_schedule
            .as_ref()
            .unwrap_or(&defaults.retry_schedule)
            .iter()
            .map(|d| d.0)
            .collect();
        let max_attempts = cfg
            .max_attempts
            .or(if cfg.retry_schedule.is_some() {
                None
            } else {
                defaults.max_attempts
            })
            .unwrap_or(schedule.len() as u32 + 1);
        if max_attempts == 0 {
            bail!("`max_attempts` must be at least 1");
        }
        Ok(Self {
            id: cfg.id.clone(),
            url,
            patterns: cfg.events.clone(),
            signing_keys: vec![key],
            plugin: cfg.plugin.clone(),
            headers,
            settings: cfg
                .settings
                .iter()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect(),
            retry: RetryPolicy {
                schedule,
                max_attempts,
                retry_after_cap: RETRY_AFTER_CAP,
            },
            timeout: cfg.timeout.unwrap_or(defaults.timeout).0,
        })
    }
}

/// Plugin names are file stems: `[A-Za-z0-9_-]`, 1 to 64 characters.
pub fn validate_plugin_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid plugin name `{name}`: use the file name without `.wasm`, made of letters, digits, `_` and `-`"
        ))
    }
}

/// An immutable set of subscriptions with its routing index.
#[derive(Debug, Default)]
pub struct Catalog {
    subscriptions: Vec<Arc<Subscription>>,
    by_id: HashMap<String, usize>,
    router: Router,
}

impl Catalog {
    /// Indexes `subscriptions`.
    pub fn new(subscriptions: Vec<Subscription>) -> Self {
        let mut router = Router::default();
        let mut by_id = HashMap::with_capacity(subscriptions.len());
        for (i, sub) in subscriptions.iter().enumerate() {
            by_id.insert(sub.id.clone(), i);
            for pattern in &sub.patterns {
                router.insert(pattern, i);
            }
        }
        Self {
            subscriptions: subscriptions.into_iter().map(Arc::new).collect(),
            by_id,
            router,
        }
    }

    /// The subscriptions that want `event_type`.
    pub fn matching(&self, event_type: &str) -> Vec<Arc<Subscription>> {
        self.router
            .matching(event_type)
            .into_iter()
            .map(|i| Arc::clone(&self.subscriptions[i]))
            .collect()
    }

    /// The subscription with this id.
    pub fn get(&self, id: &str) -> Option<&Arc<Subscription>> {
        self.by_id.get(id).map(|&i| &self.subscriptions[i])
    }

    /// Every subscription, in load order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Subscription>> {
        self.subscriptions.iter()
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

    fn build(extra: &str) -> anyhow::Result<Subscription> {
        let text = format!(
            "[[subscriptions]]\nid = \"ops\"\nurl = \"https://hooks.example.com/x\"\nevents = [\"host.*\"]\n{extra}"
        );
        let config = Config::parse(&text)?;
        Subscription::from_config(&config.subscriptions[0], &config.delivery, &Vars)
    }

    #[test]
    fn builds_with_defaults_from_delivery() {
        let s = build("secret_env = \"HOOK_SECRET\"").unwrap();
        assert_eq!(s.retry.max_attempts, 10);
        assert_eq!(s.timeout, Duration::from_secs(15));
        assert_eq!(s.url.host(), Some("hooks.example.com"));
    }

    #[test]
    fn own_schedule_sets_the_default_max_attempts() {
        let s = build("secret_env = \"HOOK_SECRET\"\nretry_schedule = [\"1s\", \"2s\"]").unwrap();
        assert_eq!(s.retry.max_attempts, 3);
        let s = build("secret_env = \"HOOK_SECRET\"\nretry_schedule = [\"1s\"]\nmax_attempts = 7")
            .unwrap();
        assert_eq!(s.retry.max_attempts, 7);
    }

    #[test]
    fn errors_name_the_subscription_and_the_fix() {
        let msg = |extra: &str| format!("{:#}", build(extra).unwrap_err());
        assert!(
            msg("").contains("subscription `ops`: no signing secret"),
            "{}",
            msg("")
        );
        assert!(msg("secret_env = \"NOPE\"").contains("`NOPE`"));
        assert!(msg("secret = \"abc\"").contains("must start with `whsec_`"));
        assert!(
            msg("secret_env = \"HOOK_SECRET\"\nheaders = { webhook-id = \"x\" }")
                .contains("set by the engine")
        );
        assert!(
            msg("secret_env = \"HOOK_SECRET\"\nplugin = \"../evil\"")
                .contains("invalid plugin name")
        );
    }

    #[test]
    fn urls_must_be_absolute_http() {
        assert!(
            parse_target_url("ftp://x/")
                .unwrap_err()
                .contains("http://")
        );
        assert!(parse_target_url("/relative").is_err());
        assert!(parse_target_url("http://127.0.0.1:9/hook").is_ok());
    }
}
