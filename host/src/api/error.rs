//! API errors: every failure becomes a status code and a JSON body
//! `{"code": "<stable>", "message": "<for a person>"}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::event::EventError;
use crate::store::StoreError;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// What happened and what to do.
    pub message: String,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"code": self.code, "message": self.message})),
        )
            .into_response()
    }
}

impl From<EventError> for ApiError {
    fn from(e: EventError) -> Self {
        Self::new(StatusCode::BAD_REQUEST, e.code(), e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store error while serving a request");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            format!("the event store is unavailable ({e}); nothing was accepted, retry later"),
        )
    }
}

/// The answer when a handler panics: a bug, logged with its message, while the engine and
/// the connection go on. Publishing is idempotent by event id, so retrying is safe whether
/// or not the request got as far as the store.
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message");
    tracing::error!(
        panic = what,
        "a request handler panicked; this is a bug, please report it"
    );
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "the engine hit a bug while answering (it is logged); the engine keeps running. \
         Retrying is safe: an event sent with an `id` is never stored twice",
    )
    .into_response()
}

/// Unknown paths.
pub async fn not_found(uri: http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no such endpoint: {}", uri.path()),
    )
}

/// Reads a request body of at most `limit` bytes. A declared `Content-Length` over the
/// limit is refused before a byte is read; a body that does not arrive within
/// `[server] body_read_timeout` gets `408 body_timeout`.
pub async fn read_body(body: axum::body::Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    use http_body_util::BodyExt;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is larger than the {limit}-byte limit ([limits] in the config)"),
        )
    };
    if axum::body::HttpBody::size_hint(&body).lower() > limit as u64 {
        return Err(too_large());
    }
    let limited = http_body_util::Limited::new(body, limit);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large())
        }
        Err(e) => match cause::<super::serve::BodyReadTimeout>(&*e) {
            Some(timeout) => Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                timeout.to_string(),
            )),
            None => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "body_unreadable",
                format!("the request body could not be read: {e}"),
            )),
        },
    }
}

/// The first error of type `T` in `error`'s chain of sources.
fn cause<'a, T: std::error::Error + 'static>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    std::iter::successors(Some(error), |e| e.source()).find_map(|e| e.downcast_ref::<T>())
}

/// Parses an RFC 3339 time (any offset, optional fractions) into Unix ms. Times before
/// 1970 are 0: every delivery is after them.
pub fn parse_time(name: &str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    value
        .map(|v| {
            v.parse::<jiff::Timestamp>()
                .map(|t| t.as_millisecond().max(0))
                .map_err(|_| {
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
