//! Events: what producers publish, how it is validated, and the default envelope body.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::value::RawValue;

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
        rfc3339(self.created_at_ms)
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
    /// `data` is present but not an object.
    #[error("`data` must be a JSON object, like {{\"host\": \"web-1\"}}")]
    DataNotObject,
}

impl EventError {
    /// A stable, machine-readable code for API clients.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidJson(_) => "invalid_json",
            Self::MissingType => "missing_type",
            Self::InvalidType { .. } | Self::TypeTooLong { .. } => "invalid_event_type",
            Self::InvalidId(_) => "invalid_event_id",
            Self::DataNotObject => "invalid_data",
        }
    }
}

/// The body of `POST /v1/events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewEvent<'a> {
    #[serde(default)]
    id: Option<String>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

/// Longest event type any configuration accepts (`[limits] max_event_type_bytes` is at
/// most this).
pub const MAX_TYPE_LEN: usize = 1024;
/// Longest event type accepted by default.
pub const DEFAULT_TYPE_LEN: usize = 128;
/// Longest producer-chosen event id accepted.
pub const MAX_ID_LEN: usize = 128;

/// Parses and validates one published event, stamping it with `now_ms`. An absent id gets
/// a fresh `evt_…`; absent `data` becomes `{}`.
pub fn parse_event(body: &[u8], now_ms: i64) -> Result<Event, EventError> {
    let new: NewEvent<'_> =
        serde_json::from_slice(body).map_err(|e| EventError::InvalidJson(e.to_string()))?;
    build_event(new, now_ms)
}

/// Parses a JSON array of events (the batch endpoint), validating each.
pub fn parse_event_batch(body: &[u8], now_ms: i64) -> Result<Vec<Event>, (usize, EventError)> {
    let news: Vec<NewEvent<'_>> =
        serde_json::from_slice(body).map_err(|e| (0, EventError::InvalidJson(e.to_string())))?;
    news.into_iter()
        .enumerate()
        .map(|(i, new)| build_event(new, now_ms).map_err(|e| (i, e)))
        .collect()
}

fn build_event(new: NewEvent<'_>, now_ms: i64) -> Result<Event, EventError> {
    let kind = new.kind.ok_or(EventError::MissingType)?;
    validate_event_type(&kind)?;
    let id = match new.id {
        Some(id) => {
            validate_event_id(&id)?;
            id
        }
        None => new_id("evt"),
    };
    let data = match new.data {
        None => "{}".to_owned(),
        Some(raw) if raw.get().starts_with('{') => raw.get().to_owned(),
        Some(_) => return Err(EventError::DataNotObject),
    };
    Ok(Event {
        id,
        kind,
        created_at_ms: now_ms,
        data,
    })
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

/// Holds an accepted event's type to the configured length.
pub fn check_type_len(event: &Event, limit: usize) -> Result<(), EventError> {
    if event.kind.len() > limit {
        return Err(EventError::TypeTooLong {
            kind: event.kind.chars().take(100).collect(),
            limit,
        });
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

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Unix milliseconds as RFC 3339 UTC to the second.
pub fn rfc3339(ms: i64) -> String {
    humantime::format_rfc3339_seconds(clamped_time(ms)).to_string()
}

/// Unix ms as RFC 3339 in UTC with milliseconds: `2026-06-13T12:00:00.123Z`.
pub fn rfc3339_millis(ms: i64) -> String {
    humantime::format_rfc3339_millis(clamped_time(ms)).to_string()
}

/// The last instant RFC 3339 can write (9999-12-31T23:59:59.999Z), in Unix ms.
const LAST_WRITABLE_MS: i64 = 253_402_300_799_999;

/// `ms` as a time RFC 3339 can write: before 1970 is 1970, after 9999 is the end of 9999
/// (a retry or a rotation grace of millions of days is valid, and must not break reads).
fn clamped_time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.clamp(0, LAST_WRITABLE_MS) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_781_352_000_000; // 2026-06-13T12:00:00Z

    #[test]
    fn times_far_away_still_format() {
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339_millis(-5), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(T), "2026-06-13T12:00:00Z");
    }

    #[test]
    fn envelope_is_exact() {
        let e = parse_event(
            br#"{"type":"host.enrolled","id":"evt_1","data":{"a": 1}}"#,
            T,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(e.envelope()).unwrap(),
            r#"{"id":"evt_1","type":"host.enrolled","timestamp":"2026-06-13T12:00:00Z","data":{"a": 1}}"#
        );
    }

    #[test]
    fn defaults_for_id_and_data() {
        let e = parse_event(br#"{"type":"a.b"}"#, T).unwrap();
        assert!(e.id.starts_with("evt_") && e.id.len() == 36, "{}", e.id);
        assert_eq!(e.data, "{}");
    }

    #[test]
    fn errors_name_the_problem() {
        let err = parse_event(b"{not json", T).unwrap_err();
        assert_eq!(err.code(), "invalid_json");
        assert!(err.to_string().contains("line 1"), "{err}");
        assert_eq!(
            parse_event(br#"{"data":{}}"#, T).unwrap_err(),
            EventError::MissingType
        );
        let err = parse_event(br#"{"type":"a","payload":{}}"#, T).unwrap_err();
        assert!(err.to_string().contains("unknown field `payload`"), "{err}");
        assert_eq!(
            parse_event(br#"{"type":"a","data":[1]}"#, T).unwrap_err(),
            EventError::DataNotObject
        );
        assert_eq!(
            parse_event(br#"{"type":"a","data":null}"#, T).unwrap().data,
            "{}"
        );
        assert_eq!(
            parse_event(br#"{"type":"a","id":"has space"}"#, T)
                .unwrap_err()
                .code(),
            "invalid_event_id"
        );
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
        let long =
            parse_event(format!(r#"{{"type":"{}"}}"#, "x".repeat(129)).as_bytes(), T).unwrap();
        let err = check_type_len(&long, DEFAULT_TYPE_LEN).unwrap_err();
        assert_eq!(err.code(), "invalid_event_type");
        assert!(err.to_string().contains("max_event_type_bytes"), "{err}");
        assert!(check_type_len(&long, 129).is_ok());
    }

    #[test]
    fn batch_reports_the_index_of_the_bad_event() {
        let (i, err) = parse_event_batch(br#"[{"type":"a"},{"data":{}}]"#, T).unwrap_err();
        assert_eq!((i, err), (1, EventError::MissingType));
        assert_eq!(
            parse_event_batch(br#"[{"type":"a"},{"type":"b"}]"#, T)
                .unwrap()
                .len(),
            2
        );
    }
}
