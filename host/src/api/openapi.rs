//! The OpenAPI 3.1 document served at `/openapi.json`.
//!
//! It is generated from the code, so it cannot drift from it: every route is mounted by
//! the same `routes!` call that adds its `#[utoipa::path]` annotation to the document (see
//! `api::router`), and every schema is derived from the Rust type the handler reads or
//! writes. The `webhooks` block documents what receivers get: the standard envelope and the
//! Standard Webhooks headers. `tests/tests/contract.rs` runs schemathesis against the
//! served document and validates real deliveries against the `webhooks` schemas.

use serde::Serialize;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    AllOfBuilder, ContentBuilder, ObjectBuilder, OpenApi, PathItem, PathsBuilder, Ref, RefOr,
    Required, ResponseBuilder, Type,
};
use utoipa::{Modify, OpenApi as _, ToSchema};

/// The error body every `4xx` and `5xx` carries.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable: `invalid_json`, `body_too_large`, `blocked_destination`, …
    pub code: String,
    /// What happened and what to do, for a person.
    pub message: String,
}

/// The body delivered to a subscription without an adapter: the Standard Webhooks
/// envelope. Subscriptions with an adapter receive whatever body the adapter builds, with
/// the same headers.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// The event id: `evt_…`, or the producer's own.
    #[schema(min_length = 1, max_length = 128)]
    pub id: String,
    /// The event type: dot-separated segments of letters, digits, `_` and `-`.
    #[schema(pattern = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")]
    #[serde(rename = "type")]
    pub kind: String,
    /// When the engine accepted the event, RFC 3339 in UTC, to the second.
    #[schema(format = DateTime, pattern = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")]
    pub timestamp: String,
    /// The payload, exactly as published.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// The whole API.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    info(
        title = "wasmhook",
        description = "A webhook delivery engine with WebAssembly adapters. Producers publish events; \
            wasmhook stores each durably, routes it to the matching subscriptions, runs each \
            subscription's adapter, signs the request (Standard Webhooks) and delivers it at least once.\n\n\
            Every `/v1` operation needs `Authorization: Bearer <token>` when the engine has admin \
            tokens configured. Errors are JSON: `{\"code\": \"<stable>\", \"message\": \"<for a person>\"}`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    modifiers(&Security, &Webhooks),
    security(("bearer" = [])),
    tags(
        (name = "events", description = "Publishing events"),
        (name = "subscriptions", description = "Who gets which events, how, and signed with what"),
        (name = "deliveries", description = "One delivery per event and subscription, with its attempts"),
        (name = "dead-letters", description = "Deliveries that gave up, and replaying them"),
        (name = "operations", description = "Endpoints, plugins, health and metrics"),
    ),
    components(schemas(
        ErrorBody,
        Envelope,
        crate::ops::SubscriptionDisabled,
        crate::ops::CircuitOpened,
        crate::ops::EndpointRecovered,
        crate::ops::DeadLettered,
        crate::ops::PluginLoaded,
        crate::ops::PluginRejected,
    ))
)]
pub struct ApiDoc;

/// The document's skeleton, before the routes add their paths.
pub fn base() -> OpenApi {
    ApiDoc::openapi()
}

/// The whole document as JSON, built once.
pub fn document_json() -> String {
    static JSON: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        super::document()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"cannot render the document: {e}\"}}"))
    });
    JSON.clone()
}

/// Writes each operation's scope into the document: its `security` requirement names the
/// scope (`bearer: ["publish"]`, `["read"]` or `["admin"]`), and each guarded operation gets
/// its `403 insufficient_scope` answer. The scope comes from `auth::required_scope`, the
/// function the auth layer enforces, so the two cannot disagree.
pub fn add_scopes(doc: &mut OpenApi) {
    use utoipa::openapi::security::SecurityRequirement;
    for (path, item) in doc.paths.paths.iter_mut() {
        let operations = [
            (http::Method::GET, &mut item.get),
            (http::Method::POST, &mut item.post),
            (http::Method::PUT, &mut item.put),
            (http::Method::PATCH, &mut item.patch),
            (http::Method::DELETE, &mut item.delete),
            (http::Method::HEAD, &mut item.head),
        ];
        for (method, operation) in operations {
            let Some(operation) = operation else { continue };
            let Some(scope) = super::auth::required_scope(&method, path, true) else {
                continue;
            };
            let requirement = SecurityRequirement::new("bearer", [scope.as_str()]);
            operation.security = Some(if path.starts_with("/v1/") {
                vec![requirement]
            } else {
                // `/metrics`: open unless `[server] metrics_require_token`.
                vec![SecurityRequirement::default(), requirement]
            });
            operation.responses.responses.insert(
                "403".into(),
                ResponseBuilder::new()
                    .description(if scope.as_str() == "admin" {
                        "`insufficient_scope`: the token is valid but its scope is not `admin`"
                            .to_owned()
                    } else {
                        format!(
                            "`insufficient_scope`: the token is valid but its scope is not `{}` or `admin`",
                            scope.as_str()
                        )
                    })
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorBody")))
                            .build(),
                    )
                    .build()
                    .into(),
            );
        }
    }
}

/// Adds the answers that the checks in front of every handler give (`browser`,
/// `read_body`), where an operation does not list them itself: `403` to every operation,
/// `408` and `415` to those with a request body.
pub fn add_guard_answers(doc: &mut OpenApi) {
    let error = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build(),
        )
    };
    for item in doc.paths.paths.values_mut() {
        for (operation, changes_state) in [
            (&mut item.get, false),
            (&mut item.put, true),
            (&mut item.post, true),
            (&mut item.delete, true),
            (&mut item.patch, true),
        ] {
            let Some(operation) = operation else {
                continue;
            };
            let forbidden = if changes_state {
                "Sent by a web page of another origin (`cross_origin`), or, with no token configured, \
                 addressed to a name other than a loopback one (`host_not_allowed`)"
            } else {
                "With no token configured, addressed to a name other than a loopback one (`host_not_allowed`)"
            };
            let responses = &mut operation.responses.responses;
            // `add_scopes` may have put a `403 insufficient_scope` there already.
            match responses.get_mut("403") {
                Some(RefOr::T(scope)) => {
                    scope.description = format!("{}; or {}", scope.description, forbidden);
                }
                Some(RefOr::Ref(_)) => {}
                None => {
                    responses.insert("403".into(), error(forbidden));
                }
            }
            if operation.request_body.is_some() {
                responses.entry("408".into()).or_insert_with(|| {
                    error("The body did not arrive within `[server] body_read_timeout` (`body_timeout`)")
                });
                responses.entry("415".into()).or_insert_with(|| {
                    error("A body not sent as `Content-Type: application/json` (`unsupported_media_type`)")
                });
            }
        }
    }
}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A configured token ([[server.tokens]], or the admin tokens api_token, api_tokens and \
                         WASMHOOK_API_TOKEN). Each operation's requirement names the scope it needs: `publish` \
                         (POST /v1/events and /v1/events/batch), `read` (every GET) or `admin`; an `admin` token \
                         holds every scope. A missing or wrong token gets 401; a valid one without the scope gets \
                         403 `insufficient_scope`.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The `webhooks` block: the request every receiver gets.
struct Webhooks;

fn header(
    name: &str,
    description: &str,
    pattern: &str,
    example: &str,
) -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Header)
        .required(Required::True)
        .description(Some(description))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(pattern))
                .examples([serde_json::json!(example)]),
        ))
        .build()
}

impl Modify for Webhooks {
    fn modify(&self, openapi: &mut OpenApi) {
        let headers = [
            header(
                "webhook-id",
                "The delivery's message id; the same on every attempt and replay, so receivers can drop duplicates.",
                WEBHOOK_ID_PATTERN,
                "msg_0193a1c2d3e4f5061728394a5b6c7d8e",
            ),
            header(
                "webhook-timestamp",
                "When this attempt was signed, in Unix seconds. Refuse timestamps far from your clock (5 minutes is usual).",
                WEBHOOK_TIMESTAMP_PATTERN,
                "1781352000",
            ),
            header(
                "webhook-signature",
                "Space-separated `v1,<base64 HMAC-SHA256 of \"{webhook-id}.{webhook-timestamp}.{body}\">`, keyed with the \
                 base64-decoded part of the subscription's `whsec_` secret. During a secret rotation there is one per \
                 active secret; accept the request if any matches.",
                WEBHOOK_SIGNATURE_PATTERN,
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
            header(
                "user-agent",
                "`wasmhook/<version>`.",
                r"^wasmhook/\S+$",
                concat!("wasmhook/", env!("CARGO_PKG_VERSION")),
            ),
        ];
        let operation = |summary: &str, description: &str, body: ContentBuilder| {
            let mut op = OperationBuilder::new()
                .summary(Some(summary))
                .description(Some(description))
                .request_body(Some(
                    RequestBodyBuilder::new()
                        .required(Some(Required::True))
                        .content("application/json", body.build())
                        .build(),
                ))
                .response(
                    "2XX",
                    ResponseBuilder::new().description(
                        "Accepted. Any 2xx ends the delivery; 408, 425, 429, 5xx, 3xx and network errors are retried \
                         (honouring Retry-After); any other 4xx makes it a dead letter, and 410 also disables the subscription.",
                    ),
                );
            for h in &headers {
                op = op.parameter(h.clone());
            }
            op.build()
        };
        let envelope = operation(
            "An event, in the standard envelope",
            "Sent to subscriptions without an adapter.",
            ContentBuilder::new().schema(Some(Ref::from_schema_name("Envelope"))),
        );
        let adapted = operation(
            "An event, shaped by the subscription's adapter",
            "Sent to subscriptions with an adapter: the adapter chooses the body, content type, extra headers, method \
             (POST, PUT or PATCH) and may override the URL; the engine adds and signs the headers above, which an \
             adapter can neither set nor remove.",
            ContentBuilder::new().schema(Some(ObjectBuilder::new())),
        );
        let mut webhooks = PathsBuilder::new()
            .path("event", PathItem::new(HttpMethod::Post, envelope))
            .path("adapted-event", PathItem::new(HttpMethod::Post, adapted));
        // The engine's own events: the envelope with the type fixed and `data` typed.
        for (kind, schema) in crate::ops::TYPES {
            let body = AllOfBuilder::new()
                .item(Ref::from_schema_name("Envelope"))
                .item(
                    ObjectBuilder::new()
                        .property(
                            "type",
                            ObjectBuilder::new()
                                .schema_type(Type::String)
                                .enum_values(Some([kind])),
                        )
                        .property("data", Ref::from_schema_name(schema))
                        .required("type")
                        .required("data"),
                );
            let op = operation(
                kind,
                "An operational event the engine publishes about itself, to subscriptions whose patterns \
                 match it (`wasmhook.*`), in the standard envelope or through their adapter.",
                ContentBuilder::new().schema(Some(body)),
            );
            webhooks = webhooks.path(kind, PathItem::new(HttpMethod::Post, op));
        }
        openapi.webhooks = Some(webhooks.build());
    }
}

/// `webhook-id`: `msg_` and 32 hex digits.
pub const WEBHOOK_ID_PATTERN: &str = r"^msg_[0-9a-f]{32}$";
/// `webhook-timestamp`: Unix seconds.
pub const WEBHOOK_TIMESTAMP_PATTERN: &str = r"^[0-9]{10,}$";
/// `webhook-signature`: one or more space-separated `v1,<base64>`.
pub const WEBHOOK_SIGNATURE_PATTERN: &str = r"^v1,[A-Za-z0-9+/]{43}=( v1,[A-Za-z0-9+/]{43}=)*$";
