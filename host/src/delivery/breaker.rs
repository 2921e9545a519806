//! The per-endpoint circuit breaker, as a pure state machine: it opens after a run of
//! consecutive failures, lets one probe through after a cooldown, and closes when the probe
//! succeeds. The caller supplies the time.

use std::time::Duration;

use serde::Serialize;

/// When to open and how long to stay open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the circuit.
    pub failure_threshold: u32,
    /// How long it stays open before a probe.
    pub cooldown: Duration,
}

/// Where the circuit stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum BreakerState {
    /// Requests flow; counting consecutive failures.
    Closed {
        /// Failures in a row so far.
        consecutive_failures: u32,
    },
    /// Nothing is sent until `until_ms`.
    Open {
        /// When a probe may go, Unix ms.
        until_ms: i64,
    },
    /// One probe is in flight; everything else waits for its result.
    HalfOpen,
}

/// May a request go now?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Yes.
    Go,
    /// Yes, as the probe that decides whether the circuit closes.
    Probe,
    /// No; the circuit is open until at least this time (Unix ms).
    Refuse {
        /// When to try again.
        retry_at_ms: i64,
    },
}

/// A change worth telling an operator about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// A run of failures opened a closed circuit (a failed probe re-opening it is not a new
    /// outage).
    Opened {
        /// The failures in a row.
        failures: u32,
        /// When it lets a probe through.
        until_ms: i64,
    },
    /// A success closed an open or half-open circuit.
    Recovered,
}

/// One endpoint's breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    config: BreakerConfig,
    state: BreakerState,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            state: BreakerState::Closed {
                consecutive_failures: 0,
            },
        }
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Asks to send a request at `now_ms`.
    pub fn admit(&mut self, now_ms: i64) -> Admission {
        match self.state {
            BreakerState::Closed { .. } => Admission::Go,
            BreakerState::Open { until_ms } if now_ms >= until_ms => {
                self.state = BreakerState::HalfOpen;
                Admission::Probe
            }
            BreakerState::Open { until_ms } => Admission::Refuse {
                retry_at_ms: until_ms,
            },
            BreakerState::HalfOpen => Admission::Refuse {
                retry_at_ms: now_ms + self.cooldown_ms(),
            },
        }
    }

    /// Reports how a request that was let through ended; answers the transition it caused,
    /// if any.
    pub fn record(&mut self, success: bool, now_ms: i64) -> Option<Transition> {
        let before = self.state;
        self.state = match (self.state, success) {
            (_, true) => BreakerState::Closed {
                consecutive_failures: 0,
            },
            (
                BreakerState::Closed {
                    consecutive_failures,
                },
                false,
            ) => {
                let failures = consecutive_failures + 1;
                if failures >= self.config.failure_threshold {
                    BreakerState::Open {
                        until_ms: now_ms + self.cooldown_ms(),
                    }
                } else {
                    BreakerState::Closed {
                        consecutive_failures: failures,
                    }
                }
            }
            (BreakerState::HalfOpen, false) => BreakerState::Open {
                until_ms: now_ms + self.cooldown_ms(),
            },
            // A late failure from before the circuit opened changes nothing.
            (open @ BreakerState::Open { .. }, false) => open,
        };
        match (before, self.state) {
            (
                BreakerState::Closed {
                    consecutive_failures,
                },
                BreakerState::Open { until_ms },
            ) => Some(Transition::Opened {
                failures: consecutive_failures + 1,
                until_ms,
            }),
            (BreakerState::Open { .. } | BreakerState::HalfOpen, BreakerState::Closed { .. }) => {
                Some(Transition::Recovered)
            }
            _ => None,
        }
    }

    fn cooldown_ms(&self) -> i64 {
        self.config.cooldown.as_millis() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerConfig {
            failure_threshold: 3,
            cooldown: Duration::from_millis(1_000),
        })
    }

    #[test]
    fn transitions_are_reported_once_per_outage() {
        let mut b = breaker();
        assert_eq!(b.record(false, 0), None);
        assert_eq!(b.record(false, 0), None);
        assert_eq!(
            b.record(false, 10),
            Some(Transition::Opened {
                failures: 3,
                until_ms: 1_010
            })
        );
        assert_eq!(b.record(false, 20), None, "late failures while open");
        assert_eq!(b.admit(1_010), Admission::Probe);
        assert_eq!(
            b.record(false, 1_020),
            None,
            "a failed probe is the same outage"
        );
        assert_eq!(b.admit(2_020), Admission::Probe);
        assert_eq!(b.record(true, 2_030), Some(Transition::Recovered));
        assert_eq!(b.record(true, 2_040), None);
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let mut b = breaker();
        b.record(false, 0);
        b.record(false, 0);
        b.record(true, 0);
        b.record(false, 0);
        b.record(false, 0);
        assert_eq!(b.admit(0), Admission::Go, "a success resets the count");
        b.record(false, 10);
        assert_eq!(b.state(), BreakerState::Open { until_ms: 1_010 });
        assert_eq!(b.admit(500), Admission::Refuse { retry_at_ms: 1_010 });
    }

    #[test]
    fn probes_after_the_cooldown_and_closes_on_success() {
        let mut b = breaker();
        for _ in 0..3 {
            b.record(false, 0);
        }
        assert_eq!(b.admit(1_000), Admission::Probe);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(
            b.admit(1_001),
            Admission::Refuse { retry_at_ms: 2_001 },
            "one probe at a time"
        );
        b.record(true, 1_050);
        assert_eq!(b.admit(1_051), Admission::Go);
    }

    #[test]
    fn a_failed_probe_reopens() {
        let mut b = breaker();
        for _ in 0..3 {
            b.record(false, 0);
        }
        assert_eq!(b.admit(1_000), Admission::Probe);
        b.record(false, 1_200);
        assert_eq!(b.state(), BreakerState::Open { until_ms: 2_200 });
        assert_eq!(b.admit(2_199), Admission::Refuse { retry_at_ms: 2_200 });
        assert_eq!(b.admit(2_200), Admission::Probe);
    }

    #[test]
    fn late_results_while_open() {
        let mut b = breaker();
        for _ in 0..3 {
            b.record(false, 0);
        }
        b.record(false, 500);
        assert_eq!(
            b.state(),
            BreakerState::Open { until_ms: 1_000 },
            "late failure keeps the deadline"
        );
        b.record(true, 600);
        assert_eq!(
            b.admit(600),
            Admission::Go,
            "a late success shows the endpoint works"
        );
    }
}
