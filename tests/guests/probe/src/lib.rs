//! A test adapter steered by its settings:
//! - `mode`: `echo` (default) delivers `{"event": …, "context": …}`, exactly what it was
//!   given; `skip` skips; `error` returns an adapter error.
//! - `method`, `url`: override the request's method and URL.
//! - `header_name` + `header_value`: add one header.
//! - `log`: write this line through the log import.
//!
//! The echo body also carries `instance_calls`: how many calls this instance has served.

/// The generated bindings; lints are silenced here only, for code we do not write.
#[allow(clippy::too_many_arguments)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit/v0.1.0",
        world: "adapter",
    });
}

use bindings::{Action, AdapterError, Context, Event, Guest, Request};

use bindings::wasmhook::adapter::log::{Level, log};
use serde_json::json;

struct Probe;

/// Calls this instance has served; more than 1 only when the engine reuses instances.
static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Guest for Probe {
    fn transform(event: Event, context: Context) -> Result<Action, AdapterError> {
        let calls = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let setting = |key: &str| {
            context
                .settings
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        if let Some(line) = setting("log") {
            log(Level::Info, &line);
        }
        match setting("mode").as_deref().unwrap_or("echo") {
            "skip" => return Ok(Action::Skip(format!("probe skipped {}", event.type_))),
            "error" => {
                return Err(AdapterError {
                    message: setting("message").unwrap_or_else(|| "probe was told to fail".into()),
                });
            }
            _ => {}
        }
        let data: serde_json::Value =
            serde_json::from_str(&event.data).unwrap_or(serde_json::Value::Null);
        let body = json!({
            "event": {"id": event.id, "type": event.type_, "timestamp": event.timestamp, "data": data},
            "context": {"subscription_id": context.subscription_id, "url": context.url, "settings": context.settings},
            "instance_calls": calls,
        });
        let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
        if let (Some(name), Some(value)) = (setting("header_name"), setting("header_value")) {
            headers.push((name, value));
        }
        Ok(Action::Deliver(Request {
            method: setting("method").unwrap_or_else(|| "POST".into()),
            url: setting("url"),
            headers,
            body: body.to_string().into_bytes(),
        }))
    }
}

bindings::export!(Probe with_types_in bindings);
