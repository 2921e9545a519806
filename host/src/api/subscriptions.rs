//! `/v1/subscriptions`: create, read, change and delete subscriptions, rotate their signing
//! secret and send them a test event. The store is the source of truth; every change
//! rebuilds the routing catalog, so it takes effect without a restart.
//!
//! Secrets are shown once: in the answer to a create or a rotation. Reads show setting and
//! header values that are secret (declared in `secret_settings`, or named like a credential)
//! as `***`.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::error::read_body;
use super::{ApiError, AppState};
use crate::config::HumanDuration;
use crate::delivery::client::resolve;
use crate::delivery::signing::generate_secret;
use crate::event::{Event, new_id, now_ms, rfc3339};
use crate::store::{NewDelivery, NewEvent, StoredSubscription, SubscriptionSource};
use crate::subscription::{
    StoredSecret, SubscriptionSpec, parse_target_url, redacted, validate_subscription_id,
};

/// Largest request body these endpoints read.
const MAX_BODY: usize = 256 << 10;
/// How long name resolution may take when a URL is checked at create time.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

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
    if bytes.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
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

/// Removes `key` from `fields`: `None` when absent or `null`, an error naming the key and
/// the expected type when it is not a `T`.
fn take<T: serde::de::DeserializeOwned>(
    fields: &mut Map<String, Value>,
    key: &str,
    expected: &str,
) -> Result<Option<T>, ApiError> {
    match fields.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => serde_json::from_value(value).map(Some).map_err(|_| {
            bad_request(
                "invalid_subscription",
                format!("`{key}` must be {expected}"),
            )
        }),
    }
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

/// Turns the user's fields into a spec: unknown fields are named by serde.
fn spec_from(fields: Map<String, Value>) -> Result<SubscriptionSpec, ApiError> {
    serde_json::from_value(Value::Object(fields))
        .map_err(|e| bad_request("invalid_subscription", e.to_string()))
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

/// Refuses a URL whose host is, or resolves to, an address the SSRF guard blocks (any one
/// of them: a name that answers with an internal address is refused even if it also has a
/// public one). The connector checks again at every connect, so a host that turns internal
/// later still fails.
async fn check_destination(state: &AppState, url: &str) -> Result<Vec<String>, ApiError> {
    let uri = parse_target_url(url).map_err(|e| bad_request("invalid_subscription", e))?;
    let addresses = match tokio::time::timeout(RESOLVE_TIMEOUT, resolve(&uri)).await {
        Ok(Ok((_, addrs))) => addrs,
        Ok(Err(e)) => {
            return Ok(vec![format!(
                "`{url}` does not resolve right now ({e}); deliveries fail until it does"
            )]);
        }
        Err(_) => {
            return Ok(vec![format!(
                "resolving `{url}` took over {RESOLVE_TIMEOUT:?}; deliveries fail until it resolves"
            )]);
        }
    };
    for ip in addresses.iter().map(SocketAddr::ip) {
        if let Some(reason) = state.network.blocked(ip) {
            return Err(bad_request(
                "blocked_destination",
                format!(
                    "`{url}` goes to {ip}, {reason}; the engine does not deliver to internal networks \
                     unless [delivery] allow_private_networks or allowed_cidrs allows it"
                ),
            ));
        }
    }
    Ok(Vec::new())
}

/// The spec's fields as a JSON object (a struct always serialises to one).
fn spec_fields(spec: &SubscriptionSpec) -> Map<String, Value> {
    match serde_json::to_value(spec) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// What reads show of a subscription: everything but secrets.
pub fn view(stored: &StoredSubscription, spec: &SubscriptionSpec) -> Value {
    let mut fields = spec_fields(spec);
    fields.remove("secrets");
    fields.insert(
        "settings".into(),
        json!(redacted(&spec.settings, &spec.secret_settings)),
    );
    fields.insert("headers".into(), json!(redacted(&spec.headers, &[])));
    fields.insert(
        "signing_secrets".into(),
        json!(
            spec.secrets
                .iter()
                .map(|s| json!({"expires_at": s.expires_at_ms.map(rfc3339)}))
                .collect::<Vec<_>>()
        ),
    );
    let mut out = Map::new();
    out.insert("id".into(), json!(stored.id));
    out.insert("source".into(), json!(stored.source));
    out.insert("enabled".into(), json!(stored.enabled));
    out.insert("disabled_reason".into(), json!(stored.disabled_reason));
    out.extend(fields);
    out.insert("created_at".into(), json!(rfc3339(stored.created_at_ms)));
    out.insert("updated_at".into(), json!(rfc3339(stored.updated_at_ms)));
    Value::Object(out)
}

/// `GET /v1/subscriptions`
pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let all = state.store.subscriptions().await?;
    let data: Vec<Value> = all
        .iter()
        .filter_map(|s| parse_spec(s).ok().map(|spec| view(s, &spec)))
        .collect();
    Ok(Json(json!({"data": data})))
}

/// `GET /v1/subscriptions/{id}`
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let s = stored(&state, &id).await?;
    Ok(Json(view(&s, &parse_spec(&s)?)))
}

/// `POST /v1/subscriptions`: the answer carries the signing secret, the only time it is
/// shown. Without `id` one is generated; without `secret` a fresh `whsec_` one is.
pub async fn create(
    State(state): State<AppState>,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let mut fields = json_object(body).await?;
    if fields.contains_key("secrets") {
        return Err(bad_request(
            "invalid_subscription",
            "unknown field `secrets`: pass one `secret`, or none to have one generated",
        ));
    }
    let id = take(&mut fields, "id", "a string")?.unwrap_or_else(|| new_id("sub"));
    validate_subscription_id(&id).map_err(|e| bad_request("invalid_subscription", e.message))?;
    let enabled = take(&mut fields, "enabled", "true or false")?.unwrap_or(true);
    let secret = take(&mut fields, "secret", "a string")?
        .unwrap_or_else(|| generate_secret().expose().to_owned());
    fields.insert(
        "secrets".into(),
        json!([StoredSecret {
            secret: secret.clone(),
            expires_at_ms: None
        }]),
    );
    let spec = spec_from(fields)?;
    let warnings = validate(&state, &id, &spec).await?;

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
    let mut answer = view(&record, &spec);
    answer["secret"] = json!(secret);
    if !warnings.is_empty() {
        answer["warnings"] = json!(warnings);
    }
    Ok((StatusCode::CREATED, Json(answer)))
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

/// `PATCH /v1/subscriptions/{id}`: a JSON merge patch; `null` removes an optional field.
pub async fn patch(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let mut fields = json_object(body).await?;
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
    let enabled: Option<bool> = take(&mut fields, "enabled", "true or false")?;
    if record.source == SubscriptionSource::Config && !fields.is_empty() {
        return Err(config_managed(&id));
    }
    let mut spec = parse_spec(&record)?;
    let mut warnings = Vec::new();
    if !fields.is_empty() {
        let mut merged = spec_fields(&spec);
        for (key, value) in fields {
            if value.is_null() {
                merged.remove(&key);
            } else {
                merged.insert(key, value);
            }
        }
        spec = spec_from(merged)?;
        warnings = validate(&state, &id, &spec).await?;
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
    let mut answer = view(&record, &spec);
    if !warnings.is_empty() {
        answer["warnings"] = json!(warnings);
    }
    Ok(Json(answer))
}

/// `DELETE /v1/subscriptions/{id}`: its pending deliveries become dead letters at their
/// next attempt, with an error saying the subscription is gone.
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

/// `POST /v1/subscriptions/{id}/rotate-secret`, body optional: `{"grace": "24h"}`. The new
/// secret signs from now on; the old one keeps signing beside it (a second `v1` signature)
/// until the grace period ends, so receivers can switch without dropping a request.
pub async fn rotate_secret(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let mut fields = json_object(body).await?;
    let grace = match fields.remove("grace") {
        None | Some(Value::Null) => state.subscriptions.defaults().secret_rotation_grace,
        Some(Value::String(text)) => HumanDuration::parse(&text)
            .map_err(|e| bad_request("invalid_grace", format!("`grace`: {e}")))?,
        Some(_) => {
            return Err(bad_request(
                "invalid_grace",
                "`grace` must be a duration like \"24h\"",
            ));
        }
    };
    if let Some(key) = fields.keys().next() {
        return Err(bad_request(
            "invalid_request",
            format!("unknown field `{key}`: the only field is `grace`"),
        ));
    }
    let mut record = stored(&state, &id).await?;
    if record.source == SubscriptionSource::Config {
        return Err(config_managed(&id));
    }
    let mut spec = parse_spec(&record)?;
    let now = now_ms();
    let until = now + grace.0.as_millis() as i64;
    spec.secrets
        .retain(|s| s.expires_at_ms.is_none_or(|at| at > now));
    for old in &mut spec.secrets {
        old.expires_at_ms = Some(old.expires_at_ms.map_or(until, |at| at.min(until)));
    }
    let secret = generate_secret().expose().to_owned();
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
    let mut answer = view(&record, &spec);
    answer["secret"] = json!(secret);
    answer["previous_expires_at"] = json!(rfc3339(until));
    Ok(Json(answer))
}

/// `POST /v1/subscriptions/{id}/test`: stores a `wasmhook.test` event with one delivery to
/// this subscription, waits for its first attempt and answers with the delivery and that
/// attempt. If the attempt has not ended within the subscription's timeout plus 10 s, the
/// answer is `202` with the delivery, which keeps going as any other.
pub async fn test(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
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
        if let Some(detail) = state.store.delivery(&delivery_id).await?
            && !detail.attempts_log.is_empty()
        {
            return Ok((
                StatusCode::OK,
                Json(serde_json::to_value(detail).unwrap_or_default()),
            ));
        }
        if tokio::time::Instant::now() >= deadline {
            let detail = state.store.delivery(&delivery_id).await?;
            return Ok((
                StatusCode::ACCEPTED,
                Json(serde_json::to_value(detail).unwrap_or_default()),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
