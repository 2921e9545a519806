//! Events: what producers publish (an [`EventDraft`]), how it is validated into an
//! [`Event`], and the default envelope body. Every producer (HTTP, NATS, in-process, the
//! engine's own events) hands drafts to `ingest`, which validates them here.

pub mod catalog;
pub mod payload;

use std::cell::Cell;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde_json::value::RawValue;

pub use payload::PayloadError;

/// An accepted event, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `evt_…`, or the producer's own id, which doubles as the idempotency key.
    pub id: String,
    /// Dot-separated type, e.g. `host.enrolled`.
    pub kind: String,
    /// When the engine accepted it, in Unix milliseconds.
    pub created_at_ms: i64,
    /// The payload as JSON text, passed to adapters and into the envelope byte for byte.
    pub data: String,
}

impl Event {
    /// The acceptance time as RFC 3339 in UTC, to the second: `2026-06-13T12:00:00Z`.
    pub fn timestamp(&self) -> String {
        crate::clock::rfc3339(self.created_at_ms)
    }

    /// The Standard Webhooks envelope sent when a subscription has no adapter:
    /// `{"id":…,"type":…,"timestamp":…,"data":…}`.
    pub fn envelope(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() + self.id.len() + self.kind.len() + 64);
        out.extend_from_slice(b"{\"id\":");
        push_json_string(&mut out, &self.id);
        out.extend_from_slice(b",\"type\":");
        push_json_string(&mut out, &self.kind);
        out.extend_from_slice(b",\"timestamp\":\"");
        out.extend_from_slice(self.timestamp().as_bytes());
        out.extend_from_slice(b"\",\"data\":");
        out.extend_from_slice(self.data.as_bytes());
        out.push(b'}');
        out
    }
}

fn push_json_string(out: &mut Vec<u8>, s: &str) {
    // Writing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Why a published event was refused. Each maps to a `4xx` with a stable code.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    /// The body is not JSON, or not the event shape.
    #[error("the body is not a valid event: {0}")]
    InvalidJson(String),
    /// `type` is absent.
    #[error("the event has no `type`: send {{\"type\": \"host.enrolled\", \"data\": {{...}}}}")]
    MissingType,
    /// `type` breaks the syntax rule.
    #[error("invalid event type `{kind}`: {reason}")]
    InvalidType {
        /// The type as sent (cut to 100 characters).
        kind: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The type is in the engine's own `wasmhook.` namespace.
    #[error(
        "event types starting with `wasmhook.` are the engine's own (operational events); choose another prefix than `{kind}`"
    )]
    ReservedType {
        /// The type as sent (cut to 100 characters).
        kind: String,
    },
    /// The producer's `id` is unusable.
    #[error("invalid event id: {0}")]
    InvalidId(&'static str),
    /// `type` is longer than `[limits] max_event_type_bytes`.
    #[error(
        "invalid event type `{kind}`: it is longer than the {limit}-byte limit ([limits] max_event_type_bytes)"
    )]
    TypeTooLong {
        /// The type as sent (cut to 100 characters).
        kind: String,
        /// The limit.
        limit: usize,
    },
    /// `data` is present but not an object (`null` included).
    #[error("`data` must be a JSON object, like {{\"host\": \"web-1\"}}; leave it out for {{}}")]
    DataNotObject,
    /// `data` is larger than `[limits] max_event_bytes`.
    #[error("`data` is {size} bytes, over the {limit}-byte limit ([limits] max_event_bytes)")]
    DataTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// `data` is JSON that adapters cannot rely on parsing.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// A batch holds more events than [`MAX_BATCH_EVENTS`].
    #[error("a batch holds at most {MAX_BATCH_EVENTS} events; this one has more")]
    BatchTooLarge,
    /// `data` breaks the JSON Schema declared for the type (`[[event_types]]`, `reject`).
    #[error(
        "`{field}` does not fit the schema of event type `{kind}`: {reason} (see GET /v1/event-types)"
    )]
    SchemaViolation {
        /// The type.
        kind: String,
        /// Where in the event, as `data.items[0].sku`.
        field: String,
        /// What the schema wants.
        reason: String,
    },
}

impl EventError {
    /// A stable, machine-readable code for API clients.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidJson(_) => "invalid_json",
            Self::MissingType => "missing_type",
            Self::InvalidType { .. } | Self::TypeTooLong { .. } => "invalid_event_type",
            Self::ReservedType { .. } => "reserved_event_type",
            Self::InvalidId(_) => "invalid_event_id",
            Self::DataNotObject => "invalid_data",
            Self::DataTooLarge { .. } => "body_too_large",
            Self::Payload(PayloadError::TooDeep) => "data_too_deep",
            Self::Payload(PayloadError::LoneSurrogate) => "invalid_unicode",
            Self::Payload(PayloadError::NonFinite) => "invalid_number",
            Self::BatchTooLarge => "batch_too_large",
            Self::SchemaViolation { .. } => "schema_violation",
        }
    }
}

/// An event as a producer hands it over, before validation. The engine stamps the time
/// and, when `id` is absent, mints an `evt_…` id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventDraft {
    /// The producer's id, which makes publishing idempotent; `None` for a fresh one.
    pub id: Option<String>,
    /// Dot-separated type, e.g. `host.enrolled`.
    pub kind: String,
    /// The payload as JSON text; `None` for `{}`. Must be a JSON object.
    pub data: Option<String>,
}

impl EventDraft {
    /// A draft of type `kind` with `data`, a JSON object.
    pub fn new(kind: impl Into<String>, data: &serde_json::Value) -> Self {
        Self {
            id: None,
            kind: kind.into(),
            data: Some(data.to_string()),
        }
    }

    /// The same draft with the producer's own id (the idempotency key).
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }
}

/// What a draft is held to.
#[derive(Debug, Clone, Copy)]
pub struct EventLimits {
    /// Longest `type`, bytes (`[limits] max_event_type_bytes`).
    pub max_type_bytes: usize,
    /// Largest `data`, bytes (`[limits] max_event_bytes`).
    pub max_data_bytes: usize,
}

/// Who publishes: producers may not use the engine's own `wasmhook.` type namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publisher {
    /// A producer (HTTP, NATS, an embedding program).
    Producer,
    /// The engine itself (operational and test events).
    Engine,
}

/// The prefix of the engine's own event types.
pub const ENGINE_TYPE_PREFIX: &str = "wasmhook.";

impl EventDraft {
    /// Validates the draft and stamps it with `now_ms`, minting an id when it has none.
    pub fn validate(
        self,
        now_ms: i64,
        limits: &EventLimits,
        publisher: Publisher,
    ) -> Result<Event, EventError> {
        validate_event_type(&self.kind)?;
        if self.kind.len() > limits.max_type_bytes {
            return Err(EventError::TypeTooLong {
                kind: self.kind.chars().take(100).collect(),
                limit: limits.max_type_bytes,
            });
        }
        if publisher == Publisher::Producer && self.kind.starts_with(ENGINE_TYPE_PREFIX) {
            return Err(EventError::ReservedType {
                kind: self.kind.chars().take(100).collect(),
            });
        }
        let id = match self.id {
            Some(id) => {
                validate_event_id(&id)?;
                id
            }
            None => new_id("evt"),
        };
        let data = match self.data {
            None => "{}".to_owned(),
            Some(data) => {
                if !data.trim_start().starts_with('{') {
                    return Err(EventError::DataNotObject);
                }
                if data.len() > limits.max_data_bytes {
                    return Err(EventError::DataTooLarge {
                        size: data.len(),
                        limit: limits.max_data_bytes,
                    });
                }
                payload::check(&data)?;
                data
            }
        };
        Ok(Event {
            id,
            kind: self.kind,
            created_at_ms: now_ms,
            data,
        })
    }
}

/// The body of `POST /v1/events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventBody<'a> {
    #[serde(default)]
    id: Option<String>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    /// `Option<Option<_>>` tells an absent `data` (`{}`) from `null` (refused).
    #[serde(borrow, default, deserialize_with = "present")]
    data: Option<Option<&'a RawValue>>,
}

fn present<'de, D: de::Deserializer<'de>>(d: D) -> Result<Option<Option<&'de RawValue>>, D::Error> {
    Option::<&'de RawValue>::deserialize(d).map(Some)
}

impl EventBody<'_> {
    fn into_draft(self) -> Result<EventDraft, EventError> {
        let kind = self.kind.ok_or(EventError::MissingType)?;
        let data = match self.data {
            None => None,
            Some(None) => return Err(EventError::DataNotObject),
            Some(Some(raw)) => Some(raw.get().to_owned()),
        };
        Ok(EventDraft {
            id: self.id,
            kind,
            data,
        })
    }
}

/// Longest event type any configuration accepts (`[limits] max_event_type_bytes` is at
/// most this).
pub const MAX_TYPE_LEN: usize = 1024;
/// Longest event type accepted by default.
pub const DEFAULT_TYPE_LEN: usize = 128;
/// Longest producer-chosen event id accepted.
pub const MAX_ID_LEN: usize = 128;
/// Most events in one batch.
pub const MAX_BATCH_EVENTS: usize = 1000;

/// Parses one published event's JSON (its shape only; [`EventDraft::validate`] does the
/// rest).
pub fn parse_event(body: &[u8]) -> Result<EventDraft, EventError> {
    let body: EventBody<'_> =
        serde_json::from_slice(body).map_err(|e| EventError::InvalidJson(e.to_string()))?;
    body.into_draft()
}

/// Parses a JSON array of events (the batch endpoint). Parsing stops at the
/// [`MAX_BATCH_EVENTS`] + 1st element, so an oversized batch costs no more than a full
/// one. An error carries the index of the event it is about.
pub fn parse_event_batch(body: &[u8]) -> Result<Vec<EventDraft>, (usize, EventError)> {
    let overflow = Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = BatchSeed {
        overflow: &overflow,
    }
    .deserialize(&mut de)
    .and_then(|bodies| de.end().map(|()| bodies));
    let bodies = match parsed {
        Ok(bodies) => bodies,
        Err(_) if overflow.get() => return Err((MAX_BATCH_EVENTS, EventError::BatchTooLarge)),
        Err(e) => return Err((0, EventError::InvalidJson(e.to_string()))),
    };
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| body.into_draft().map_err(|e| (i, e)))
        .collect()
}

/// Reads a JSON array of event bodies, refusing an element past the cap.
struct BatchSeed<'c> {
    overflow: &'c Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for BatchSeed<'_> {
    type Value = Vec<EventBody<'de>>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for BatchSeed<'_> {
    type Value = Vec<EventBody<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_BATCH_EVENTS));
        while let Some(body) = seq.next_element::<EventBody<'de>>()? {
            if out.len() == MAX_BATCH_EVENTS {
                self.overflow.set(true);
                return Err(de::Error::custom("too many events"));
            }
            out.push(body);
        }
        Ok(out)
    }
}

/// Event types are dot-separated segments of `[A-Za-z0-9_-]`, e.g. `host.enrolled`.
pub fn validate_event_type(kind: &str) -> Result<(), EventError> {
    let fail = |reason| EventError::InvalidType {
        kind: kind.chars().take(100).collect(),
        reason,
    };
    if kind.is_empty() {
        return Err(fail("it is empty"));
    }
    if kind.len() > MAX_TYPE_LEN {
        return Err(fail("it is longer than 1024 characters"));
    }
    for segment in kind.split('.') {
        if segment.is_empty() {
            return Err(fail(
                "it has an empty segment; use dot-separated words like `host.enrolled`",
            ));
        }
        if !segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(fail(
                "segments may only contain letters, digits, `_` and `-`",
            ));
        }
    }
    Ok(())
}

/// Producer ids: 1 to 128 printable ASCII characters without spaces.
pub fn validate_event_id(id: &str) -> Result<(), EventError> {
    if id.is_empty() {
        return Err(EventError::InvalidId("it is empty"));
    }
    if id.len() > MAX_ID_LEN {
        return Err(EventError::InvalidId("it is longer than 128 characters"));
    }
    if !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(EventError::InvalidId(
            "it may only contain printable ASCII without spaces",
        ));
    }
    Ok(())
}

/// A new time-ordered id with a type prefix: `evt_0193…`, `msg_0193…`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_781_352_000_000; // 2026-06-13T12:00:00Z
    const LIMITS: EventLimits = EventLimits {
        max_type_bytes: DEFAULT_TYPE_LEN,
        max_data_bytes: 256 << 10,
    };

    fn accept(body: &[u8]) -> Result<Event, EventError> {
        parse_event(body)?.validate(T, &LIMITS, Publisher::Producer)
    }

    #[test]
    fn envelope_is_exact() {
        let e = accept(br#"{"type":"host.enrolled","id":"evt_1","data":{"a": 1}}"#).unwrap();
        assert_eq!(
            String::from_utf8(e.envelope()).unwrap(),
            r#"{"id":"evt_1","type":"host.enrolled","timestamp":"2026-06-13T12:00:00Z","data":{"a": 1}}"#
        );
    }

    #[test]
    fn defaults_for_id_and_data() {
        let e = accept(br#"{"type":"a.b"}"#).unwrap();
        assert!(e.id.starts_with("evt_") && e.id.len() == 36, "{}", e.id);
        assert_eq!(e.data, "{}");
        let e = EventDraft::new("a.b", &serde_json::json!({"x": 1}))
            .with_id("mine")
            .validate(T, &LIMITS, Publisher::Producer)
            .unwrap();
        assert_eq!((e.id.as_str(), e.data.as_str()), ("mine", r#"{"x":1}"#));
    }

    #[test]
    fn errors_name_the_problem() {
        let err = accept(b"{not json").unwrap_err();
        assert_eq!(err.code(), "invalid_json");
        assert!(err.to_string().contains("line 1"), "{err}");
        assert_eq!(
            accept(br#"{"data":{}}"#).unwrap_err(),
            EventError::MissingType
        );
        let err = accept(br#"{"type":"a","payload":{}}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `payload`"), "{err}");
        assert_eq!(
            accept(br#"{"type":"a","data":[1]}"#).unwrap_err(),
            EventError::DataNotObject
        );
        assert_eq!(
            accept(br#"{"type":"a","id":"has space"}"#)
                .unwrap_err()
                .code(),
            "invalid_event_id"
        );
    }

    /// The documented rule: a `data` that is not an object, `null` included, is refused.
    #[test]
    fn null_data_is_refused() {
        let err = accept(br#"{"type":"a","data":null}"#).unwrap_err();
        assert_eq!(err.code(), "invalid_data");
    }

    #[test]
    fn payloads_adapters_cannot_parse_are_refused_with_stable_codes() {
        let deep = format!(
            r#"{{"type":"a","data":{{"x":{}}}}}"#,
            "[".repeat(100_000) + &"]".repeat(100_000)
        );
        for (body, code) in [
            (deep.as_str(), "data_too_deep"),
            (r#"{"type":"a","data":{"s":"\ud800"}}"#, "invalid_unicode"),
            (r#"{"type":"a","data":{"n":1e999999}}"#, "invalid_number"),
        ] {
            assert_eq!(
                accept(body.as_bytes()).unwrap_err().code(),
                code,
                "{}",
                &body[..40]
            );
        }
    }

    #[test]
    fn producers_cannot_publish_engine_types() {
        let err = accept(br#"{"type":"wasmhook.subscription.disabled"}"#).unwrap_err();
        assert_eq!(err.code(), "reserved_event_type");
        let own = EventDraft::new("wasmhook.test", &serde_json::json!({})).validate(
            T,
            &LIMITS,
            Publisher::Engine,
        );
        assert!(own.is_ok());
    }

    #[test]
    fn event_type_syntax() {
        for ok in ["a", "host.enrolled", "cert.expiring-soon", "A_1.b-2"] {
            validate_event_type(ok).unwrap();
        }
        for bad in ["", ".a", "a.", "a..b", "a b", "a.*", "é", &"x".repeat(1025)] {
            assert_eq!(
                validate_event_type(bad).unwrap_err().code(),
                "invalid_event_type",
                "{bad}"
            );
        }
        let long = format!(r#"{{"type":"{}"}}"#, "x".repeat(129));
        let err = accept(long.as_bytes()).unwrap_err();
        assert_eq!(err.code(), "invalid_event_type");
        assert!(err.to_string().contains("max_event_type_bytes"), "{err}");
        let wide = EventLimits {
            max_type_bytes: 129,
            ..LIMITS
        };
        assert!(
            parse_event(long.as_bytes())
                .unwrap()
                .validate(T, &wide, Publisher::Producer)
                .is_ok()
        );
    }

    #[test]
    fn batch_reports_the_index_of_the_bad_event() {
        let (i, err) = parse_event_batch(br#"[{"type":"a"},{"data":{}}]"#).unwrap_err();
        assert_eq!((i, err), (1, EventError::MissingType));
        assert_eq!(
            parse_event_batch(br#"[{"type":"a"},{"type":"b"}]"#)
                .unwrap()
                .len(),
            2
        );
    }

    /// An oversized batch is refused at the first element past the cap: what follows is
    /// never parsed (here it is not even JSON).
    #[test]
    fn batch_parsing_stops_at_the_cap() {
        let mut body = String::from("[");
        for _ in 0..MAX_BATCH_EVENTS {
            body.push_str(r#"{"type":"a"},"#);
        }
        body.push_str(r#"{"type":"a"}, this is not json"#);
        let (_, err) = parse_event_batch(body.as_bytes()).unwrap_err();
        assert_eq!(err, EventError::BatchTooLarge);
        let (_, err) = parse_event_batch(b"[{\"type\":\"a\"}] trailing").unwrap_err();
        assert_eq!(err.code(), "invalid_json");
    }
}
