//! Query-string helpers shared by the list endpoints: times, page sizes, and the error shape
//! for a query that does not parse.

use axum::http::StatusCode;

use super::ApiError;

/// Parses an RFC 3339 time (any offset, optional fractions) into Unix ms. Times before
/// 1970 are 0: every delivery is after them.
pub fn parse_time(name: &str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    value
        .map(|v| {
            crate::clock::parse_rfc3339(v).ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_time",
                    format!(
                        "`{name}` must be an RFC 3339 time like 2026-06-13T12:00:00Z, not `{v}`"
                    ),
                )
            })
        })
        .transpose()
}

/// A page size: 50 when absent, otherwise 1 to 1,000.
pub fn page_limit(limit: Option<i64>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(50),
        Some(n @ 1..=1000) => Ok(n as usize),
        Some(n) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_limit",
            format!("`limit` must be between 1 and 1000, not {n}"),
        )),
    }
}

/// Turns a query-string rejection into the JSON error shape.
pub fn query_error(e: axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text())
}
