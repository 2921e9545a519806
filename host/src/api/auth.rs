//! Bearer-token auth for `/v1/*` (and `/metrics` when `[server] metrics_require_token`).
//! `/healthz` and `/openapi.json` are always open; `/ui` has its own session guard. A
//! console session stands in for the admin token, with its CSRF token on every change.

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
        "/ui" => false,
        _ => !path.starts_with("/ui/"),
    }
}

/// Whether `token` is an admin token: the one place that decides it, for the bearer
/// check and for the console's sign-in. Every token is compared, in constant time,
/// whichever matches, so the answer's timing does not tell which token was close.
pub fn is_admin_token(state: &AppState, token: &[u8]) -> bool {
    state
        .api_tokens
        .iter()
        .fold(false, |ok, expected| ok | expected.matches(token))
}

/// Whether the request comes from a signed-in console: a live session cookie, and for a
/// change, the session's CSRF token.
fn console_session(state: &AppState, request: &Request) -> bool {
    let Some(sessions) = &state.sessions else {
        return false;
    };
    let Some(session) = sessions.find(request.headers(), crate::clock::now_ms()) else {
        return false;
    };
    let safe = matches!(
        *request.method(),
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
    );
    safe || super::ui::session::csrf_ok(&session, request.headers())
}

/// Lets the request through when it is for an open path, no token is configured, the
/// bearer token is an admin token, or it comes from a signed-in console. A missing or
/// wrong token gets the same `401`, with no hint which it was.
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
        .and_then(|v| bearer_token(v.as_bytes()));
    match given {
        Some(token) if is_admin_token(&state, token) => next.run(request).await,
        None if console_session(&state, &request) => next.run(request).await,
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

/// The token of an `Authorization: Bearer <token>` value. The scheme is case-insensitive
/// (RFC 9110, section 11.1: `bearer`, `BEARER`), and one or more spaces may follow it.
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"Bearer") || !rest.starts_with(b" ") {
        return None;
    }
    let token = rest.trim_ascii_start();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for header in [
            "Bearer t0ken",
            "bearer t0ken",
            "BEARER t0ken",
            "bEaReR t0ken",
            "Bearer   t0ken",
        ] {
            assert_eq!(
                bearer_token(header.as_bytes()),
                Some(&b"t0ken"[..]),
                "{header}"
            );
        }
        for header in [
            "Bearer",
            "Bearer ",
            "Bearert0ken",
            "Basic dTpw",
            "Bear t0ken",
            "",
        ] {
            assert_eq!(bearer_token(header.as_bytes()), None, "{header}");
        }
    }
}
