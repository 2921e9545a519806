//! The operator console at `/ui`: pages rendered on the server with `maud`, over the same
//! services the API handlers use, and one small embedded script (`assets/console.js`)
//! that makes every change through the `/v1` API itself, with the session's CSRF token.
//! No node at build time, no CDN, no inline script: the CSP forbids it.
//!
//! Layout:
//! - `session`: sessions, the cookie, the CSRF check;
//! - `layout`: the page shell and small shared pieces;
//! - `pages`: Overview, Dead letters, Endpoints, Plugins, Live tail;
//! - `subscriptions`: the subscription list and a subscription's detail;
//! - `assets/`: the script and the style sheet, embedded with `include_str!`.

mod layout;
mod pages;
pub mod session;
mod subscriptions;

pub use session::Sessions;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::html;
use serde::Deserialize;

use super::{ApiError, AppState};
use crate::clock::now_ms;

/// The Content-Security-Policy of every console answer: only the engine's own script,
/// styles and connections; no inline script or style, no frames, no plugins.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

const SCRIPT: &str = include_str!("assets/console.js");
const STYLE: &str = include_str!("assets/console.css");
const ICON: &str = include_str!("assets/favicon.svg");

/// The console's routes, with the session guard and the security headers.
pub fn router(state: AppState) -> Router<AppState> {
    let pages = Router::new()
        .route("/ui", get(pages::overview))
        .route("/ui/subscriptions", get(subscriptions::list))
        .route("/ui/subscriptions/{id}", get(subscriptions::detail))
        .route("/ui/dead-letters", get(pages::dead_letters))
        .route("/ui/endpoints", get(pages::endpoints))
        .route("/ui/plugins", get(pages::plugins))
        .route("/ui/tail", get(pages::tail))
        .route("/ui/logout", post(logout))
        .layer(axum::middleware::from_fn_with_state(state, require_session));
    Router::new()
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/assets/console.js", get(script))
        .route("/ui/assets/console.css", get(style))
        .route("/ui/assets/favicon.svg", get(icon))
        .merge(pages)
        .layer(axum::middleware::from_fn(security_headers))
}

/// Pages need a live session: without one, a page answers with a redirect to sign-in and
/// anything else with `401`. A change needs the CSRF token too (`403 csrf_failed`).
async fn require_session(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let session = state
        .sessions
        .as_ref()
        .and_then(|s| s.find(request.headers(), now_ms()));
    match session {
        None if request.method() == http::Method::GET => Redirect::to("/ui/login").into_response(),
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "sign in to the console first",
        )
        .into_response(),
        Some(session)
            if request.method() != http::Method::GET
                && !session::csrf_ok(&session, request.headers()) =>
        {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf_failed",
                "the request lacks the session's CSRF token; reload the page and try again",
            )
            .into_response()
        }
        Some(session) => {
            let mut request = request;
            request.extensions_mut().insert(session);
            next.run(request).await
        }
    }
}

/// Strict CSP and friends on every console answer; pages are never cached.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let set = |h: &mut HeaderMap, name: &'static str, value: &'static str| {
        h.insert(name, http::HeaderValue::from_static(value));
    };
    set(headers, "content-security-policy", CSP);
    set(headers, "x-content-type-options", "nosniff");
    set(headers, "x-frame-options", "DENY");
    set(headers, "referrer-policy", "no-referrer");
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, "cache-control", "no-store");
    }
    response
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

async fn icon() -> Response {
    asset("image/svg+xml", ICON)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn login_page(State(state): State<AppState>) -> Response {
    let open = state.api_tokens.is_empty();
    layout::bare(
        "Sign in",
        html! {
            main.login {
                h1 { "wasmhook" }
                @if open {
                    p.error { "The console needs an admin token. Add one to " code { "[[server.tokens]]" } " with scope " code { "admin" } ", or set " code { "[server] api_token" }
                        " (or " code { "WASMHOOK_API_TOKEN" } ") and restart the engine." }
                } @else {
                    form #login {
                        label { "Admin token " input type="password" name="token" autocomplete="current-password" required; }
                        button type="submit" { "Sign in" }
                        p.error #login-error hidden {}
                    }
                }
            }
        },
    )
    .into_response()
}

/// `POST /ui/login` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    token: String,
}

/// Checks the admin token and starts a session: `204` with the cookie, or `401`.
async fn login(State(state): State<AppState>, body: axum::body::Body) -> Response {
    let bytes = match super::body::read_body(body, 4096).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let Ok(Login { token }) = serde_json::from_slice::<Login>(&bytes) else {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "send {\"token\": \"…\"}",
        )
        .into_response();
    };
    let Some(sessions) = &state.sessions else {
        return super::error::not_found(http::Uri::from_static("/ui/login"))
            .await
            .into_response();
    };
    let Some((name, scope)) = super::auth::console_token(&state.api_tokens, token.as_bytes())
    else {
        tracing::warn!("console sign-in refused: not an admin or read token");
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "that is not a token with scope `admin` (or `read`, for a read-only console)",
        )
        .into_response();
    };
    let id = sessions.start(&name, scope, now_ms());
    tracing::info!(token = %name, scope = %scope.as_str(), "console sign-in");
    (
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, sessions.set_cookie(&id))],
    )
        .into_response()
}

/// Ends the session and clears the cookie.
async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(sessions) = &state.sessions {
        sessions.end(&headers);
    }
    (
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, session::clear_cookie())],
    )
        .into_response()
}
