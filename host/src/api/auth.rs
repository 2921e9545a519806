//! Bearer-token auth with scopes, for `/v1/*` (and `/metrics` when `[server]
//! metrics_require_token`). `/healthz` and `/openapi.json` are always open; `/ui` has its
//! own session guard. A console session (signed in with an `admin` or `read` token)
//! stands in for that token on `/v1`, with the session's CSRF token on every change.
//!
//! Each token has a name and a scope (`publish`, `read` or `admin`, see
//! [`crate::config::Scope`]). The decision is [`decide`], a pure function of the tokens, the
//! `Authorization` header, the method and the path; the middleware only applies it. It also
//! writes the audit log: one `api change` line, naming the token, for every request to an
//! `admin` route (whatever changes state: subscriptions, secret rotations, test pings,
//! retries, replays), so a route added later is audited without anyone remembering to.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::{Choice, ConditionallySelectable as _};

use super::{ApiError, AppState};
use crate::config::{ApiToken, Scope};

/// What the auth layer does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let it through; the token's name, if a token was needed.
    Allow(Option<String>),
    /// `401`: no token, or not one of the configured ones.
    Unauthorized,
    /// `403`: a valid token without the scope the route needs.
    Forbidden {
        /// The token's name.
        token: String,
        /// The scope the route needs.
        needed: Scope,
    },
}

/// The scope `method path` needs, or `None` when the path is open to anyone.
///
/// - `/healthz` and `/openapi.json`: open; `/metrics`: open unless `metrics_require_token`,
///   then `read`.
/// - `POST /v1/events` and `POST /v1/events/batch`: `publish`.
/// - Any other `GET` or `HEAD`: `read`.
/// - Anything else (creating, changing, deleting, rotating, replaying, retrying, test
///   pings): `admin`.
pub fn required_scope(method: &Method, path: &str, metrics_require_token: bool) -> Option<Scope> {
    match path {
        "/healthz" | "/openapi.json" | "/ui" => return None,
        _ if path.starts_with("/ui/") => return None,
        "/metrics" if !metrics_require_token => return None,
        _ => {}
    }
    Some(match *method {
        Method::GET | Method::HEAD => Scope::Read,
        Method::POST if matches!(path, "/v1/events" | "/v1/events/batch") => Scope::Publish,
        _ => Scope::Admin,
    })
}

/// Whether a request goes to the audit log: it is for an `admin` route, which is every
/// route that changes state except publishing (too frequent to log one by one, and
/// recorded as events anyway).
pub fn audited(method: &Method, path: &str) -> bool {
    required_scope(method, path, false) == Some(Scope::Admin)
}

/// Whether a token of scope `granted` may use a route that needs `needed`.
pub fn grants(granted: Scope, needed: Scope) -> bool {
    granted == Scope::Admin || granted == needed
}

/// The token equal to `given`. Every token is compared, in constant time, whichever
/// matches, so the answer's timing does not tell which token was close, nor which matched.
pub fn find_token<'a>(tokens: &'a [ApiToken], given: &[u8]) -> Option<&'a ApiToken> {
    let mut found = Choice::from(0);
    let mut index = 0u32;
    for (i, token) in tokens.iter().enumerate() {
        let matched = Choice::from(u8::from(token.secret.matches(given)));
        index.conditional_assign(&(i as u32), matched);
        found |= matched;
    }
    bool::from(found).then(|| &tokens[index as usize])
}

/// The name and scope of `given` if it may sign in to the console: an `admin` token, or a
/// `read` token for a read-only console (a `publish` token may not). The one place that
/// decides who may sign in.
pub fn console_token(tokens: &[ApiToken], given: &[u8]) -> Option<(String, Scope)> {
    find_token(tokens, given)
        .filter(|t| matches!(t.scope, Scope::Admin | Scope::Read))
        .map(|t| (t.name.clone(), t.scope))
}

/// The decision for a request without a bearer token from a signed-in console: a live
/// session cookie, and for a change, the session's CSRF token; then the scope of the
/// token the session signed in with, as for that token. Audit lines name it
/// `console:<token>`. `None` when there is no such session.
fn console_decision(state: &AppState, request: &Request) -> Option<Decision> {
    let session = state
        .sessions
        .as_ref()?
        .find(request.headers(), crate::clock::now_ms())?;
    let safe = matches!(*request.method(), Method::GET | Method::HEAD);
    if !safe && !super::ui::session::csrf_ok(&session, request.headers()) {
        return None;
    }
    let name = format!("console:{}", session.token);
    let needed = required_scope(
        request.method(),
        request.uri().path(),
        state.metrics_require_token,
    );
    Some(match needed {
        Some(needed) if !grants(session.scope, needed) => Decision::Forbidden {
            token: name,
            needed,
        },
        _ => Decision::Allow(Some(name)),
    })
}

/// The decision for a request: `given` is the bearer token, if the request carried one.
/// With no token configured, everything is allowed (the API is open).
pub fn decide(
    tokens: &[ApiToken],
    given: Option<&[u8]>,
    method: &Method,
    path: &str,
    metrics_require_token: bool,
) -> Decision {
    if tokens.is_empty() {
        return Decision::Allow(None);
    }
    let Some(needed) = required_scope(method, path, metrics_require_token) else {
        return Decision::Allow(None);
    };
    match given.and_then(|given| find_token(tokens, given)) {
        None => Decision::Unauthorized,
        Some(token) if grants(token.scope, needed) => Decision::Allow(Some(token.name.clone())),
        Some(token) => Decision::Forbidden {
            token: token.name.clone(),
            needed,
        },
    }
}

/// Applies [`decide`]: lets the request through (logging it when [`audited`]), or answers
/// `401` (the same for a missing and a wrong token, with no hint which) or `403
/// insufficient_scope` naming the scope needed.
pub async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let given = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| bearer_token(v.as_bytes()));
    let mut decision = decide(
        &state.api_tokens,
        given,
        request.method(),
        request.uri().path(),
        state.metrics_require_token,
    );
    if decision == Decision::Unauthorized
        && given.is_none()
        && let Some(console) = console_decision(&state, &request)
    {
        decision = console;
    }
    match decision {
        Decision::Allow(token) => {
            if !audited(request.method(), request.uri().path()) {
                return next.run(request).await;
            }
            let (method, path) = (request.method().clone(), request.uri().path().to_owned());
            let response = next.run(request).await;
            tracing::info!(
                method = %method,
                path = %path,
                status = response.status().as_u16(),
                token = %token.as_deref().unwrap_or("(no token)"),
                "api change"
            );
            response
        }
        Decision::Unauthorized => {
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
        Decision::Forbidden { token, needed } => {
            tracing::warn!(
                method = %request.method(),
                path = %request.uri().path(),
                token = %token,
                needed = %needed.as_str(),
                "api request refused: the token lacks the scope"
            );
            forbidden(&token, needed, request.method(), request.uri().path())
        }
    }
}

/// The `403 insufficient_scope` answer.
fn forbidden(token: &str, needed: Scope, method: &Method, path: &str) -> Response {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "insufficient_scope",
        format!(
            "token `{token}` may not do this: {method} {path} needs a token with scope `{}`{}",
            needed.as_str(),
            if needed == Scope::Admin {
                ""
            } else {
                " or `admin`"
            }
        ),
    )
    .into_response()
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
    use crate::secret::Secret;

    fn token(name: &str, scope: Scope) -> ApiToken {
        ApiToken {
            name: name.into(),
            scope,
            secret: Secret::new(format!("{name}-secret")),
        }
    }

    fn tokens() -> Vec<ApiToken> {
        vec![
            token("producer", Scope::Publish),
            token("grafana", Scope::Read),
            token("ops", Scope::Admin),
        ]
    }

    fn decide_for(who: Option<&str>, method: Method, path: &str) -> Decision {
        let given = who.map(|w| format!("{w}-secret"));
        decide(
            &tokens(),
            given.as_deref().map(str::as_bytes),
            &method,
            path,
            true,
        )
    }

    #[test]
    fn routes_need_the_scope_of_what_they_do() {
        let scope = |m: Method, p: &str| required_scope(&m, p, false);
        assert_eq!(scope(Method::POST, "/v1/events"), Some(Scope::Publish));
        assert_eq!(
            scope(Method::POST, "/v1/events/batch"),
            Some(Scope::Publish)
        );
        for path in [
            "/v1/subscriptions",
            "/v1/subscriptions/a",
            "/v1/deliveries",
            "/v1/deliveries/msg_1",
            "/v1/dead-letters",
            "/v1/endpoints",
            "/v1/plugins",
            "/v1/stream",
        ] {
            assert_eq!(scope(Method::GET, path), Some(Scope::Read), "{path}");
        }
        for (method, path) in [
            (Method::POST, "/v1/subscriptions"),
            (Method::PATCH, "/v1/subscriptions/a"),
            (Method::DELETE, "/v1/subscriptions/a"),
            (Method::POST, "/v1/subscriptions/a/rotate-secret"),
            (Method::POST, "/v1/subscriptions/a/test"),
            (Method::POST, "/v1/deliveries/msg_1/retry"),
            (Method::POST, "/v1/dead-letters/replay"),
            (Method::PUT, "/v1/events"),
        ] {
            assert_eq!(
                scope(method.clone(), path),
                Some(Scope::Admin),
                "{method} {path}"
            );
        }
        assert_eq!(scope(Method::GET, "/healthz"), None);
        assert_eq!(scope(Method::GET, "/openapi.json"), None);
        assert_eq!(scope(Method::GET, "/metrics"), None);
        assert_eq!(
            required_scope(&Method::GET, "/metrics", true),
            Some(Scope::Read)
        );
    }

    #[test]
    fn every_change_but_publishing_is_audited() {
        assert!(audited(&Method::POST, "/v1/subscriptions"));
        assert!(audited(&Method::DELETE, "/v1/subscriptions/a"));
        assert!(audited(&Method::POST, "/v1/deliveries/msg_1/retry"));
        assert!(!audited(&Method::POST, "/v1/events"));
        assert!(!audited(&Method::GET, "/v1/subscriptions"));
        assert!(!audited(&Method::GET, "/healthz"));
    }

    #[test]
    fn admin_holds_every_scope_and_the_others_only_their_own() {
        for needed in [Scope::Publish, Scope::Read, Scope::Admin] {
            assert!(grants(Scope::Admin, needed));
        }
        assert!(grants(Scope::Publish, Scope::Publish));
        assert!(!grants(Scope::Publish, Scope::Read));
        assert!(!grants(Scope::Read, Scope::Publish));
        assert!(!grants(Scope::Read, Scope::Admin));
        assert!(!grants(Scope::Publish, Scope::Admin));
    }

    #[test]
    fn a_producer_publishes_and_nothing_else() {
        assert_eq!(
            decide_for(Some("producer"), Method::POST, "/v1/events"),
            Decision::Allow(Some("producer".into()))
        );
        assert_eq!(
            decide_for(Some("producer"), Method::GET, "/v1/subscriptions"),
            Decision::Forbidden {
                token: "producer".into(),
                needed: Scope::Read
            }
        );
        assert_eq!(
            decide_for(Some("producer"), Method::DELETE, "/v1/subscriptions/a"),
            Decision::Forbidden {
                token: "producer".into(),
                needed: Scope::Admin
            }
        );
    }

    #[test]
    fn a_dashboard_reads_and_nothing_else() {
        assert_eq!(
            decide_for(Some("grafana"), Method::GET, "/v1/deliveries"),
            Decision::Allow(Some("grafana".into()))
        );
        assert_eq!(
            decide_for(Some("grafana"), Method::GET, "/metrics"),
            Decision::Allow(Some("grafana".into()))
        );
        assert!(matches!(
            decide_for(Some("grafana"), Method::POST, "/v1/events"),
            Decision::Forbidden {
                needed: Scope::Publish,
                ..
            }
        ));
        assert!(matches!(
            decide_for(Some("grafana"), Method::POST, "/v1/dead-letters/replay"),
            Decision::Forbidden {
                needed: Scope::Admin,
                ..
            }
        ));
    }

    #[test]
    fn admin_does_everything() {
        for (method, path) in [
            (Method::POST, "/v1/events"),
            (Method::GET, "/v1/subscriptions"),
            (Method::DELETE, "/v1/subscriptions/a"),
        ] {
            assert_eq!(
                decide_for(Some("ops"), method, path),
                Decision::Allow(Some("ops".into()))
            );
        }
    }

    #[test]
    fn a_missing_or_unknown_token_is_unauthorized_and_open_paths_need_none() {
        assert_eq!(
            decide_for(None, Method::GET, "/v1/plugins"),
            Decision::Unauthorized
        );
        assert_eq!(
            decide_for(Some("stranger"), Method::POST, "/v1/events"),
            Decision::Unauthorized
        );
        assert_eq!(
            decide_for(None, Method::GET, "/healthz"),
            Decision::Allow(None)
        );
        assert_eq!(
            decide(&[], None, &Method::DELETE, "/v1/subscriptions/a", true),
            Decision::Allow(None),
            "no token configured: the API is open"
        );
    }

    #[test]
    fn the_matching_token_is_found_whichever_position_it_holds() {
        let tokens = tokens();
        for t in &tokens {
            let found = find_token(&tokens, t.secret.expose().as_bytes()).unwrap();
            assert_eq!(found.name, t.name);
        }
        assert!(find_token(&tokens, b"ops-secre").is_none());
        assert!(find_token(&[], b"x").is_none());
    }

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
