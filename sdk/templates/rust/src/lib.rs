//! {{name}}: a wasmhook adapter. It posts each event to a chat channel as
//! `{"channel": …, "text": "<type>: <summary>", "fields": {…}}`.
//!
//! Build: `wasmhook plugin build` (or `cargo build --release --target wasm32-wasip2`).
//! Try: `wasmhook plugin run {{name}}.wasm --event sample-event.json --set channel=#ops`.
//! Test: `cargo test`.

use wasmhook_adapter::serde_json::{Map, Value, json};
use wasmhook_adapter::text::{first_text, scalar_text, truncate};
use wasmhook_adapter::{Action, Adapter, Context, Error, Event, Request, log};

wasmhook_adapter::settings! {
    /// What a subscription sets (`settings = { channel = "#ops" }`). The engine refuses a
    /// subscription whose settings do not fit, before the first delivery.
    pub struct Settings {
        /// The channel to post to, such as `#ops`.
        channel: String,
        /// The line before the summary; the event type when unset.
        title: Option<String>,
        /// How many payload fields to show.
        max_fields: usize = 10,
    }
}

struct ChatAdapter;

impl Adapter for ChatAdapter {
    type Settings = Settings;

    fn transform(event: Event, settings: Settings, _context: Context) -> Result<Action, Error> {
        let summary = first_text(&event.data, &["summary", "message", "title"])
            .unwrap_or_else(|| format!("event {}", event.id));
        let title = settings.title.unwrap_or_else(|| event.kind.clone());
        let fields: Map<String, Value> = event
            .data
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.as_str() != "summary")
            .filter_map(|(k, v)| Some((k.clone(), Value::String(scalar_text(v)?))))
            .take(settings.max_fields)
            .collect();
        log::debug(&format!("{} fields for {}", fields.len(), event.id));
        Ok(Action::deliver(Request::json(&json!({
            "channel": settings.channel,
            "text": truncate(&format!("{title}: {summary}"), 300),
            "fields": fields,
        }))))
    }
}

wasmhook_adapter::export_adapter!(ChatAdapter);

#[cfg(test)]
mod tests {
    use super::*;
    use wasmhook_adapter::testing;

    #[test]
    fn posts_the_summary_and_the_fields() {
        let event = Event::new(
            "host.down",
            json!({"summary": "web-1 stopped answering", "host": "web-1", "tags": ["x"]}),
        );
        let action = testing::run::<ChatAdapter>(&event, &[("channel", "#ops")]).unwrap();
        let Action::Deliver(request) = action else {
            panic!("expected a request, got {action:?}");
        };
        assert_eq!(request.header_value("content-type"), Some("application/json"));
        let body: Value = wasmhook_adapter::serde_json::from_slice(&request.body).unwrap();
        assert_eq!(
            body,
            json!({"channel": "#ops", "text": "host.down: web-1 stopped answering", "fields": {"host": "web-1"}})
        );
    }
}
