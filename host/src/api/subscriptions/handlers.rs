//! The `/v1/subscriptions` endpoints.

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::types::*;
use super::view::{spec_fields, view};
use crate::api::body::read_body;
use crate::api::openapi::ErrorBody;
use crate::api::{ApiError, AppState};
use crate::clock::{now_ms, rfc3339};
use crate::delivery::attempt::subscription_park_key;
use crate::delivery::client::vet_destination;
use crate::event::{EventDraft, new_id};
use crate::ops::{OpsEvent, SubscriptionDisabled};
use crate::outbound::parse_target_url;
use crate::plugins::SettingsCheck;
use crate::secret::Secret;
use crate::secret::redact_url;
use crate::signing::{generate_plain_secret, generate_secret, is_plain};
use crate::store::{DeliveryDetail, StoredSubscription, SubscriptionSource};
use crate::subscription::{StoredSecret, SubscriptionSpec, validate_subscription_id};

pub(super) fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
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
    if let Some(plugin) = &spec.plugin {
        spec.check_cpu_budget(state.registry.limits_for(plugin).cpu_budget)
            .map_err(|e| {
                bad_request(
                    "invalid_subscription",
                    format!("`{}`: {}", e.field, e.message),
                )
            })?;
    }
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
    let uri =
        parse_target_url(url).map_err(|e| bad_request("invalid_subscription", e.to_string()))?;
    match vet_destination(&state.network, &uri).await {
        Ok(warning) => Ok(warning.into_iter().collect()),
        Err(blocked) => Err(bad_request("blocked_destination", blocked.to_string())),
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
    let now = now_ms();
    let health = state.store.subscription_health(None, now).await?;
    let data = all
        .iter()
        .filter_map(|s| {
            let spec = parse_spec(s).ok()?;
            Some(view(s, &spec, health.get(&s.id), now))
        })
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
    let now = now_ms();
    let health = state.store.subscription_health(Some(&id), now).await?;
    Ok(Json(view(&s, &parse_spec(&s)?, health.get(&id), now)))
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

    let exists = || {
        ApiError::new(
            StatusCode::CONFLICT,
            "subscription_exists",
            format!(
                "subscription `{id}` already exists; change it with PATCH /v1/subscriptions/{id}"
            ),
        )
    };
    let existing = state.store.subscriptions().await?;
    if existing.iter().any(|s| s.id == id) {
        return Err(exists());
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
        spec: spec.to_json(),
        enabled,
        disabled_reason: (!enabled).then(|| "created disabled".to_owned()),
        created_at_ms: now,
        updated_at_ms: now,
    };
    // Atomic: of concurrent creates with this id, one wins and the others get 409.
    if !state.store.create_subscription(record.clone()).await? {
        return Err(exists());
    }
    state.subscriptions.reload().await?;
    tracing::info!(subscription = %id, url = %redact_url(&spec.url), "subscription created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedSubscription {
            subscription: view(&record, &spec, None, now_ms()),
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
        // `null` clears: it reads back as an absent optional field, and a field the body
        // does not know, even as `null`, is refused like any unknown field.
        merged.extend(fields);
        let input: CreateSubscription = typed(merged, "invalid_subscription")?;
        let secrets = std::mem::take(&mut spec.secrets);
        spec = input.into_spec(String::new())?;
        spec.secrets = secrets;
        warnings = validate(&state, &id, &spec).await?;
        warnings.extend(check_settings(&state, &mut spec)?);
        record.spec = spec.to_json();
    }
    if let Some(enabled) = enabled {
        record.enabled = enabled;
        record.disabled_reason = (!enabled).then(|| "disabled through the API".to_owned());
    }
    record.updated_at_ms = now_ms();
    state.store.put_subscription(record.clone()).await?;
    state.subscriptions.reload().await?;
    match enabled {
        Some(true) => {
            // A fresh start: the run of failures that may have disabled it is forgotten,
            // and the deliveries parked while it was disabled become due again.
            state
                .store
                .set_subscription_enabled(&id, true, None, now_ms())
                .await?;
            state
                .store
                .unpark(&subscription_park_key(&id), now_ms())
                .await?;
            state.wake.notify_one();
        }
        Some(false) => state
            .ops
            .emit(OpsEvent::SubscriptionDisabled(SubscriptionDisabled {
                subscription_id: id.clone(),
                reason: "operator",
                detail: "disabled through the API".into(),
            })),
        None => {}
    }
    Ok(Json(UpdatedSubscription {
        subscription: view(&record, &spec, None, now_ms()),
        warnings,
    }))
}

/// Deletes a subscription. Its pending deliveries are cancelled (status `cancelled`), and
/// an adapter call running for it is interrupted.
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
    state.store.delete_subscription(&id, now_ms()).await?;
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
        Some(text) => {
            api_duration(&text, "grace").map_err(|e| bad_request("invalid_grace", e.to_string()))?
        }
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
    let secret: Secret = if plain {
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
    record.spec = spec.to_json();
    record.updated_at_ms = now;
    state.store.put_subscription(record.clone()).await?;
    state.subscriptions.reload().await?;
    tracing::info!(subscription = %id, grace = ?grace.0, "signing secret rotated");
    Ok(Json(RotatedSecret {
        subscription: view(&record, &spec, None, now_ms()),
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
    let draft = EventDraft::new(
        "wasmhook.test",
        &json!({
            "subscription_id": id,
            "message": "A test event from wasmhook: if you can read this, the subscription works.",
        }),
    );
    let delivery_id = state.ingest.publish_to(draft, &id).await?;
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
