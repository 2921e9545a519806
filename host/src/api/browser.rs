//! Defences against web pages. A page open in an operator's browser can send requests to
//! the API (on loopback, too) without reading the answers: a CORS-"simple" `text/plain`
//! POST needs no preflight, and DNS rebinding points a page's own host name at 127.0.0.1.
//! So, for every request:
//!
//! - a state-changing request (`POST`, `PUT`, `PATCH`, `DELETE`) whose `Origin` is not the
//!   engine's own origin (nor one of `[server] allowed_origins`) gets `403 cross_origin`;
//!   a same-origin page (the `/ui` console) passes;
//! - a request with a body must say `Content-Type: application/json` (`415
//!   unsupported_media_type`), which a simple cross-site request cannot;
//! - with no token configured, only loopback host names are answered (`403
//!   host_not_allowed`), which stops DNS rebinding; the listener is on loopback anyway
//!   (`ServerConfig::check_listen`).

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, header};

use super::{ApiError, AppState};
use crate::config::ServerConfig;

/// What the checks need from the config.
#[derive(Debug, Clone)]
pub struct BrowserPolicy {
    /// No token is configured: the API is open to whoever can reach it, so only loopback
    /// host names are answered.
    open: bool,
    /// Origins besides the engine's own whose pages may change state, normalised
    /// (`https://hooks.example.com:443`).
    allowed_origins: Vec<String>,
}

impl BrowserPolicy {
    /// The policy for `server`; an entry of `allowed_origins` that is not an origin is an
    /// error naming it.
    pub fn new(server: &ServerConfig) -> Result<Self, String> {
        let allowed_origins = server
            .allowed_origins
            .iter()
            .map(|o| match parse_origin(o) {
                Some((scheme, host, port)) => Ok(format!("{scheme}://{host}:{port}")),
                None => Err(format!(
                    "[server] allowed_origins: `{o}` is not an origin; write it like `https://hooks.example.com`"
                )),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            open: server.is_open(),
            allowed_origins,
        })
    }
}

/// The middleware: refuses a request that one of the checks above refuses.
pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match check(&state.browser, request.method(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

fn check(policy: &BrowserPolicy, method: &Method, headers: &HeaderMap) -> Result<(), ApiError> {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if policy.open && !host.is_some_and(loopback_host) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "host_not_allowed",
            format!(
                "with no [server] api_token the API answers only requests addressed to a loopback name \
                 (localhost, 127.0.0.1, [::1]), not `{}`; set [server] api_token to serve other names",
                host.unwrap_or("(no Host header)")
            ),
        ));
    }
    if changes_state(method) {
        let origin = headers
            .get(header::ORIGIN)
            .map(|v| v.to_str().unwrap_or("null"));
        if let Some(origin) = origin
            && !origin_allowed(origin, host, &policy.allowed_origins)
        {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "cross_origin",
                format!(
                    "a page from `{origin}` may not change anything here; only the engine's own \
                     origin and [server] allowed_origins may"
                ),
            ));
        }
    }
    if has_body(headers)
        && !headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| json_media_type(v.as_bytes()))
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be JSON, sent with `Content-Type: application/json`",
        ));
    }
    Ok(())
}

/// Methods that can change state; browsers send `Origin` with each of them.
fn changes_state(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Whether the request carries a body: a non-zero `Content-Length`, or chunked.
fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

/// `application/json` or `application/<something>+json`, any case, with any parameters
/// (`; charset=utf-8`).
fn json_media_type(value: &[u8]) -> bool {
    let Ok(value) = std::str::from_utf8(value) else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.strip_prefix("application/") {
        Some(subtype) => {
            subtype == "json" || (subtype.ends_with("+json") && subtype.len() > "+json".len())
        }
        None => false,
    }
}

/// Whether a page from `origin` may change state on a server reached as `host`: the same
/// scheme-less authority (a `Host` without a port takes the origin's default port), or an
/// allowed origin. `null` (sandboxed frames, `file:` pages) is never allowed.
fn origin_allowed(origin: &str, host: Option<&str>, allowed: &[String]) -> bool {
    let Some((scheme, origin_host, origin_port)) = parse_origin(origin) else {
        return false;
    };
    if allowed
        .iter()
        .any(|a| *a == format!("{scheme}://{origin_host}:{origin_port}"))
    {
        return true;
    }
    let Some((host, port)) = host.and_then(split_host_port) else {
        return false;
    };
    host.eq_ignore_ascii_case(&origin_host) && port.unwrap_or(default_port(scheme)) == origin_port
}

/// `scheme://host[:port]` as (scheme, lower-case host, port with the scheme's default).
fn parse_origin(origin: &str) -> Option<(&'static str, String, u16)> {
    let (scheme, rest) = origin.split_once("://")?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => "http",
        "https" => "https",
        _ => return None,
    };
    let (host, port) = split_host_port(rest)?;
    Some((
        scheme,
        host.to_ascii_lowercase(),
        port.unwrap_or(default_port(scheme)),
    ))
}

fn default_port(scheme: &str) -> u16 {
    if scheme == "https" { 443 } else { 80 }
}

/// Splits `host[:port]` or `[v6]:port`; `None` when it is not an authority of that form.
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if authority.is_empty() || authority.contains(['/', '@', '?', '#', ' ']) {
        return None;
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?),
        };
        (&authority[..v6.len() + 2], port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok()?),
        None => None,
    };
    (!host.is_empty()).then_some((host, port))
}

/// Whether a `Host` header names this machine's loopback: `localhost` and its subdomains
/// (RFC 6761; browsers resolve them to loopback themselves), `127.0.0.0/8`, `[::1]`.
fn loopback_host(host: &str) -> bool {
    let Some((name, _)) = split_host_port(host) else {
        return false;
    };
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    let literal = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(&name);
    literal
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(open: bool) -> BrowserPolicy {
        BrowserPolicy {
            open,
            allowed_origins: vec!["https://hooks.example.com:443".into()],
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn allowed_origins_must_be_origins() {
        let server = |origins: &[&str]| ServerConfig {
            allowed_origins: origins.iter().map(|o| o.to_string()).collect(),
            ..ServerConfig::default()
        };
        let policy = BrowserPolicy::new(&server(&["https://Hooks.Example.com"])).unwrap();
        assert_eq!(policy.allowed_origins, ["https://hooks.example.com:443"]);
        assert!(policy.open);
        for bad in [
            "hooks.example.com",
            "https://hooks.example.com/ui",
            "ftp://x",
            "null",
        ] {
            let err = BrowserPolicy::new(&server(&[bad])).unwrap_err();
            assert!(err.contains(&format!("`{bad}` is not an origin")), "{err}");
        }
    }

    #[test]
    fn only_loopback_names_are_loopback_hosts() {
        for host in [
            "localhost",
            "localhost:8080",
            "LOCALHOST.",
            "ui.localhost:3000",
            "127.0.0.1",
            "127.0.0.1:8080",
            "127.1.2.3:1",
            "[::1]",
            "[::1]:8080",
            "[::ffff:127.0.0.1]:80",
        ] {
            assert!(loopback_host(host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "10.0.0.1:8080",
            "0.0.0.0:8080",
            "[::]:8080",
            "[fe80::1]",
            "",
            "localhost:notaport",
            "user@localhost",
        ] {
            assert!(!loopback_host(host), "{host}");
        }
    }

    #[test]
    fn only_the_same_origin_or_an_allowed_one_may_change_state() {
        let allowed = policy(false).allowed_origins;
        for (origin, host) in [
            ("http://127.0.0.1:8080", Some("127.0.0.1:8080")),
            ("http://localhost:8080", Some("LocalHost:8080")),
            ("https://hooks.example.com", Some("hooks.example.com")),
            ("http://hooks.internal", Some("hooks.internal:80")),
            ("http://[::1]:8080", Some("[::1]:8080")),
            // Behind a proxy that rewrites Host: allowed by configuration.
            ("https://hooks.example.com", Some("127.0.0.1:8080")),
        ] {
            assert!(origin_allowed(origin, host, &allowed), "{origin} {host:?}");
        }
        for (origin, host) in [
            ("http://evil.example", Some("127.0.0.1:8080")),
            ("http://127.0.0.1:9999", Some("127.0.0.1:8080")),
            ("https://127.0.0.1:8080", Some("127.0.0.1")),
            ("null", Some("127.0.0.1:8080")),
            ("file://", Some("127.0.0.1:8080")),
            ("http://127.0.0.1:8080", None),
            ("https://hooks.example.com:8443", Some("127.0.0.1:8080")),
        ] {
            assert!(!origin_allowed(origin, host, &allowed), "{origin} {host:?}");
        }
    }

    #[test]
    fn json_media_types_are_recognised() {
        for ct in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/merge-patch+json",
        ] {
            assert!(json_media_type(ct.as_bytes()), "{ct}");
        }
        for ct in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonp",
            "application/+json",
            "text/json",
            "",
        ] {
            assert!(!json_media_type(ct.as_bytes()), "{ct}");
        }
    }

    #[test]
    fn the_checks_refuse_cross_site_requests_with_stable_codes() {
        let post = Method::POST;
        let code = |p: &BrowserPolicy, m: &Method, h: &[(&'static str, &str)]| {
            check(p, m, &headers(h))
                .err()
                .map(|e| (e.status.as_u16(), e.code))
        };
        let open = policy(true);
        // The attack from the report: a text/plain cross-site POST.
        let attack = [
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example"),
            ("content-type", "text/plain"),
            ("content-length", "30"),
        ];
        assert_eq!(code(&open, &post, &attack), Some((403, "cross_origin")));
        // Without an Origin, the content type still has to be JSON.
        assert_eq!(
            code(
                &open,
                &post,
                &attack[2..]
                    .iter()
                    .chain(&attack[..1])
                    .copied()
                    .collect::<Vec<_>>()
            ),
            Some((415, "unsupported_media_type"))
        );
        // DNS rebinding: the page's own name, pointed at 127.0.0.1; even a GET.
        let rebound = [("host", "evil.example:8080")];
        assert_eq!(
            code(&open, &Method::GET, &rebound),
            Some((403, "host_not_allowed"))
        );
        assert_eq!(
            code(&open, &Method::GET, &[]),
            Some((403, "host_not_allowed"))
        );
        // With a token, any name may be used.
        assert_eq!(code(&policy(false), &Method::GET, &rebound), None);
        // A JSON POST from a tool (no Origin), or from the engine's own page.
        let json = [
            ("host", "localhost:8080"),
            ("content-type", "application/json"),
            ("content-length", "2"),
        ];
        assert_eq!(code(&open, &post, &json), None);
        let mut same = json.to_vec();
        same.push(("origin", "http://localhost:8080"));
        assert_eq!(code(&open, &post, &same), None);
        // A bodiless POST needs no content type; a cross-site GET is not refused (the page
        // cannot read the answer: there is no CORS).
        assert_eq!(
            code(
                &open,
                &post,
                &[("host", "localhost"), ("content-length", "0")]
            ),
            None
        );
        let read = [("host", "localhost"), ("origin", "http://evil.example")];
        assert_eq!(code(&open, &Method::GET, &read), None);
        assert_eq!(
            code(&open, &Method::DELETE, &read),
            Some((403, "cross_origin"))
        );
    }
}
