//! The clock and the time formats the engine writes and reads: Unix milliseconds inside,
//! RFC 3339 in UTC outside.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// Parses an RFC 3339 time (any offset, optional fractions) into Unix ms; times before 1970
/// are 0.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    text.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond().max(0))
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
    fn parses_offsets_and_fractions() {
        assert_eq!(parse_rfc3339("2026-06-13T12:00:00Z"), Some(T));
        assert_eq!(parse_rfc3339("2026-06-13T14:00:00.5+02:00"), Some(T + 500));
        assert_eq!(parse_rfc3339("1960-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
