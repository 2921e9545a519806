//! Console sessions: sign-in with an admin token sets an `HttpOnly`, `SameSite=Strict`
//! cookie; every change the console makes carries the session's CSRF token in
//! `X-CSRF-Token`; sign-out ends the session. Sessions live in memory, keyed by the
//! SHA-256 of their cookie value.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderValue, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Scope;

/// The session cookie's name.
pub const COOKIE: &str = "wasmhook_session";

/// The header the console's script sends the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Most sessions at once; signing in beyond it ends the oldest.
const MAX_SESSIONS: usize = 1024;

/// A signed-in console.
#[derive(Debug, Clone)]
pub struct Session {
    /// Sent in pages (a `<meta>`), and expected back on every change.
    pub csrf: String,
    /// The name of the token it was signed in with, for the audit log.
    pub token: String,
    /// That token's scope: `admin`, or `read` for a read-only console.
    pub scope: Scope,
    expires_ms: i64,
}

#[cfg(test)]
impl Session {
    /// A session with this CSRF token, for page tests.
    pub fn for_test(csrf: &str) -> Self {
        Self {
            csrf: csrf.to_owned(),
            token: "test".to_owned(),
            scope: Scope::Admin,
            expires_ms: i64::MAX,
        }
    }
}

/// Every live session.
#[derive(Debug)]
pub struct Sessions {
    ttl: Duration,
    by_hash: Mutex<HashMap<[u8; 32], Session>>,
}

impl Sessions {
    /// No sessions; each lasts `ttl` after sign-in.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            by_hash: Mutex::new(HashMap::new()),
        }
    }

    /// Starts a session for the token named `token`, of `scope`; returns its cookie value.
    pub fn start(&self, token: &str, scope: Scope, now_ms: i64) -> String {
        let id = random_token();
        let session = Session {
            csrf: random_token(),
            token: token.to_owned(),
            scope,
            expires_ms: now_ms.saturating_add(self.ttl.as_millis() as i64),
        };
        let mut map = self.lock();
        map.retain(|_, s| s.expires_ms > now_ms);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.expires_ms)
                .map(|(k, _)| *k)
        {
            map.remove(&oldest);
        }
        map.insert(hash(&id), session);
        id
    }

    /// The session of the request's cookie, if it is live.
    pub fn find(&self, headers: &HeaderMap, now_ms: i64) -> Option<Session> {
        let id = cookie(headers, COOKIE)?;
        self.lock()
            .get(&hash(id))
            .filter(|s| s.expires_ms > now_ms)
            .cloned()
    }

    /// Ends the request's session.
    pub fn end(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers, COOKIE) {
            self.lock().remove(&hash(id));
        }
    }

    /// The `Set-Cookie` value for a new session.
    pub fn set_cookie(&self, id: &str) -> HeaderValue {
        let value = format!(
            "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
            self.ttl.as_secs()
        );
        HeaderValue::try_from(value).expect("the id is URL-safe base64")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.by_hash.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static("wasmhook_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// Whether the request carries `session`'s CSRF token, compared in constant time.
pub fn csrf_ok(session: &Session, headers: &HeaderMap) -> bool {
    headers
        .get(CSRF_HEADER)
        .is_some_and(|v| bool::from(v.as_bytes().ct_eq(session.csrf.as_bytes())))
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

fn hash(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, value.parse().unwrap());
        h
    }

    #[test]
    fn a_session_is_found_by_its_cookie_until_it_expires_or_ends() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let id = sessions.start("ops", Scope::Admin, 1_000);
        let headers = with_cookie(&format!("other=1; {COOKIE}={id}"));
        let session = sessions.find(&headers, 2_000).expect("live");
        assert!(sessions.find(&headers, 61_000).is_none(), "expired");
        assert!(
            sessions
                .find(&with_cookie(&format!("{COOKIE}=x{id}")), 2_000)
                .is_none()
        );
        assert!(sessions.find(&HeaderMap::new(), 2_000).is_none());
        let mut csrf = headers.clone();
        assert!(!csrf_ok(&session, &csrf));
        csrf.insert(CSRF_HEADER, session.csrf.parse().unwrap());
        assert!(csrf_ok(&session, &csrf));
        csrf.insert(CSRF_HEADER, "wrong".parse().unwrap());
        assert!(!csrf_ok(&session, &csrf));
        sessions.end(&headers);
        assert!(sessions.find(&headers, 2_000).is_none(), "signed out");
    }

    #[test]
    fn the_cookie_is_http_only_and_same_site_strict() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let value = sessions.set_cookie("abc");
        let value = value.to_str().unwrap();
        assert!(
            value.contains("HttpOnly") && value.contains("SameSite=Strict"),
            "{value}"
        );
        assert!(clear_cookie().to_str().unwrap().contains("Max-Age=0"));
    }
}
