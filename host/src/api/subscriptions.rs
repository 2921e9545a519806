//! `/v1/subscriptions`: create, read, change and delete subscriptions, rotate their signing
//! secret and send them a test event. The store is the source of truth; every change
//! rebuilds the routing catalog, so it takes effect without a restart.
//!
//! Secrets are shown once: in the answer to a create or a rotation. Reads show setting and
//! header values that are secret (declared in `secret_settings`, or named like a credential)
//! as `***`.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use super::error::read_body;
use super::openapi::ErrorBody;
use super::{ApiError, AppState};
use crate::config::HumanDuration;
use crate::delivery::client::vet_destination;
use crate::delivery::signing::{generate_plain_secret, generate_secret, is_plain};
use crate::event::{Event, new_id, now_ms, rfc3339};
use crate::plugins::SettingsCheck;
use crate::secret::Secret;
use crate::store::{DeliveryDetail, NewDelivery, NewEvent, StoredSubscription, SubscriptionSource};
use crate::subscription::{
    StoredSecret, SubscriptionSpec, parse_target_url, redacted, validate_subscription_id,
};

/// Largest request body these endpoints read.
const MAX_BODY: usize = 256 << 10;

/// An event-type pattern: dot-separated segments, each a word or `*`. Documentation only.
#[derive(Debug)]
pub struct EventPattern;

impl utoipa::PartialSchema for EventPattern {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .pattern(Some(r"^([A-Za-z0-9_-]+|\*)(\.([A-Za-z0-9_-]+|\*))*$"))
            .max_length(Some(128))
            .examples([json!("host.*")])
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

/// Parses an API duration, holding it to [`DURATION_PATTERN`] first.
fn api_duration(text: &str, field: &str) -> Result<HumanDuration, String> {
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
        return Err(format!(
            "`{field}`: `{text}` is not a duration; write whole numbers with a unit (ms, s, m, h, d), like `500ms`, `30s` or `2h30m`"
        ));
    }
    HumanDuration::parse(text).map_err(|e| format!("`{field}`: {e}"))
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
    /// Most deliveries a second. More wait their turn; none is dropped. Default: no limit.
    #[schema(minimum = 1)]
    pub rate_limit: Option<u32>,
    /// The adapter's CPU budget for this subscription (`"100ms"`). Default: the plugin's.
    #[schema(value_type = Option<ApiDuration>)]
    pub cpu_budget: Option<String>,
    /// Reuse one adapter instance for up to this many deliveries (0: a fresh one each).
    /// Default: the plugin's.
    pub instance_reuse: Option<u32>,
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
    #[schema(minimum = 1)]
    rate_limit: Option<u32>,
    #[schema(value_type = Option<ApiDuration>)]
    cpu_budget: Option<String>,
    instance_reuse: Option<u32>,
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

fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "subscription_not_found",
        format!("no subscription `{id}`"),
    )
}

async fn json_object(body: Body) -> Result<Map<String, Value>, ApiError> {
    let bytes = read_body(body, MAX_BODY).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(Value::Null) => Ok(Map::new()),
        Ok(_) => Err(bad_request(
            "invalid_json",
            "the body must be a JSON object",
        )),
        Err(e) => Err(bad_request(
            "invalid_json",
            format!("the body is not valid JSON: {e}"),
        )),
    }
}

/// Reads `fields` as a `T`; an error names the field (`events[0]: invalid type …`).
fn typed<T: DeserializeOwned>(
    fields: Map<String, Value>,
    code: &'static str,
) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(Value::Object(fields)).map_err(|e| {
        let path = e.path().to_string();
        let message = if path == "." {
            e.inner().to_string()
        } else {
            format!("`{path}`: {}", e.inner())
        };
        bad_request(code, message)
    })
}

async fn stored(state: &AppState, id: &str) -> Result<StoredSubscription, ApiError> {
    state
        .store
        .subscriptions()
        .await?
        .into_iter()
        .find(|s| s.id == id)
        .ok_or_else(|| not_found(id))
}

fn parse_spec(stored: &StoredSubscription) -> Result<SubscriptionSpec, ApiError> {
    serde_json::from_str(&stored.spec).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "unreadable_subscription",
            format!(
                "subscription `{}` is stored in a form this engine cannot read: {e}",
                stored.id
            ),
        )
    })
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
        .map_err(|e| bad_request("invalid_subscription", e))
}

fn duration(text: Option<String>, field: &str) -> Result<Option<HumanDuration>, ApiError> {
    text.map(|t| api_duration(&t, field))
        .transpose()
        .map_err(|e| bad_request("invalid_subscription", e))
}

impl CreateSubscription {
    /// The spec this body describes, signed with `secret`.
    fn into_spec(self, secret: String) -> Result<SubscriptionSpec, ApiError> {
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
        })
    }
}

/// Validates `spec` as subscription `id` against the engine's rules and limits, including
/// the SSRF guard on its URL. Returns warnings (for example a host that does not resolve).
async fn validate(
    state: &AppState,
    id: &str,
    spec: &SubscriptionSpec,
) -> Result<Vec<String>, ApiError> {
    spec.build(id, SubscriptionSource::Api, state.subscriptions.defaults())
        .map_err(|e| {
            bad_request(
                "invalid_subscription",
                format!("`{}`: {}", e.field, e.message),
            )
        })?;
    let settings_bytes: usize = spec.settings.iter().map(|(k, v)| k.len() + v.len()).sum();
    if settings_bytes > state.limits.max_settings_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "settings_too_large",
            format!(
                "the settings take {settings_bytes} bytes, over the {}-byte limit ([limits] max_settings_bytes)",
                state.limits.max_settings_bytes
            ),
        ));
    }
    check_destination(state, &spec.url).await
}

/// Holds the settings to the adapter's manifest when its plugin is loaded (`400
/// invalid_settings`, naming each setting and the adapter), and adds the settings the
/// manifest declares secret to `secret_settings`, so reads hide them. A plugin that is not
/// loaded cannot be checked yet: a warning says so.
fn check_settings(state: &AppState, spec: &mut SubscriptionSpec) -> Result<Vec<String>, ApiError> {
    let Some(plugin) = spec.plugin.clone() else {
        return Ok(Vec::new());
    };
    match state.registry.check_settings(&plugin, &spec.settings) {
        Ok(SettingsCheck::Checked { secret }) => {
            spec.add_secret_settings(secret);
            Ok(Vec::new())
        }
        Ok(SettingsCheck::NoManifest) => Ok(Vec::new()),
        Ok(SettingsCheck::NotLoaded) => Ok(vec![format!(
            "plugin `{plugin}` is not loaded, so its settings are not checked yet; deliveries wait until it is, and an attempt whose settings do not fit its manifest fails"
        )]),
        Err(e) => Err(bad_request("invalid_settings", e.to_string())),
    }
}

/// Refuses a URL the SSRF guard blocks (see `client::vet_destination`).
async fn check_destination(state: &AppState, url: &str) -> Result<Vec<String>, ApiError> {
    let uri = parse_target_url(url).map_err(|e| bad_request("invalid_subscription", e))?;
    match vet_destination(&state.network, &uri).await {
        Ok(warning) => Ok(warning.into_iter().collect()),
        Err(reason) => Err(bad_request("blocked_destination", reason)),
    }
}

/// The spec's fields as a JSON object (a struct always serialises to one).
fn spec_fields(spec: &SubscriptionSpec) -> Map<String, Value> {
    match serde_json::to_value(spec) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// What reads show of a subscription: everything but secrets.
pub fn view(stored: &StoredSubscription, spec: &SubscriptionSpec) -> SubscriptionView {
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
    } = spec;
    let text = |d: &HumanDuration| d.compact();
    SubscriptionView {
        id: stored.id.clone(),
        source: stored.source,
        enabled: stored.enabled,
        disabled_reason: stored.disabled_reason.clone(),
        name: name.clone(),
        url: url.clone(),
        events: events.clone(),
        filter: filter.clone(),
        plugin: plugin.clone(),
        headers: redacted(headers, &[]),
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
        created_at: rfc3339(stored.created_at_ms),
        updated_at: rfc3339(stored.updated_at_ms),
    }
}

/// Lists every subscription, from the config file and from the API, without secrets.
#[utoipa::path(
    get, path = "/subscriptions", tag = "subscriptions", operation_id = "list_subscriptions",
    responses(
        (status = 200, description = "Every subscription", body = SubscriptionList),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn list(State(state): State<AppState>) -> Result<Json<SubscriptionList>, ApiError> {
    let all = state.store.subscriptions().await?;
    let data = all
        .iter()
        .filter_map(|s| parse_spec(s).ok().map(|spec| view(s, &spec)))
        .collect();
    Ok(Json(SubscriptionList { data }))
}

/// One subscription, without secrets.
#[utoipa::path(
    get, path = "/subscriptions/{id}", tag = "subscriptions", operation_id = "get_subscription",
    params(("id" = String, Path, description = "The subscription id")),
    responses(
        (status = 200, description = "The subscription", body = SubscriptionView),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such subscription (`subscription_not_found`)", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SubscriptionView>, ApiError> {
    let s = stored(&state, &id).await?;
    Ok(Json(view(&s, &parse_spec(&s)?)))
}

/// Creates a subscription; it gets events at once.
///
/// The answer carries the signing secret, the only time it is shown. Without `id` one is
/// generated; without `secret` a fresh `whsec_` one is. A URL that is or resolves to an
/// internal address is refused with `blocked_destination`, and a filter that does not
/// parse with `invalid_subscription`.
#[utoipa::path(
    post, path = "/subscriptions", tag = "subscriptions", operation_id = "create_subscription",
    request_body(content = CreateSubscription, content_type = "application/json"),
    responses(
        (status = 201, description = "Created and live", body = CreatedSubscription),
        (status = 400, description = "Invalid (`invalid_json`, `invalid_subscription`, `invalid_settings`, `blocked_destination`)", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 409, description = "The id exists (`subscription_exists`), or `[limits] max_subscriptions` is reached (`too_many_subscriptions`)", body = ErrorBody),
        (status = 413, description = "The body or the settings are too large (`body_too_large`, `settings_too_large`)", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    body: Body,
) -> Result<(StatusCode, Json<CreatedSubscription>), ApiError> {
    let input: CreateSubscription = typed(json_object(body).await?, "invalid_subscription")?;
    let id = input.id.clone().unwrap_or_else(|| new_id("sub"));
    validate_subscription_id(&id).map_err(|e| bad_request("invalid_subscription", e.message))?;
    let enabled = input.enabled.unwrap_or(true);
    let secret = input
        .secret
        .as_ref()
        .map(|s| s.expose().to_owned())
        .unwrap_or_else(|| generate_secret().expose().to_owned());
    let mut spec = input.into_spec(secret.clone())?;
    let mut warnings = validate(&state, &id, &spec).await?;
    warnings.extend(check_settings(&state, &mut spec)?);

    let existing = state.store.subscriptions().await?;
    if existing.iter().any(|s| s.id == id) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "subscription_exists",
            format!(
                "subscription `{id}` already exists; change it with PATCH /v1/subscriptions/{id}"
            ),
        ));
    }
    if existing.len() >= state.limits.max_subscriptions {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "too_many_subscriptions",
            format!(
                "the engine holds its limit of {} subscriptions ([limits] max_subscriptions); delete some first",
                state.limits.max_subscriptions
            ),
        ));
    }
    let now = now_ms();
    let record = StoredSubscription {
        id: id.clone(),
        source: SubscriptionSource::Api,
        spec: serde_json::to_string(&spec).unwrap_or_default(),
        enabled,
        disabled_reason: (!enabled).then(|| "created disabled".to_owned()),
        created_at_ms: now,
        updated_at_ms: now,
    };
    state.store.put_subscription(record.clone()).await?;
    state.subscriptions.reload().await?;
    tracing::info!(subscription = %id, url = %spec.url, "subscription created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedSubscription {
            subscription: view(&record, &spec),
            secret,
            warnings,
        }),
    ))
}

fn config_managed(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "managed_by_config",
        format!(
            "subscription `{id}` comes from the config file, which is rewritten into the store at every start; \
             change it there (only `enabled` can be set through the API)"
        ),
    )
}

/// Changes a subscription with a JSON merge patch; the change takes effect at once.
#[utoipa::path(
    patch, path = "/subscriptions/{id}", tag = "subscriptions", operation_id = "update_subscription",
    params(("id" = String, Path, description = "The subscription id")),
    request_body(content = PatchSubscription, content_type = "application/json"),
    responses(
        (status = 200, description = "Changed", body = UpdatedSubscription),
        (status = 400, description = "Invalid (`invalid_json`, `invalid_subscription`, `invalid_settings`, `immutable_field`, `blocked_destination`)", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such subscription", body = ErrorBody),
        (status = 409, description = "It comes from the config file and only `enabled` can change (`managed_by_config`)", body = ErrorBody),
        (status = 413, description = "The body or the settings are too large", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn patch(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<UpdatedSubscription>, ApiError> {
    let bytes = read_body(body, MAX_BODY).await?;
    let mut fields = match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => map,
        Ok(_) => {
            return Err(bad_request(
                "invalid_json",
                "the body must be a JSON object: a merge patch like {\"enabled\": false}",
            ));
        }
        Err(e) => {
            return Err(bad_request(
                "invalid_json",
                format!("the body must be a JSON merge patch object: {e}"),
            ));
        }
    };
    let mut record = stored(&state, &id).await?;
    for key in ["id", "secret", "secrets"] {
        if fields.contains_key(key) {
            return Err(bad_request(
                "immutable_field",
                format!(
                    "`{key}` cannot be changed; rotate the secret with POST /v1/subscriptions/{id}/rotate-secret"
                ),
            ));
        }
    }
    let enabled = match fields.remove("enabled") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(b),
        Some(_) => {
            return Err(bad_request(
                "invalid_subscription",
                "`enabled` must be true or false",
            ));
        }
    };
    if record.source == SubscriptionSource::Config && !fields.is_empty() {
        return Err(config_managed(&id));
    }
    let mut spec = parse_spec(&record)?;
    let mut warnings = Vec::new();
    if !fields.is_empty() {
        // Merge onto the current spec in its API spelling, then read it back as a create
        // body would be, so a patch is held to the same rules and error messages.
        let mut merged = spec_fields(&spec);
        merged.remove("secrets");
        for (key, value) in fields {
            if value.is_null() {
                merged.remove(&key);
            } else {
                merged.insert(key, value);
            }
        }
        let input: CreateSubscription = typed(merged, "invalid_subscription")?;
        let secrets = std::mem::take(&mut spec.secrets);
        spec = input.into_spec(String::new())?;
        spec.secrets = secrets;
        warnings = validate(&state, &id, &spec).await?;
        warnings.extend(check_settings(&state, &mut spec)?);
        record.spec = serde_json::to_string(&spec).unwrap_or_default();
    }
    if let Some(enabled) = enabled {
        record.enabled = enabled;
        record.disabled_reason = (!enabled).then(|| "disabled through the API".to_owned());
    }
    record.updated_at_ms = now_ms();
    state.store.put_subscription(record.clone()).await?;
    state.subscriptions.reload().await?;
    if enabled == Some(true) {
        // Deliveries parked while it was disabled become due again.
        state.wake.notify_one();
    }
    Ok(Json(UpdatedSubscription {
        subscription: view(&record, &spec),
        warnings,
    }))
}

/// Deletes a subscription. Its pending deliveries become dead letters at their next
/// attempt, with an error saying the subscription is gone.
#[utoipa::path(
    delete, path = "/subscriptions/{id}", tag = "subscriptions", operation_id = "delete_subscription",
    params(("id" = String, Path, description = "The subscription id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such subscription", body = ErrorBody),
        (status = 409, description = "It comes from the config file (`managed_by_config`)", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let record = stored(&state, &id).await?;
    if record.source == SubscriptionSource::Config {
        return Err(config_managed(&id));
    }
    state.store.delete_subscription(&id).await?;
    state.subscriptions.reload().await?;
    tracing::info!(subscription = %id, "subscription deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Rotates the signing secret.
///
/// The new secret is of the old one's kind (`whsec_`, or plain for a plain one) and signs
/// from now on; the old one keeps signing beside it (a second `v1`
/// signature in `webhook-signature`) until the grace period ends, so receivers can switch
/// without refusing a request.
#[utoipa::path(
    post, path = "/subscriptions/{id}/rotate-secret", tag = "subscriptions", operation_id = "rotate_subscription_secret",
    params(("id" = String, Path, description = "The subscription id")),
    request_body(content = Option<RotateSecret>, content_type = "application/json"),
    responses(
        (status = 200, description = "Rotated; the new secret is shown this once", body = RotatedSecret),
        (status = 400, description = "Invalid body (`invalid_json`, `invalid_grace`)", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such subscription", body = ErrorBody),
        (status = 409, description = "It comes from the config file (`managed_by_config`)", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<RotatedSecret>, ApiError> {
    let request: RotateSecret = typed(json_object(body).await?, "invalid_grace")?;
    let grace = match request.grace {
        None => state.subscriptions.defaults().secret_rotation_grace,
        Some(text) => api_duration(&text, "grace").map_err(|e| bad_request("invalid_grace", e))?,
    };
    let mut record = stored(&state, &id).await?;
    if record.source == SubscriptionSource::Config {
        return Err(config_managed(&id));
    }
    let mut spec = parse_spec(&record)?;
    let now = now_ms();
    let until = now.saturating_add(i64::try_from(grace.0.as_millis()).unwrap_or(i64::MAX));
    spec.secrets
        .retain(|s| s.expires_at_ms.is_none_or(|at| at > now));
    for old in &mut spec.secrets {
        old.expires_at_ms = Some(old.expires_at_ms.map_or(until, |at| at.min(until)));
    }
    // A plain secret is replaced by a plain one: its receiver takes the secret as text.
    let plain = spec.secrets.first().is_some_and(|s| is_plain(&s.secret));
    let secret = if plain {
        generate_plain_secret()
    } else {
        generate_secret()
    };
    let secret = secret.expose().to_owned();
    spec.secrets.insert(
        0,
        StoredSecret {
            secret: secret.clone(),
            expires_at_ms: None,
        },
    );
    record.spec = serde_json::to_string(&spec).unwrap_or_default();
    record.updated_at_ms = now;
    state.store.put_subscription(record.clone()).await?;
    state.subscriptions.reload().await?;
    tracing::info!(subscription = %id, grace = ?grace.0, "signing secret rotated");
    Ok(Json(RotatedSecret {
        subscription: view(&record, &spec),
        secret,
        previous_expires_at: rfc3339(until),
    }))
}

/// Sends a signed `wasmhook.test` event through the subscription's adapter.
///
/// Stores a `wasmhook.test` event with one delivery to this subscription, waits for its
/// first attempt and answers with the delivery and that attempt. If the delivery waits
/// instead (its plugin is not loaded, or its rate limit is reached), or the attempt has
/// not ended within the subscription's timeout plus 10 s, the answer is `202` with the
/// delivery and why it waits; it carries on like any other.
#[utoipa::path(
    post, path = "/subscriptions/{id}/test", tag = "subscriptions", operation_id = "test_subscription",
    params(("id" = String, Path, description = "The subscription id")),
    responses(
        (status = 200, description = "The first attempt ended; see its status and error", body = DeliveryDetail),
        (status = 202, description = "No attempt has ended yet; `last_error` says why it waits, if it does", body = DeliveryDetail),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such subscription", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn test(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<DeliveryDetail>), ApiError> {
    let timeout = {
        let catalog = state.subscriptions.catalog();
        let sub = catalog.get(&id).ok_or_else(|| not_found(&id))?;
        sub.timeout
    };
    let now = now_ms();
    let event = Event {
        id: new_id("evt"),
        kind: "wasmhook.test".into(),
        created_at_ms: now,
        data: json!({
            "subscription_id": id,
            "message": "A test event from wasmhook: if you can read this, the subscription works.",
        })
        .to_string(),
    };
    let delivery_id = new_id("msg");
    state
        .store
        .ingest(vec![NewEvent {
            event,
            deliveries: vec![NewDelivery {
                id: delivery_id.clone(),
                subscription_id: id.clone(),
            }],
        }])
        .await?;
    state.wake.notify_one();
    let deadline = tokio::time::Instant::now() + timeout + Duration::from_secs(10);
    loop {
        let detail = state.store.delivery(&delivery_id).await?;
        let lost = || {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "delivery_not_found",
                format!("the test delivery {delivery_id} is gone (the subscription was deleted?)"),
            )
        };
        match detail {
            Some(detail) if !detail.attempts_log.is_empty() => {
                return Ok((StatusCode::OK, Json(detail)));
            }
            // Waiting without an attempt (its plugin is not loaded, a rate limit) or slow:
            // answer with where it stands.
            Some(detail)
                if detail.delivery.last_error.is_some()
                    || tokio::time::Instant::now() >= deadline =>
            {
                return Ok((StatusCode::ACCEPTED, Json(detail)));
            }
            None => return Err(lost()),
            Some(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_shows_no_secret() {
        let input: CreateSubscription = serde_json::from_value(json!({
            "url": "https://x.example/", "events": ["*"], "secret": "whsec_c2VjcmV0LXZhbHVlLXRoYXQtaXMtbG9uZw==",
            "settings": {"routing_key": "R0UT1NG"}, "headers": {"Authorization": "Bearer s3cr3t"},
        }))
        .unwrap();
        let text = format!("{input:?}");
        for leaked in ["whsec_", "R0UT1NG", "s3cr3t"] {
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
            let err = api_duration(bad, "t").unwrap_err();
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
