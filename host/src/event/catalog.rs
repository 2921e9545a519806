//! The event type catalog (`[[event_types]]`): each declared type has a description and,
//! optionally, a JSON Schema for its `data`. Ingest checks events of a declared type
//! against its schema (refusing them, or only warning, as the type's `mode` says), `GET
//! /v1/event-types` lists the catalog, and the OpenAPI `webhooks` block documents every
//! declared type with its schema. Types that are not declared are accepted as before.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::event::{Event, EventError};

/// What happens to an event whose `data` breaks its type's schema.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SchemaMode {
    /// Refused with `400 schema_violation`, naming the failing field.
    #[default]
    Reject,
    /// Accepted, with the violation in the answer's `warnings` and in the log.
    Warn,
}

/// One `[[event_types]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EventTypeConfig {
    /// The type, e.g. `order.paid`.
    pub name: String,
    /// What it means, for receivers reading the documentation.
    #[serde(default)]
    pub description: String,
    /// A JSON Schema (draft 2020-12 unless it says otherwise) for `data`, written as a TOML
    /// table.
    #[serde(default)]
    pub schema: Option<serde_json::Value>,
    /// `reject` (default) or `warn`.
    #[serde(default)]
    pub mode: SchemaMode,
}

/// A declared type with its compiled schema.
#[derive(Debug)]
struct Declared {
    config: EventTypeConfig,
    validator: Option<jsonschema::Validator>,
}

/// The catalog, built once from the config. Cheap to consult on every event.
#[derive(Debug, Default)]
pub struct EventTypes {
    types: BTreeMap<String, Declared>,
}

/// The first way `data` breaks a schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Where, as `data.items[0].sku` (`data` for the object itself).
    pub field: String,
    /// What the schema wants.
    pub reason: String,
}

impl EventTypes {
    /// Compiles every schema; an error names the type and what is wrong.
    pub fn new(configs: &[EventTypeConfig]) -> Result<Self, String> {
        let mut types = BTreeMap::new();
        for config in configs {
            crate::event::validate_event_type(&config.name)
                .map_err(|e| format!("[[event_types]] name `{}`: {e}", config.name))?;
            if config.name.starts_with(crate::event::ENGINE_TYPE_PREFIX) {
                return Err(format!(
                    "[[event_types]] `{}`: `wasmhook.` types are the engine's own and documented already",
                    config.name
                ));
            }
            let validator = config
                .schema
                .as_ref()
                .map(|schema| {
                    jsonschema::validator_for(schema).map_err(|e| {
                        format!(
                            "[[event_types]] `{}`: the schema is not a valid JSON Schema: {e}",
                            config.name
                        )
                    })
                })
                .transpose()?;
            let declared = Declared {
                config: config.clone(),
                validator,
            };
            if types.insert(config.name.clone(), declared).is_some() {
                return Err(format!(
                    "[[event_types]] `{}` is declared twice; names must be unique",
                    config.name
                ));
            }
        }
        Ok(Self { types })
    }

    /// Every declared type, by name.
    pub fn list(&self) -> impl Iterator<Item = &EventTypeConfig> {
        self.types.values().map(|d| &d.config)
    }

    /// Whether `data` fits the schema of `kind`; `Ok` for types without one.
    pub fn violation(&self, kind: &str, data: &str) -> Option<Violation> {
        let validator = self.types.get(kind)?.validator.as_ref()?;
        let instance: serde_json::Value = match serde_json::from_str(data) {
            Ok(v) => v,
            // Ingest has checked the JSON already; nothing to say here.
            Err(_) => return None,
        };
        let error = validator.iter_errors(&instance).next()?;
        Some(Violation {
            field: field_name(error.instance_path().as_str()),
            reason: error.to_string(),
        })
    }

    /// Holds `event` to its type's schema: `Err` when it breaks it in `reject` mode, a
    /// warning when in `warn` mode.
    pub fn check(&self, event: &Event) -> Result<Option<String>, EventError> {
        let Some(violation) = self.violation(&event.kind, &event.data) else {
            return Ok(None);
        };
        let error = EventError::SchemaViolation {
            kind: event.kind.clone(),
            field: violation.field,
            reason: violation.reason,
        };
        match self.types.get(&event.kind).map(|d| d.config.mode) {
            Some(SchemaMode::Warn) => Ok(Some(format!("event `{}`: {error}", event.id))),
            _ => Err(error),
        }
    }
}

/// `/items/0/sku` → `data.items[0].sku`.
fn field_name(pointer: &str) -> String {
    let mut out = "data".to_owned();
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{segment}]"));
        } else {
            out.push('.');
            out.push_str(&segment);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn catalog(mode: &str) -> EventTypes {
        let configs: Vec<EventTypeConfig> = serde_json::from_value(json!([
            {"name": "order.paid", "description": "An order was paid.", "mode": mode, "schema": {
                "type": "object", "required": ["order", "amount"],
                "properties": {
                    "order": {"type": "string"},
                    "amount": {"type": "integer", "minimum": 0},
                    "items": {"type": "array", "items": {"type": "object", "properties": {"sku": {"type": "string"}}}}
                }
            }},
            {"name": "order.note", "description": "No schema."}
        ]))
        .unwrap();
        EventTypes::new(&configs).unwrap()
    }

    fn event(kind: &str, data: serde_json::Value) -> Event {
        Event {
            id: "evt_1".into(),
            kind: kind.into(),
            created_at_ms: 0,
            data: data.to_string(),
        }
    }

    #[test]
    fn valid_data_passes_and_undeclared_or_schemaless_types_are_not_checked() {
        let c = catalog("reject");
        assert_eq!(
            c.check(&event("order.paid", json!({"order": "A1", "amount": 5}))),
            Ok(None)
        );
        assert_eq!(c.check(&event("order.note", json!({"x": 1}))), Ok(None));
        assert_eq!(c.check(&event("other", json!({"x": 1}))), Ok(None));
    }

    #[test]
    fn a_violation_names_the_field() {
        let c = catalog("reject");
        let err = c
            .check(&event("order.paid", json!({"order": "A1", "amount": "5"})))
            .unwrap_err();
        assert_eq!(err.code(), "schema_violation");
        let EventError::SchemaViolation { field, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(field, "data.amount");
        assert!(err.to_string().contains("`data.amount`"), "{err}");
        let nested = c.violation(
            "order.paid",
            &json!({"order": "A1", "amount": 1, "items": [{"sku": 3}]}).to_string(),
        );
        assert_eq!(nested.unwrap().field, "data.items[0].sku");
        let missing = c
            .violation("order.paid", &json!({"order": "A1"}).to_string())
            .unwrap();
        assert_eq!(missing.field, "data");
        assert!(missing.reason.contains("amount"), "{}", missing.reason);
    }

    #[test]
    fn warn_mode_accepts_with_a_warning() {
        let c = catalog("warn");
        let warning = c
            .check(&event("order.paid", json!({"order": 1, "amount": 1})))
            .unwrap()
            .unwrap();
        assert!(warning.contains("data.order"), "{warning}");
    }

    #[test]
    fn bad_declarations_are_refused_by_name() {
        let bad_schema: Vec<EventTypeConfig> =
            serde_json::from_value(json!([{"name": "a.b", "schema": {"type": 5}}])).unwrap();
        assert!(EventTypes::new(&bad_schema).unwrap_err().contains("`a.b`"));
        let twice: Vec<EventTypeConfig> =
            serde_json::from_value(json!([{"name": "a.b"}, {"name": "a.b"}])).unwrap();
        assert!(EventTypes::new(&twice).unwrap_err().contains("twice"));
        let bad_name: Vec<EventTypeConfig> =
            serde_json::from_value(json!([{"name": "a b"}])).unwrap();
        assert!(EventTypes::new(&bad_name).is_err());
    }
}
