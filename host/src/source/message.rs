//! How a consumed message becomes an event draft: the subject gives the type (or a
//! mapping does), the message id gives the idempotency key, the payload is `data`. Pure,
//! so the rules are tested here without a server.

use serde_json::value::RawValue;

use crate::event::EventDraft;
use crate::source::SourceConfig;

/// A message as the source read it.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// Its subject.
    pub subject: &'a str,
    /// The publisher's `Nats-Msg-Id` header, if any.
    pub msg_id: Option<&'a str>,
    /// The stream it is stored in.
    pub stream: &'a str,
    /// Its sequence number in that stream.
    pub sequence: u64,
    /// Its body: the event's `data`, a JSON object (empty for `{}`).
    pub payload: &'a [u8],
}

/// Why a message cannot become an event before ingest sees it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    /// The payload is not UTF-8 JSON.
    #[error("the payload is not JSON: {0}")]
    NotJson(String),
}

impl Unreadable {
    /// A stable code, as a metric label.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotJson(_) => "invalid_json",
        }
    }
}

/// The event type for `subject`: its entry in `types`, else the subject without
/// `strip_prefix`.
pub fn event_type(config: &SourceConfig, subject: &str) -> String {
    if let Some(kind) = config.types.get(subject) {
        return kind.clone();
    }
    config
        .strip_prefix
        .as_deref()
        .and_then(|prefix| subject.strip_prefix(prefix))
        .filter(|rest| !rest.is_empty())
        .unwrap_or(subject)
        .to_owned()
}

/// The idempotency key: the publisher's `Nats-Msg-Id`, else `<stream>-<sequence>`, which
/// stays the same on every redelivery of the message.
pub fn event_id(message: &Incoming<'_>) -> String {
    match message.msg_id {
        Some(id) if !id.is_empty() => id.to_owned(),
        _ => format!("{}-{}", message.stream, message.sequence),
    }
}

/// The draft for `message`. Ingest validates the rest (type syntax, id, object, size).
pub fn draft(config: &SourceConfig, message: &Incoming<'_>) -> Result<EventDraft, Unreadable> {
    let data = if message.payload.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let raw: &RawValue = serde_json::from_slice(message.payload)
            .map_err(|e| Unreadable::NotJson(e.to_string()))?;
        Some(raw.get().to_owned())
    };
    Ok(EventDraft {
        id: Some(event_id(message)),
        kind: event_type(config, message.subject),
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventError, EventLimits, Publisher};

    fn config(extra: &str) -> SourceConfig {
        let text = format!(
            "id = \"bus\"\nkind = \"nats\"\nurl = \"nats://127.0.0.1:4222\"\nstream = \"EVENTS\"\n{extra}"
        );
        toml::from_str(&text).unwrap()
    }

    fn incoming<'a>(subject: &'a str, msg_id: Option<&'a str>, payload: &'a [u8]) -> Incoming<'a> {
        Incoming {
            subject,
            msg_id,
            stream: "EVENTS",
            sequence: 42,
            payload,
        }
    }

    #[test]
    fn the_subject_is_the_type_unless_mapped_or_stripped() {
        let plain = config("");
        assert_eq!(event_type(&plain, "order.paid"), "order.paid");
        let mapped = config(
            "strip_prefix = \"events.\"\ntypes = { \"legacy.new_order\" = \"order.created\" }",
        );
        assert_eq!(event_type(&mapped, "legacy.new_order"), "order.created");
        assert_eq!(event_type(&mapped, "events.order.paid"), "order.paid");
        assert_eq!(event_type(&mapped, "other.thing"), "other.thing");
        // Stripping everything would leave no type; the subject stays.
        assert_eq!(event_type(&config("strip_prefix = \"a\""), "a"), "a");
    }

    #[test]
    fn the_message_id_is_the_idempotency_key_else_the_sequence() {
        let c = config("");
        let with = draft(&c, &incoming("order.paid", Some("ord-1"), b"{}")).unwrap();
        assert_eq!(with.id.as_deref(), Some("ord-1"));
        let without = draft(&c, &incoming("order.paid", None, b"{}")).unwrap();
        assert_eq!(without.id.as_deref(), Some("EVENTS-42"));
        let empty = draft(&c, &incoming("order.paid", Some(""), b"{}")).unwrap();
        assert_eq!(empty.id.as_deref(), Some("EVENTS-42"));
    }

    #[test]
    fn the_payload_is_data() {
        let c = config("");
        let d = draft(&c, &incoming("order.paid", None, br#" {"order": 1} "#)).unwrap();
        assert_eq!(d.data.as_deref(), Some(r#"{"order": 1}"#));
        assert_eq!(
            draft(&c, &incoming("order.paid", None, b"")).unwrap().data,
            None
        );
    }

    #[test]
    fn poison_is_named() {
        let c = config("");
        let err = draft(&c, &incoming("order.paid", None, b"not json")).unwrap_err();
        assert_eq!(err.code(), "invalid_json");
        // A subject that is no event type, or an array payload, passes here and is refused
        // by ingest's validation with its own code.
        let limits = EventLimits {
            max_type_bytes: 128,
            max_data_bytes: 1 << 20,
        };
        let bad_type = draft(&c, &incoming("order.bad!type", None, b"{}")).unwrap();
        let err = bad_type
            .validate(0, &limits, Publisher::Producer)
            .unwrap_err();
        assert!(matches!(err, EventError::InvalidType { .. }), "{err:?}");
        let array = draft(&c, &incoming("order.paid", None, b"[1]")).unwrap();
        assert_eq!(
            array.validate(0, &limits, Publisher::Producer).unwrap_err(),
            EventError::DataNotObject
        );
    }

    #[test]
    fn config_checks_name_the_key() {
        let mut c = config("");
        c.validate().unwrap();
        c.stream = "a.b".into();
        assert!(c.validate().unwrap_err().contains("stream"));
        let mut c = config("batch = 0");
        assert!(c.validate().unwrap_err().contains("batch"));
        c.batch = 10;
        c.ack_wait = crate::config::HumanDuration(std::time::Duration::from_millis(10));
        assert!(c.validate().unwrap_err().contains("ack_wait"));
    }
}
