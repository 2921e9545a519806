//! Pure helpers shared by the bundled adapters: the 0.1.0-era `kit` crate, kept verbatim.
//! Nothing here touches the WIT bindings, so every function is unit-tested natively.

#![allow(dead_code)] // the 0.1.0 Slack adapter uses only part of the old kit

use serde_json::Value;

/// An event as an adapter sees it, with its payload parsed.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    /// The event id.
    pub id: &'a str,
    /// The event type, e.g. `host.enrolled`.
    pub kind: &'a str,
    /// RFC 3339 acceptance time.
    pub timestamp: &'a str,
    /// The parsed payload.
    pub data: Value,
}

impl<'a> Event<'a> {
    /// Parses the payload; the engine only passes valid JSON, so an error here means the
    /// adapter is being run on a hand-made event.
    pub fn parse(
        id: &'a str,
        kind: &'a str,
        timestamp: &'a str,
        data: &str,
    ) -> Result<Self, String> {
        let data = serde_json::from_str(data)
            .map_err(|e| format!("event {id}: data is not valid JSON: {e}"))?;
        Ok(Self {
            id,
            kind,
            timestamp,
            data,
        })
    }
}

/// A subscription's adapter settings, as the engine passes them (`context.settings`).
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a>(pub &'a [(String, String)]);

impl<'a> Settings<'a> {
    /// The value of `key`, if it is set and not blank.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// A comma-separated setting as a list of trimmed, non-empty items.
    pub fn list(&self, key: &str) -> Vec<&'a str> {
        self.get(key)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }
}

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
/// a trailing `*` segment matches one or more segments, and a `*` segment elsewhere matches
/// exactly one. This is the same rule the engine uses to route events.
pub fn type_matches(pattern: &str, event_type: &str) -> bool {
    let mut pat = pattern.split('.').peekable();
    let mut ty = event_type.split('.');
    while let Some(p) = pat.next() {
        let last = pat.peek().is_none();
        match (p, ty.next()) {
            ("*", Some(_)) if last => return true,
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

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn settings_ignore_blank_values_and_split_lists() {
        let raw = pairs(&[("a", " x "), ("blank", "  "), ("l", "p, q,,r ")]);
        let s = Settings(&raw);
        assert_eq!(s.get("a"), Some("x"));
        assert_eq!(s.get("blank"), None);
        assert_eq!(s.get("missing"), None);
        assert_eq!(s.list("l"), vec!["p", "q", "r"]);
        assert!(s.list("missing").is_empty());
    }

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
        assert!(type_matches("host.*.failed", "host.disk.failed"));
        assert!(!type_matches("host.*.failed", "host.disk.ok"));
        assert!(type_matches("cert.expiring", "cert.expiring"));
        assert!(!type_matches("cert.expiring", "cert.expiring.soon"));
        assert!(!type_matches("cert.expiring", "cert"));
    }
}
