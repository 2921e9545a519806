//! API errors: every failure becomes a status code and a JSON body
//! `{"code": "<stable>", "message": "<for a person>"}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::event::EventError;
use crate::ingest::IngestError;
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
        let status = match e {
            EventError::DataTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        Self::new(status, e.code(), e.to_string())
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Invalid { index, error } => {
                let mut err = Self::from(error);
                if let Some(i) = index {
                    err.message = format!("event {i}: {}", err.message);
                }
                err
            }
            IngestError::UnknownSubscription(id) => Self::new(
                StatusCode::NOT_FOUND,
                "subscription_not_found",
                format!("no subscription `{id}`"),
            ),
            IngestError::Store(e) => Self::from(e),
        }
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
