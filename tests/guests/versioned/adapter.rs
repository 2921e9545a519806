// The versioned test adapter, included by versioned-1, -2 and -3 with their own `VERSION`.
// It delivers `{"version": N, "event_id": …, "data": …}`; a version listed in the
// `broken_versions` setting (comma-separated) returns an adapter error instead, so a test
// can fix a failing adapter by replacing the file.

/// The generated bindings; lints are silenced here only, for code we do not write.
#[allow(clippy::too_many_arguments)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit/v0.1.0",
        world: "adapter",
    });
}

use bindings::{Action, AdapterError, Context, Event, Guest, Request};

struct Versioned;

impl Guest for Versioned {
    fn transform(event: Event, context: Context) -> Result<Action, AdapterError> {
        let broken = context
            .settings
            .iter()
            .find(|(k, _)| k == "broken_versions")
            .is_some_and(|(_, v)| v.split(',').any(|n| n.trim() == VERSION.to_string()));
        if broken {
            return Err(AdapterError {
                message: format!("version {VERSION} is broken"),
            });
        }
        let data: serde_json::Value =
            serde_json::from_str(&event.data).unwrap_or(serde_json::Value::Null);
        let body = serde_json::json!({"version": VERSION, "event_id": event.id, "data": data});
        Ok(Action::Deliver(Request {
            method: "POST".into(),
            url: None,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        }))
    }
}

bindings::export!(Versioned with_types_in bindings);
