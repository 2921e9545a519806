//! `wasmhook plugin run`: one dry run that is the engine. The adapter runs in the engine's
//! sandbox under the engine's limits, its settings are checked against its manifest as a
//! subscription's would be, and its answer goes through the engine's own request checks
//! and signing, so what is printed is what a receiver would get, header for header and
//! byte for byte (`--raw`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use http_body_util::BodyExt as _;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::load::{self, Loaded};
use super::out::{self, outln};
use crate::clock::{now_ms, parse_rfc3339};
use crate::config::{Config, ProcessEnv};
use crate::delivery::attempt::outbound_request;
use crate::delivery::client::vet_destination;
use crate::delivery::ssrf::NetworkPolicy;
use crate::engine::USER_AGENT;
use crate::event::{Event, EventLimits, Publisher, new_id, parse_event};
use crate::plugins::{Action, AdapterInput, Call, CallLimits, Sandbox};
use crate::signing::generate_secret;
use crate::store::SubscriptionSource;
use crate::subscription::{StoredSecret, Subscription, SubscriptionSpec};

/// The URL used when `--url` is not given; `.example` never resolves, so it is not vetted.
const PLACEHOLDER_URL: &str = "https://receiver.example/webhook";

/// Arguments of `plugin run` and `plugin watch`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The `.wasm` file.
    pub file: PathBuf,
    /// The event: as posted to /v1/events (`{"type", "data", "id"?}`), or as delivered,
    /// with its `timestamp`.
    #[arg(long)]
    pub event: PathBuf,
    /// A setting passed to the adapter; repeat for more.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub settings: Vec<String>,
    /// The subscription URL.
    #[arg(long, default_value = PLACEHOLDER_URL)]
    pub url: String,
    /// A signing secret of the subscription (`whsec_…` or plain), newest first; repeat to
    /// dry-run a rotation. Default: a throwaway `whsec_` secret, printed.
    #[arg(long = "secret", value_name = "SECRET")]
    pub secrets: Vec<String>,
    /// A subscription header (`Name: value`); repeat for more.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// The subscription id passed to the adapter.
    #[arg(long, default_value = "dry-run")]
    pub subscription_id: String,
    /// Config file whose `[plugins]` limits and `[delivery]` network policy apply.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print the body byte for byte (what is signed after `{webhook-id}.{webhook-timestamp}.`)
    /// on stdout, and the request line and headers on stderr.
    #[arg(long)]
    pub raw: bool,
    /// Compile without the compile cache.
    #[arg(long)]
    pub no_cache: bool,
}

/// Runs `plugin run`.
pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(args.config.as_deref(), &ProcessEnv)?;
    let sandbox = load::sandbox(&config)?;
    let loaded = load::load(&sandbox, &args.file, &config, !args.no_cache)?;
    once(&sandbox, &loaded, args, &config)
}

/// One dry run of an already loaded adapter; prints the outcome. `Ok(FAILURE)` when the
/// engine would not send a request (adapter error, fault, refused request or settings).
pub fn once(
    sandbox: &Sandbox,
    loaded: &Loaded,
    args: &RunArgs,
    config: &Config,
) -> anyhow::Result<ExitCode> {
    let text = std::fs::read(&args.event)
        .with_context(|| format!("cannot read {}", args.event.display()))?;
    let event = parse_event_file(&text, &config.limits.event_limits())
        .with_context(|| format!("{} is not a valid event", args.event.display()))?;
    let settings = settings(&args.settings)?;
    if let Some(manifest) = &loaded.manifest
        && let Err(e) = manifest.check_settings(&loaded.label.name, &settings)
    {
        eprintln!("error: the engine would refuse a subscription with these settings: {e}");
        return Ok(ExitCode::FAILURE);
    }
    let (sub, generated) = subscription(args, &settings, config)?;
    if let Some(secret) = &generated {
        eprintln!("signing with a throwaway secret (pass --secret to use yours): {secret}");
    }
    let pairs: Vec<(String, String)> = match &loaded.manifest {
        Some(manifest) => manifest.with_defaults(&sub.settings),
        None => sub.settings.clone(),
    };
    let now = now_ms();
    let keys = sub.active_keys(now);
    let url = sub.url.to_string();
    let input = AdapterInput {
        subscription_id: &sub.id,
        url: &url,
        settings: &pairs,
        attempt: 1,
        timestamp: now / 1000,
        signing_keys: &keys,
    };
    let message_id = new_id("msg");
    let call = Call {
        label: &loaded.label,
        event: &event,
        input: &input,
        delivery_id: &message_id,
        limits: CallLimits::for_plugin(&config.plugins, &loaded.label.name),
    };
    let runtime = crate::cli::runtime()?;
    let action = match runtime.block_on(sandbox.transform(&loaded.prepared, call)) {
        Ok(action) => action,
        Err(fault) => {
            eprintln!("error: {fault}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let request = match action {
        Action::Skip(reason) => {
            outln!(
                "{}",
                serde_json::to_string_pretty(&json!({"action": "skip", "reason": reason}))?
            )?;
            return Ok(ExitCode::SUCCESS);
        }
        Action::Deliver(request) => request,
    };
    let user_agent = http::HeaderValue::from_static(USER_AGENT);
    let signed = match outbound_request(request, &sub, &loaded.label, &message_id, &user_agent, now)
    {
        Ok(signed) => signed,
        Err(reason) => {
            eprintln!("error: the engine would not send this request: {reason}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if signed.uri() != PLACEHOLDER_URL {
        let policy = NetworkPolicy {
            allow_private: config.delivery.allow_private_networks,
            allowlist: config.delivery.allowed_cidrs.clone(),
        };
        match runtime.block_on(vet_destination(&policy, signed.uri())) {
            Ok(None) => {}
            Ok(Some(warning)) => eprintln!("warning: {warning}"),
            Err(reason) => {
                eprintln!("error: the engine would refuse to connect: {reason}");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    let (parts, body) = signed.into_parts();
    let body = runtime
        .block_on(body.collect())
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let content_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if let Some(warning) = content_warning(content_type, &body) {
        eprintln!("warning: {warning}");
    }
    let headers: BTreeMap<String, String> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    if args.raw {
        eprintln!("{} {}", parts.method, parts.uri);
        for (name, value) in &headers {
            eprintln!("{name}: {value}");
        }
        out::raw(&body)?;
        return Ok(ExitCode::SUCCESS);
    }
    let shown = serde_json::from_slice::<Value>(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    let out = json!({
        "action": "deliver",
        "method": parts.method.as_str(),
        "url": parts.uri.to_string(),
        "headers": headers,
        "body": shown,
    });
    outln!("{}", serde_json::to_string_pretty(&out)?)?;
    Ok(ExitCode::SUCCESS)
}

/// `--set` pairs as a settings map.
fn settings(pairs: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => Ok((k.to_owned(), v.to_owned())),
            None => bail!("--set `{pair}` must look like KEY=VALUE"),
        })
        .collect()
}

/// The subscription the dry run delivers for, validated as the engine validates one; also
/// the throwaway secret, when one was generated.
fn subscription(
    args: &RunArgs,
    settings: &BTreeMap<String, String>,
    config: &Config,
) -> anyhow::Result<(Subscription, Option<String>)> {
    let (secrets, generated) = if args.secrets.is_empty() {
        let secret = generate_secret().expose().to_owned();
        (vec![secret.clone()], Some(secret))
    } else {
        (args.secrets.clone(), None)
    };
    let headers = args
        .headers
        .iter()
        .map(|h| match h.split_once(':') {
            Some((k, v)) => Ok((k.trim().to_owned(), v.trim().to_owned())),
            None => bail!("--header `{h}` must look like `Name: value`"),
        })
        .collect::<anyhow::Result<_>>()?;
    let spec = SubscriptionSpec {
        url: args.url.clone(),
        events: vec!["*".into()],
        name: None,
        filter: None,
        plugin: None,
        headers,
        settings: settings.clone(),
        retry_schedule: None,
        max_attempts: None,
        timeout: None,
        cpu_budget: None,
        instance_reuse: None,
        rate_limit: None,
        secret_settings: Vec::new(),
        secrets: secrets
            .into_iter()
            .map(|secret| StoredSecret {
                secret,
                expires_at_ms: None,
            })
            .collect(),
    };
    let sub = spec
        .build(
            &args.subscription_id,
            SubscriptionSource::Api,
            &config.delivery,
        )
        .map_err(|e| anyhow::anyhow!("`{}`: {}", e.field, e.message))?;
    Ok((sub, generated))
}

/// Parses an event file with the engine's own rules, as the engine itself publishes
/// (`wasmhook.*` types allowed, so operational events can be dry-run too); the payload
/// keeps its bytes. An event file is the body of `POST /v1/events`, or a delivered
/// envelope, whose `timestamp` (the time the engine accepted it) is kept.
pub fn parse_event_file(text: &[u8], limits: &EventLimits) -> anyhow::Result<Event> {
    let mut fields: Vec<(String, &RawValue)> =
        serde_json::from_slice::<BTreeMap<String, &RawValue>>(text)?
            .into_iter()
            .collect();
    let mut created_at_ms = now_ms();
    if let Some(at) = fields.iter().position(|(k, _)| k == "timestamp") {
        let (_, raw) = fields.remove(at);
        let text: String = serde_json::from_str(raw.get())
            .context("`timestamp` must be a string like 2026-06-13T12:00:00Z")?;
        created_at_ms = parse_rfc3339(&text).with_context(|| {
            format!("`timestamp` `{text}` is not an RFC 3339 time like 2026-06-13T12:00:00Z")
        })?;
    }
    // The rest is held to exactly what POST /v1/events takes.
    let posted: String = format!(
        "{{{}}}",
        fields
            .iter()
            .map(|(k, v)| format!("{}:{}", Value::String(k.clone()), v.get()))
            .collect::<Vec<_>>()
            .join(",")
    );
    Ok(parse_event(posted.as_bytes())?.validate(created_at_ms, limits, Publisher::Engine)?)
}

/// A warning when the body does not look like what its `content-type` says (the engine
/// sends `application/json` when the adapter sets none).
pub fn content_warning(content_type: Option<&str>, body: &[u8]) -> Option<String> {
    let ct = content_type.unwrap_or("application/json");
    let media = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let says_json = media == "application/json" || media.ends_with("+json");
    let is_json = serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok();
    if body.is_empty() {
        return Some(format!(
            "the body is empty, but content-type is `{ct}`; did the adapter fill in the body?"
        ));
    }
    if says_json && !is_json {
        let err = serde_json::from_slice::<Value>(body)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        return Some(format!(
            "content-type is `{ct}` but the body is not valid JSON ({err})"
        ));
    }
    let textual = media.starts_with("text/") || says_json;
    if textual && std::str::from_utf8(body).is_err() {
        return Some(format!(
            "content-type is `{ct}` but the body is not UTF-8 text"
        ));
    }
    let structured = matches!(
        body.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{' | b'[')
    );
    if !says_json && is_json && structured {
        return Some(format!(
            "the body is JSON but content-type is `{ct}`; receivers may not parse it"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: EventLimits = EventLimits {
        max_type_bytes: 128,
        max_data_bytes: 1 << 20,
    };

    #[test]
    fn a_delivered_envelope_keeps_its_timestamp_and_bytes() {
        let text = br#"{"id":"evt_1","type":"host.down","timestamp":"2026-06-13T12:00:00Z","data":{"b":1,"a":2.50}}"#;
        let event = parse_event_file(text, &LIMITS).unwrap();
        assert_eq!(event.timestamp(), "2026-06-13T12:00:00Z");
        assert_eq!(event.data, r#"{"b":1,"a":2.50}"#);
        assert_eq!(event.envelope(), text.to_vec());
    }

    #[test]
    fn a_posted_event_follows_the_engines_rules() {
        let event = parse_event_file(br#"{"type":"host.up"}"#, &LIMITS).unwrap();
        assert_eq!(event.data, "{}");
        assert!(event.id.starts_with("evt_"));
        assert!(parse_event_file(br#"{"type":"bad type"}"#, &LIMITS).is_err());
        assert!(parse_event_file(br#"{"type":"a.b","payload":{}}"#, &LIMITS).is_err());
        let err =
            parse_event_file(br#"{"type":"a.b","timestamp":"yesterday"}"#, &LIMITS).unwrap_err();
        assert!(err.to_string().contains("RFC 3339"), "{err}");
    }

    #[test]
    fn content_type_and_body_must_agree() {
        assert_eq!(
            content_warning(Some("application/json"), br#"{"a":1}"#),
            None
        );
        assert_eq!(content_warning(Some("text/plain"), b"hello"), None);
        assert_eq!(
            content_warning(Some("application/x-www-form-urlencoded"), b"a=1&b=2"),
            None
        );
        let warn = |ct: Option<&str>, body: &[u8]| content_warning(ct, body).unwrap();
        assert!(warn(Some("application/json"), b"hello").contains("not valid JSON"));
        assert!(warn(None, b"hello").contains("`application/json`"));
        assert!(warn(Some("text/plain"), br#"{"a":1}"#).contains("the body is JSON"));
        assert!(warn(Some("application/json"), b"").contains("empty"));
        assert!(warn(Some("text/plain; charset=utf-8"), &[0xff, 0xfe]).contains("not UTF-8"));
        assert_eq!(
            content_warning(Some("application/cloudevents+json"), b"[1]"),
            None
        );
    }
}
