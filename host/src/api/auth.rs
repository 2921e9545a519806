//! Bearer-token auth for `/v1/*` (and `/metrics` when `[server] metrics_require_token`).
//! `/healthz` and `/openapi.json` are always open.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};

/// Whether `path` needs a token.
fn guarded(path: &str, metrics_require_token: bool) -> bool {
    match path {
        "/healthz" | "/openapi.json" => false,
        "/metrics" => metrics_require_token,
        _ => true,
    }
}

/// Lets the request through when it is for an open path, no token is configured, or the
/// bearer token matches one of them. Every token is compared, in constant time, whichever matches, so the answer's
/// timing does not tell which token was close. A missing or wrong token gets the same
/// `401`, with no hint which it was.
pub async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if state.api_tokens.is_empty() || !guarded(request.uri().path(), state.metrics_require_token) {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    match given {
        Some(token)
            if state
                .api_tokens
                .iter()
                .fold(false, |ok, expected| ok | expected.matches(token)) =>
        {
            next.run(request).await
        }
        _ => {
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid bearer token is required",
            )
            .into_response();
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
            response
        }
    }
}
