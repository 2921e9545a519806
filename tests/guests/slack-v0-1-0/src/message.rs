//! Builds the Block Kit message. Pure: no bindings, no I/O.

use crate::kit::{Event, Settings, first_text, scalar_text, truncate};
use serde_json::{Map, Value, json};

/// Slack allows at most ten fields in one section block.
const MAX_FIELDS: usize = 10;
/// Payload fields tried, in order, for the summary line.
const SUMMARY_FIELDS: [&str; 4] = ["summary", "message", "title", "description"];

/// The message body for `event`, shaped by the subscription's `settings`.
pub fn render(event: &Event<'_>, settings: Settings<'_>) -> Value {
    let summary_field = settings.get("summary_field");
    let summary = match summary_field {
        Some(field) => first_text(&event.data, &[field]),
        None => first_text(&event.data, &SUMMARY_FIELDS),
    }
    .unwrap_or_else(|| format!("{} ({})", event.kind, event.id));
    let title = settings.get("title").unwrap_or(event.kind);

    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": truncate(title, 150)}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&escape(&summary), 3000)}}),
    ];
    let fields = key_fields(&event.data, settings, summary_field);
    if !fields.is_empty() {
        blocks.push(json!({"type": "section", "fields": fields}));
    }
    blocks.push(json!({"type": "context", "elements": [{
        "type": "mrkdwn",
        "text": format!("`{}` · {} · {}", escape(event.kind), escape(event.id), escape(event.timestamp)),
    }]}));

    let mut message = Map::new();
    message.insert(
        "text".into(),
        Value::String(format!("{}: {}", event.kind, summary)),
    );
    message.insert("blocks".into(), Value::Array(blocks));
    for key in ["channel", "username", "icon_emoji"] {
        if let Some(value) = settings.get(key) {
            message.insert(key.into(), Value::String(value.into()));
        }
    }
    Value::Object(message)
}

/// The `*name*\nvalue` field cells: the `fields` setting's picks, or the first scalar fields.
fn key_fields(data: &Value, settings: Settings<'_>, summary_field: Option<&str>) -> Vec<Value> {
    let chosen = settings.list("fields");
    let Some(object) = data.as_object() else {
        return Vec::new();
    };
    let cells: Box<dyn Iterator<Item = (&str, String)>> = if chosen.is_empty() {
        let skip = |k: &str| summary_field == Some(k) || SUMMARY_FIELDS.contains(&k);
        Box::new(
            object
                .iter()
                .filter(move |(k, _)| !skip(k))
                .filter_map(|(k, v)| Some((k.as_str(), scalar_text(v)?))),
        )
    } else {
        Box::new(chosen.into_iter().filter_map(|k| {
            let value = object.get(k)?;
            Some((k, scalar_text(value).unwrap_or_else(|| value.to_string())))
        }))
    };
    cells
        .take(MAX_FIELDS)
        .map(|(k, v)| {
            json!({"type": "mrkdwn", "text": truncate(&format!("*{}*\n{}", escape(k), escape(&v)), 2000)})
        })
        .collect()
}

/// Slack's mrkdwn needs `&`, `<` and `>` escaped.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(data: Value) -> Event<'static> {
        Event {
            id: "evt_1",
            kind: "host.enrolled",
            timestamp: "2026-06-13T12:00:00Z",
            data,
        }
    }

    fn settings(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn message_has_header_summary_fields_and_context() {
        let ev = event(
            json!({"summary": "web-1 joined", "host": "web-1", "ip": "10.0.0.7", "tags": ["a"]}),
        );
        let msg = render(&ev, Settings(&settings(&[("channel", "#ops")])));
        assert_eq!(msg["channel"], "#ops");
        assert_eq!(msg["text"], "host.enrolled: web-1 joined");
        let blocks = msg["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["text"]["text"], "host.enrolled");
        assert_eq!(blocks[1]["text"]["text"], "web-1 joined");
        let fields: Vec<&str> = blocks[2]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["text"].as_str().unwrap())
            .collect();
        assert_eq!(fields, ["*host*\nweb-1", "*ip*\n10.0.0.7"]);
        let context = blocks[3]["elements"][0]["text"].as_str().unwrap();
        assert!(context.contains("evt_1") && context.contains("`host.enrolled`"));
    }

    #[test]
    fn chosen_fields_and_title_override_defaults() {
        let ev = event(json!({"host": "web-1", "ip": "10.0.0.7", "tags": ["a", "b"]}));
        let raw = settings(&[("fields", "tags,host,missing"), ("title", "New host")]);
        let msg = render(&ev, Settings(&raw));
        let blocks = msg["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["text"]["text"], "New host");
        assert_eq!(blocks[1]["text"]["text"], "host.enrolled (evt_1)");
        assert_eq!(blocks[2]["fields"][0]["text"], "*tags*\n[\"a\",\"b\"]");
        assert_eq!(blocks[2]["fields"][1]["text"], "*host*\nweb-1");
        assert!(msg.get("channel").is_none());
    }

    #[test]
    fn at_most_ten_fields_and_text_is_escaped() {
        let mut data = Map::new();
        for i in 0..15 {
            data.insert(format!("k{i:02}"), json!(i));
        }
        data.insert("message".into(), json!("a <b> & c"));
        let msg = render(&event(Value::Object(data)), Settings(&[]));
        assert_eq!(msg["blocks"][1]["text"]["text"], "a &lt;b&gt; &amp; c");
        assert_eq!(msg["blocks"][2]["fields"].as_array().unwrap().len(), 10);
    }

    #[test]
    fn fields_keep_the_payload_order() {
        let ev = event(serde_json::from_str(r#"{"zeta": 1, "alpha": 2}"#).unwrap());
        let msg = render(&ev, Settings(&[]));
        assert_eq!(msg["blocks"][2]["fields"][0]["text"], "*zeta*\n1");
        assert_eq!(msg["blocks"][2]["fields"][1]["text"], "*alpha*\n2");
    }

    #[test]
    fn payload_that_is_not_an_object_still_renders() {
        let msg = render(&event(json!([1, 2])), Settings(&[]));
        assert_eq!(msg["blocks"].as_array().unwrap().len(), 3);
    }
}
