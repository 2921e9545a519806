//! Helpers for rendering a payload into a receiver's format: scalar fields as text, the
//! first non-empty of several fields, truncation by characters, and event-type patterns.

use serde_json::Value;

/// A JSON scalar rendered as short human text; `None` for objects, arrays and null.
pub fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// The first of `keys` whose value in `data` is a non-empty scalar, as text.
pub fn first_text(data: &Value, keys: &[&str]) -> Option<String> {
    keys.iter()
        .filter_map(|k| data.get(*k).and_then(scalar_text))
        .find(|s| !s.trim().is_empty())
}

/// `text` cut to at most `max` characters, ending in `…` when it was cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Whether an event type matches a subscription-style pattern: `*` alone matches anything,
/// a trailing `>` or `*` segment matches one or more segments (NATS's `>`), and a `*`
/// segment elsewhere matches exactly one. This is the same rule the engine uses to route
/// events.
pub fn type_matches(pattern: &str, event_type: &str) -> bool {
    let mut pat = pattern.split('.').peekable();
    let mut ty = event_type.split('.');
    while let Some(p) = pat.next() {
        let last = pat.peek().is_none();
        match (p, ty.next()) {
            ("*" | ">", Some(_)) if last => return true,
            ("*", Some(_)) => {}
            (p, Some(t)) if p == t => {}
            _ => return false,
        }
    }
    ty.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn first_text_skips_non_scalars_and_empty_strings() {
        let data = json!({"summary": "", "title": {"x": 1}, "message": "disk full", "n": 3});
        assert_eq!(
            first_text(&data, &["summary", "title", "message"]),
            Some("disk full".into())
        );
        assert_eq!(first_text(&data, &["n"]), Some("3".into()));
        assert_eq!(first_text(&data, &["nope"]), None);
    }

    #[test]
    fn truncate_counts_characters_not_bytes() {
        assert_eq!(truncate("héllo", 5), "héllo");
        assert_eq!(truncate("héllo wörld", 5), "héll…");
    }

    #[test]
    fn type_patterns() {
        assert!(type_matches("*", "host.enrolled"));
        assert!(type_matches("host.*", "host.enrolled"));
        assert!(type_matches("host.*", "host.disk.full"));
        assert!(!type_matches("host.*", "host"));
        assert!(type_matches("host.>", "host.disk.full"));
        assert!(!type_matches("host.>", "host"));
        assert!(type_matches(">", "host"));
        assert!(type_matches("host.*.failed", "host.disk.failed"));
        assert!(!type_matches("host.*.failed", "host.disk.ok"));
        assert!(type_matches("cert.expiring", "cert.expiring"));
        assert!(!type_matches("cert.expiring", "cert.expiring.soon"));
        assert!(!type_matches("cert.expiring", "cert"));
    }
}
