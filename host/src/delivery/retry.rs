//! The retry policy: what to do after an attempt. Pure functions of their inputs; the
//! worker supplies the randomness so that tests can pin it.

use std::time::Duration;

/// How an attempt ended, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    /// The receiver answered.
    Response {
        /// HTTP status code.
        status: u16,
        /// The receiver's `Retry-After`, already parsed.
        retry_after: Option<Duration>,
    },
    /// Connecting, sending or reading failed (refused, reset, TLS, DNS, blocked address).
    NetworkError,
    /// No response within the subscription's timeout.
    Timeout,
    /// The adapter returned an error or faulted; nothing was sent.
    AdapterFailed,
    /// The endpoint's circuit is open; nothing was sent. It may probe again in this long.
    CircuitOpen {
        /// Time until the circuit lets a probe through.
        reopens_in: Duration,
    },
}

/// What happens to the delivery next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The receiver accepted it (2xx).
    Delivered,
    /// Try again after this long.
    Retry(Duration),
    /// Give up: the delivery becomes a dead letter.
    DeadLetter {
        /// The receiver answered `410 Gone`: disable the subscription too.
        disable_subscription: bool,
    },
}

/// The longest `Retry-After` a receiver can impose.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(3600);

/// A subscription's retry settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy<'a> {
    /// Waits before the 2nd, 3rd, … attempt; the last entry repeats.
    pub schedule: &'a [Duration],
    /// Attempts before giving up, counting the first.
    pub max_attempts: u32,
    /// The longest `Retry-After` that is obeyed; longer ones are cut to this.
    pub retry_after_cap: Duration,
}

impl<'a> RetryPolicy<'a> {
    /// The policy of `sub`, with the engine-wide `Retry-After` cap.
    pub fn of(sub: &'a crate::subscription::Subscription) -> Self {
        Self {
            schedule: &sub.retry_schedule,
            max_attempts: sub.max_attempts,
            retry_after_cap: RETRY_AFTER_CAP,
        }
    }

    /// Decides after attempt number `attempt` (1-based) ended with `result`. `jitter` is a
    /// uniform random number in `[0, 1)`: the wait is "full jitter", uniform in
    /// `[0, schedule step]`, so that a burst of failures does not retry in lockstep.
    pub fn decide(&self, attempt: u32, result: AttemptResult, jitter: f64) -> Verdict {
        // A floor under the jittered wait: the receiver's Retry-After, or the circuit's
        // cooldown.
        let floor = match result {
            AttemptResult::Response { status, .. } if (200..300).contains(&status) => {
                return Verdict::Delivered;
            }
            AttemptResult::Response {
                status,
                retry_after,
            } => {
                if !is_retryable_status(status) {
                    return Verdict::DeadLetter {
                        disable_subscription: status == 410,
                    };
                }
                retry_after.map(|d| d.min(self.retry_after_cap))
            }
            AttemptResult::CircuitOpen { reopens_in } => Some(reopens_in),
            AttemptResult::NetworkError | AttemptResult::Timeout | AttemptResult::AdapterFailed => {
                None
            }
        };
        if attempt >= self.max_attempts {
            return Verdict::DeadLetter {
                disable_subscription: false,
            };
        }
        let step = self
            .schedule
            .get((attempt as usize).saturating_sub(1))
            .or(self.schedule.last())
            .copied()
            .unwrap_or_default();
        let jittered = step.mul_f64(jitter.clamp(0.0, 1.0));
        Verdict::Retry(jittered.max(floor.unwrap_or_default()))
    }
}

/// Network errors, timeouts, 408, 425, 429, 5xx and redirects (which are never followed)
/// are worth retrying; any other 4xx will fail the same way again.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 425 | 429) || !(400..500).contains(&status)
}

/// Parses `Retry-After`: delay-seconds, or an HTTP date relative to `now`, in any of the
/// three forms RFC 9110 makes recipients accept (IMF-fixdate, RFC 850, asctime).
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{SystemTime, UNIX_EPOCH};

    const SCHEDULE: &[Duration] = &[Duration::from_secs(5), Duration::from_secs(300)];

    fn policy() -> RetryPolicy<'static> {
        RetryPolicy {
            schedule: SCHEDULE,
            max_attempts: 4,
            retry_after_cap: Duration::from_secs(3600),
        }
    }

    fn status(status: u16) -> AttemptResult {
        AttemptResult::Response {
            status,
            retry_after: None,
        }
    }

    #[test]
    fn success_is_delivered_whatever_the_attempt() {
        assert_eq!(policy().decide(1, status(200), 0.5), Verdict::Delivered);
        assert_eq!(policy().decide(4, status(204), 0.5), Verdict::Delivered);
    }

    #[test]
    fn retryable_outcomes_follow_the_schedule_with_full_jitter() {
        let p = policy();
        for result in [
            status(500),
            status(503),
            status(408),
            status(425),
            status(429),
            status(302),
            AttemptResult::NetworkError,
            AttemptResult::Timeout,
            AttemptResult::AdapterFailed,
        ] {
            assert_eq!(
                p.decide(1, result, 1.0),
                Verdict::Retry(Duration::from_secs(5)),
                "{result:?}"
            );
        }
        assert_eq!(
            p.decide(1, status(500), 0.0),
            Verdict::Retry(Duration::ZERO)
        );
        assert_eq!(
            p.decide(2, status(500), 0.5),
            Verdict::Retry(Duration::from_secs(150))
        );
        // Past the end of the schedule, the last step repeats.
        assert_eq!(
            p.decide(3, status(500), 1.0),
            Verdict::Retry(Duration::from_secs(300))
        );
    }

    #[test]
    fn the_last_attempt_dead_letters() {
        let dead = Verdict::DeadLetter {
            disable_subscription: false,
        };
        assert_eq!(policy().decide(4, status(500), 0.5), dead);
        assert_eq!(policy().decide(4, AttemptResult::Timeout, 0.5), dead);
    }

    #[test]
    fn other_client_errors_dead_letter_at_once_and_410_disables() {
        for s in [400, 401, 403, 404, 413, 422] {
            assert_eq!(
                policy().decide(1, status(s), 0.5),
                Verdict::DeadLetter {
                    disable_subscription: false
                },
                "{s}"
            );
        }
        assert_eq!(
            policy().decide(1, status(410), 0.5),
            Verdict::DeadLetter {
                disable_subscription: true
            }
        );
    }

    #[test]
    fn retry_after_is_a_floor_within_the_cap() {
        let p = policy();
        let after = |secs| AttemptResult::Response {
            status: 503,
            retry_after: Some(Duration::from_secs(secs)),
        };
        assert_eq!(
            p.decide(1, after(60), 0.1),
            Verdict::Retry(Duration::from_secs(60))
        );
        assert_eq!(
            p.decide(1, after(1), 1.0),
            Verdict::Retry(Duration::from_secs(5))
        );
        assert_eq!(
            p.decide(1, after(86_400), 0.1),
            Verdict::Retry(Duration::from_secs(3600))
        );
    }

    #[test]
    fn an_open_circuit_is_a_failed_attempt_that_waits_for_the_probe() {
        let open = AttemptResult::CircuitOpen {
            reopens_in: Duration::from_secs(30),
        };
        assert_eq!(
            policy().decide(1, open, 0.5),
            Verdict::Retry(Duration::from_secs(30))
        );
        assert_eq!(
            policy().decide(2, open, 1.0),
            Verdict::Retry(Duration::from_secs(300))
        );
        assert_eq!(
            policy().decide(4, open, 0.5),
            Verdict::DeadLetter {
                disable_subscription: false
            }
        );
    }

    #[test]
    fn retry_after_forms() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:37 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:40:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", SystemTime::now()), None);
        // The two obsolete forms RFC 9110 still asks recipients to accept.
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:50:37 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Sun Nov  6 08:50:37 1994", now),
            Some(Duration::from_secs(60))
        );
    }
}
