//! `/v1/event-types`: the declared event type catalog (`[[event_types]]`), and the entries
//! it adds to the OpenAPI `webhooks` block.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::AppState;
use super::openapi::ErrorBody;
use crate::event::catalog::{EventTypeConfig, EventTypes};

/// The declared event types.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventTypeList {
    /// By name.
    pub data: Vec<EventTypeView>,
}

/// One declared event type.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventTypeView {
    /// The type, e.g. `order.paid`.
    pub name: String,
    /// What it means.
    pub description: String,
    /// The JSON Schema of its `data`, if one is declared.
    #[schema(value_type = Option<Object>)]
    pub schema: Option<Value>,
    /// `reject`: events whose `data` breaks the schema get `400 schema_violation`; `warn`:
    /// they are accepted with a warning.
    #[schema(value_type = String, pattern = "^(reject|warn)$")]
    pub mode: crate::event::catalog::SchemaMode,
}

impl From<&EventTypeConfig> for EventTypeView {
    fn from(c: &EventTypeConfig) -> Self {
        Self {
            name: c.name.clone(),
            description: c.description.clone(),
            schema: c.schema.clone(),
            mode: c.mode,
        }
    }
}

/// Lists the event types declared in `[[event_types]]`, with their schemas. Types that
/// are not declared can still be published.
#[utoipa::path(
    get, path = "/event-types", tag = "events", operation_id = "list_event_types",
    responses(
        (status = 200, description = "The declared event types", body = EventTypeList),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
    )
)]
pub async fn list(State(state): State<AppState>) -> Json<EventTypeList> {
    Json(EventTypeList {
        data: state.ingest.event_types().list().map(Into::into).collect(),
    })
}

/// The OpenAPI document with one `webhooks` entry per declared type: the standard envelope
/// with `type` fixed to the name and `data` held to the type's schema (any object without
/// one). The headers and answers are those of the generic `event` entry.
pub fn document_with(types: &EventTypes) -> String {
    let base = super::openapi::document_json();
    if types.list().next().is_none() {
        return base;
    }
    let Ok(mut document) = serde_json::from_str::<Value>(&base) else {
        return base;
    };
    let generic = document["webhooks"]["event"]["post"].clone();
    let Some(webhooks) = document["webhooks"].as_object_mut() else {
        return base;
    };
    for t in types.list() {
        let data = t
            .schema
            .clone()
            .unwrap_or_else(|| json!({"type": "object"}));
        let mut operation = generic.clone();
        operation["summary"] = json!(format!("`{}`", t.name));
        operation["description"] = json!(if t.description.is_empty() {
            format!("The `{}` event, in the standard envelope.", t.name)
        } else {
            t.description.clone()
        });
        operation["requestBody"]["content"]["application/json"]["schema"] = json!({
            "allOf": [
                {"$ref": "#/components/schemas/Envelope"},
                {"type": "object", "properties": {"type": {"const": t.name}, "data": data}}
            ]
        });
        webhooks
            .entry(t.name.clone())
            .or_insert_with(|| json!({ "post": operation }));
    }
    serde_json::to_string_pretty(&document).unwrap_or(base)
}
