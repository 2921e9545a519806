//! The connection limits and the decisions made with them: how many connections, and when
//! a connection that is not serving a request is closed.

use std::time::{Duration, Instant};

use crate::config::ServerConfig;

/// The default connection cap when the open-file limit allows it.
const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Open files kept for everything but API connections: the store, the plugins folder
/// watch, outgoing deliveries, logs.
const RESERVED_FILES: u64 = 64;

/// Limits on the API's connections (`[server]`).
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Time to send a request head: from the connection's start for the first request,
    /// from its first byte for later ones.
    pub header_read_timeout: Duration,
    /// Time a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Time to send a request's whole body.
    pub body_read_timeout: Duration,
    /// Most connections at once.
    pub max_connections: usize,
}

impl ServeLimits {
    /// The limits `server` asks for, the connection cap checked against the process's
    /// open-file limit (`open_files`, the soft `RLIMIT_NOFILE`; `None` if unknown).
    pub fn new(server: &ServerConfig, open_files: Option<u64>) -> Result<Self, String> {
        Ok(Self {
            header_read_timeout: server.header_read_timeout.0,
            idle_timeout: server.idle_timeout.0,
            body_read_timeout: server.body_read_timeout.0,
            max_connections: max_connections(server.max_connections, open_files)?,
        })
    }
}

/// The connection cap: the configured one if it leaves room for the engine's other files,
/// else an error; by default 1,024 or half the open-file limit, whichever is lower (and
/// never into the files kept for the rest of the engine).
pub fn max_connections(
    configured: Option<usize>,
    open_files: Option<u64>,
) -> Result<usize, String> {
    let room = open_files.map(|limit| limit.saturating_sub(RESERVED_FILES));
    match (configured, room) {
        (Some(n), Some(room)) if n as u64 > room => Err(format!(
            "[server] max_connections = {n} does not fit under the open-file limit of {} (the engine keeps \
             {RESERVED_FILES} files for itself); lower it to at most {room}, or raise the limit (ulimit -n, \
             LimitNOFILE= in systemd)",
            open_files.unwrap_or_default()
        )),
        (Some(n), _) => Ok(n),
        (None, None) => Ok(DEFAULT_MAX_CONNECTIONS),
        (None, Some(room)) => {
            let half = open_files.unwrap_or_default() / 2;
            Ok(usize::try_from(half.min(room))
                .unwrap_or(usize::MAX)
                .clamp(1, DEFAULT_MAX_CONNECTIONS))
        }
    }
}

/// What a connection is doing, as far as its timeouts care.
#[derive(Debug, Clone)]
pub struct Activity {
    /// Requests dispatched whose answer is not fully written yet.
    pub in_flight: usize,
    /// When the head being read started: the connection's start for the first request,
    /// the first byte for a later one. `None` between requests.
    pub head_since: Option<Instant>,
    /// When the connection last became idle (its start, or the end of its last answer).
    pub idle_since: Instant,
}

impl Activity {
    /// A connection accepted at `now`: its first head is due within the header timeout.
    pub fn new(now: Instant) -> Self {
        Self {
            in_flight: 0,
            head_since: Some(now),
            idle_since: now,
        }
    }
}

/// Why a connection was closed by the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// The head did not arrive within `header_read_timeout`.
    HeaderTimeout,
    /// No next request within `idle_timeout`.
    Idle,
    /// Closed to make room for a new connection at the cap.
    Evicted,
}

impl Closed {
    /// For logs.
    pub fn reason(self) -> &'static str {
        match self {
            Self::HeaderTimeout => "request head not received within [server] header_read_timeout",
            Self::Idle => "idle for [server] idle_timeout",
            Self::Evicted => "closed the longest-idle connection at [server] max_connections",
        }
    }
}

/// When a connection doing `activity` is closed, and why; `None` while it serves a request
/// (the body-read timeout bounds that).
pub fn deadline(activity: &Activity, limits: &ServeLimits) -> Option<(Instant, Closed)> {
    if activity.in_flight > 0 {
        return None;
    }
    Some(match activity.head_since {
        Some(since) => (since + limits.header_read_timeout, Closed::HeaderTimeout),
        None => (activity.idle_since + limits.idle_timeout, Closed::Idle),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ServeLimits {
        ServeLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(60),
            max_connections: 8,
        }
    }

    #[test]
    fn the_connection_cap_stays_under_the_open_file_limit() {
        assert_eq!(max_connections(None, None), Ok(1024));
        assert_eq!(max_connections(None, Some(1 << 20)), Ok(1024));
        assert_eq!(max_connections(None, Some(1024)), Ok(512));
        assert_eq!(max_connections(None, Some(256)), Ok(128));
        assert_eq!(max_connections(None, Some(100)), Ok(36));
        assert_eq!(max_connections(None, Some(1)), Ok(1));
        assert_eq!(max_connections(Some(5000), None), Ok(5000));
        assert_eq!(max_connections(Some(192), Some(256)), Ok(192));
        let err = max_connections(Some(300), Some(256)).unwrap_err();
        assert!(err.contains("lower it to at most 192"), "{err}");
    }

    #[test]
    fn a_new_connection_must_send_its_head_within_the_header_timeout() {
        let t0 = Instant::now();
        let fresh = Activity::new(t0);
        assert_eq!(
            deadline(&fresh, &limits()),
            Some((t0 + Duration::from_secs(10), Closed::HeaderTimeout))
        );
    }

    #[test]
    fn an_idle_connection_waits_for_the_idle_timeout_then_the_head_has_its_own() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(3);
        let mut a = Activity::new(t0);
        a.in_flight = 1;
        a.head_since = None;
        assert_eq!(deadline(&a, &limits()), None, "serving a request");
        a.in_flight = 0;
        a.idle_since = t1;
        assert_eq!(
            deadline(&a, &limits()),
            Some((t1 + Duration::from_secs(60), Closed::Idle))
        );
        let t2 = t1 + Duration::from_secs(50);
        a.head_since = Some(t2);
        assert_eq!(
            deadline(&a, &limits()),
            Some((t2 + Duration::from_secs(10), Closed::HeaderTimeout))
        );
    }
}
