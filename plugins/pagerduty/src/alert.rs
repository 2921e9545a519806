//! Builds the Events API v2 body. Pure: no bindings, no I/O.

use serde_json::{Value, json};
use wasmhook_adapter::Event;
use wasmhook_adapter::text::{first_text, scalar_text, truncate, type_matches};

use crate::PagerDutySettings;

/// What the adapter decided for one event.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Send this `enqueue` body.
    Send(Value),
    /// Send nothing, for this reason.
    Skip(String),
}

/// PagerDuty rejects summaries longer than this.
const MAX_SUMMARY: usize = 1024;

/// The Events v2 body for `event`, or why there is none.
pub fn render(event: &Event, settings: &PagerDutySettings) -> Outcome {
    let routing_key = &settings.routing_key;
    let matches = |patterns: &[String]| patterns.iter().any(|p| type_matches(p, &event.kind));
    if matches(&settings.skip_on) {
        return Outcome::Skip(format!("`{}` matches skip_on", event.kind));
    }
    let action = if matches(&settings.resolve_on) {
        "resolve"
    } else if matches(&settings.acknowledge_on) {
        "acknowledge"
    } else {
        "trigger"
    };
    let dedup_key = dedup_key(event, settings);
    if action != "trigger" {
        return Outcome::Send(json!({
            "routing_key": routing_key,
            "event_action": action,
            "dedup_key": dedup_key,
        }));
    }

    let summary = first_text(&event.data, &["summary", "message", "title", "description"])
        .unwrap_or_else(|| format!("{} ({})", event.kind, event.id));
    let source = settings
        .source
        .clone()
        .or_else(|| first_text(&event.data, &["source", "host", "hostname"]))
        .unwrap_or_else(|| "wasmhook".into());
    let severity = event
        .data
        .get(&settings.severity_field)
        .and_then(scalar_text)
        .and_then(|s| severity(&s))
        .or_else(|| severity(&settings.default_severity))
        .unwrap_or("warning");
    let mut payload = json!({
        "summary": truncate(&summary, MAX_SUMMARY),
        "source": source,
        "severity": severity,
        "timestamp": event.timestamp,
        "class": event.kind,
    });
    for key in ["component", "group"] {
        if let Some(value) = first_text(&event.data, &[key]) {
            payload[key] = Value::String(value);
        }
    }
    if event.data.is_object() {
        payload["custom_details"] = event.data.clone();
    }
    Outcome::Send(json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": payload,
    }))
}

/// The incident identity: the `dedup_fields` values joined with the event type's first
/// segment (so `host.down` and `host.recovered` share it), or a payload `dedup_key` /
/// `incident_id`, or else the event id.
fn dedup_key(event: &Event, settings: &PagerDutySettings) -> String {
    let fields = &settings.dedup_fields;
    if !fields.is_empty() {
        let values: Vec<String> = fields
            .iter()
            .map(|f| event.data.get(f).and_then(scalar_text).unwrap_or_default())
            .collect();
        let family = event.kind.split('.').next().unwrap_or(&event.kind);
        return truncate(&format!("{family}:{}", values.join(":")), 255);
    }
    first_text(&event.data, &["dedup_key", "incident_id"])
        .map(|k| truncate(&k, 255))
        .unwrap_or_else(|| event.id.clone())
}

/// Maps common severity words onto PagerDuty's four levels.
fn severity(word: &str) -> Option<&'static str> {
    Some(match word.trim().to_ascii_lowercase().as_str() {
        "critical" | "crit" | "fatal" | "emergency" | "alert" | "p1" => "critical",
        "error" | "err" | "high" | "major" | "p2" => "error",
        "warning" | "warn" | "medium" | "minor" | "p3" => "warning",
        "info" | "low" | "notice" | "debug" | "p4" | "p5" => "info",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmhook_adapter::Settings as _;

    fn event(kind: &str, data: Value) -> Event {
        Event {
            id: "evt_9".into(),
            ..Event::new(kind, data)
        }
    }

    /// Parsed as the engine passes them: the manifest's defaults filled in.
    fn settings(items: &[(&str, &str)]) -> PagerDutySettings {
        let mut pairs: Vec<(String, String)> = items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for s in PagerDutySettings::schema() {
            if let Some(default) = s.default
                && !pairs.iter().any(|(k, _)| *k == s.name)
            {
                pairs.push((s.name, default));
            }
        }
        PagerDutySettings::parse(&pairs).expect("valid settings")
    }

    fn body(outcome: Outcome) -> Value {
        match outcome {
            Outcome::Send(body) => body,
            other => panic!("expected a body, got {other:?}"),
        }
    }

    #[test]
    fn trigger_carries_summary_source_severity_and_details() {
        let ev = event(
            "host.down",
            json!({"summary": "web-1 is down", "host": "web-1", "severity": "CRIT", "group": "edge"}),
        );
        let b = body(render(&ev, &settings(&[("routing_key", "R1")])));
        assert_eq!(b["routing_key"], "R1");
        assert_eq!(b["event_action"], "trigger");
        assert_eq!(b["dedup_key"], "evt_9");
        assert_eq!(b["payload"]["summary"], "web-1 is down");
        assert_eq!(b["payload"]["source"], "web-1");
        assert_eq!(b["payload"]["severity"], "critical");
        assert_eq!(b["payload"]["timestamp"], "2026-06-13T12:00:00Z");
        assert_eq!(b["payload"]["class"], "host.down");
        assert_eq!(b["payload"]["group"], "edge");
        assert_eq!(b["payload"]["custom_details"]["host"], "web-1");
    }

    #[test]
    fn resolve_shares_the_dedup_key_of_its_trigger() {
        let raw = settings(&[
            ("routing_key", "R1"),
            ("resolve_on", "host.recovered, *.resolved"),
            ("dedup_fields", "host"),
        ]);
        let down = body(render(&event("host.down", json!({"host": "web-1"})), &raw));
        let up = body(render(
            &event("host.recovered", json!({"host": "web-1"})),
            &raw,
        ));
        assert_eq!(up["event_action"], "resolve");
        assert_eq!(down["dedup_key"], "host:web-1");
        assert_eq!(up["dedup_key"], down["dedup_key"]);
        assert!(up.get("payload").is_none());
    }

    #[test]
    fn acknowledge_skip_and_severity_defaults() {
        let raw = settings(&[
            ("routing_key", "R1"),
            ("acknowledge_on", "host.ack"),
            ("skip_on", "host.heartbeat"),
            ("default_severity", "low"),
        ]);
        let ack = body(render(&event("host.ack", json!({})), &raw));
        assert_eq!(ack["event_action"], "acknowledge");
        let skip = render(&event("host.heartbeat", json!({})), &raw);
        assert!(matches!(skip, Outcome::Skip(r) if r.contains("skip_on")));
        let t = body(render(
            &event("host.down", json!({"severity": "bogus"})),
            &raw,
        ));
        assert_eq!(t["payload"]["severity"], "info");
        assert_eq!(t["payload"]["source"], "wasmhook");
        assert_eq!(t["payload"]["summary"], "host.down (evt_9)");
    }

    #[test]
    fn the_manifest_requires_a_secret_routing_key() {
        let schema = PagerDutySettings::schema();
        let key = schema.iter().find(|s| s.name == "routing_key").unwrap();
        assert!(key.required && key.secret);
        let err = PagerDutySettings::parse(&[]).unwrap_err();
        assert!(err.message().contains("routing_key"), "{err}");
    }

    #[test]
    fn payload_dedup_key_wins_over_event_id() {
        let raw = settings(&[("routing_key", "R1")]);
        let b = body(render(&event("x.y", json!({"incident_id": 42})), &raw));
        assert_eq!(b["dedup_key"], "42");
    }
}
