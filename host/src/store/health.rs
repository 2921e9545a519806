//! Subscription health: what each backend keeps per subscription (the last attempt, the run
//! of failures, hourly counts) and how a batch of attempt records changes it. Pure: the
//! backends apply the deltas in the same transaction as the records.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use super::AttemptRecord;
use crate::clock::rfc3339;

/// Milliseconds in an hour: the width of a count bucket.
pub const HOUR_MS: i64 = 3_600_000;

/// How one batch changes one subscription's health. Only attempts that reached for the
/// receiver count (`AttemptRecord::receiver`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthDelta {
    /// The subscription.
    pub subscription_id: String,
    /// When the batch's last counted attempt ended, Unix ms.
    pub last_attempt_at: i64,
    /// Whether it succeeded.
    pub last_success: bool,
    /// Its HTTP status, if the receiver answered.
    pub last_status: Option<u16>,
    /// Its error, if it failed.
    pub last_error: Option<String>,
    /// When the batch's last success ended, if it had one: the run of failures restarts.
    pub last_success_at: Option<i64>,
    /// Failures after the batch's last success (or in the whole batch, without one).
    pub trailing_failures: u32,
    /// When the first of those failures ended.
    pub first_trailing_failure_at: Option<i64>,
    /// (hour bucket, succeeded, failed) counts.
    pub buckets: Vec<(i64, u32, u32)>,
}

/// Folds a batch of records into one delta per subscription, in record order.
pub fn fold(records: &[AttemptRecord]) -> Vec<HealthDelta> {
    let mut by_sub: BTreeMap<&str, HealthDelta> = BTreeMap::new();
    for r in records {
        let Some(success) = r.receiver else {
            continue;
        };
        let at = r.started_at_ms + (r.latency_us / 1000) as i64;
        let d = by_sub
            .entry(r.subscription_id.as_str())
            .or_insert_with(|| HealthDelta {
                subscription_id: r.subscription_id.clone(),
                last_attempt_at: at,
                last_success: success,
                last_status: None,
                last_error: None,
                last_success_at: None,
                trailing_failures: 0,
                first_trailing_failure_at: None,
                buckets: Vec::new(),
            });
        d.last_attempt_at = at;
        d.last_success = success;
        d.last_status = r.status_code;
        d.last_error = if success { None } else { r.error.clone() };
        if success {
            d.last_success_at = Some(at);
            d.trailing_failures = 0;
            d.first_trailing_failure_at = None;
        } else {
            d.trailing_failures += 1;
            d.first_trailing_failure_at.get_or_insert(at);
        }
        let hour = at.div_euclid(HOUR_MS);
        match d.buckets.iter_mut().find(|(h, _, _)| *h == hour) {
            Some(bucket) if success => bucket.1 += 1,
            Some(bucket) => bucket.2 += 1,
            None => d
                .buckets
                .push((hour, u32::from(success), u32::from(!success))),
        }
    }
    by_sub.into_values().collect()
}

/// A subscription's health as stored: the latest attempt and the current run of failures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredHealth {
    /// When the last attempt that reached for the receiver ended, Unix ms.
    pub last_attempt_at: Option<i64>,
    /// Whether it succeeded.
    pub last_success: Option<bool>,
    /// Its HTTP status.
    pub last_status: Option<u16>,
    /// Its error.
    pub last_error: Option<String>,
    /// The last success, Unix ms.
    pub last_success_at: Option<i64>,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// When the first of those ended, Unix ms.
    pub failing_since: Option<i64>,
    /// (hour bucket, succeeded, failed) for the last 25 hours.
    pub buckets: Vec<(i64, u32, u32)>,
}

/// What `GET /v1/subscriptions` shows of a subscription's health.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct SubscriptionHealth {
    /// When the last attempt that reached for the receiver ended, RFC 3339.
    #[schema(format = DateTime)]
    pub last_attempt_at: Option<String>,
    /// `succeeded` or `failed`; absent before the first attempt.
    #[schema(value_type = Option<String>, pattern = "^(succeeded|failed)$")]
    pub last_result: Option<&'static str>,
    /// The last HTTP status received.
    pub last_status: Option<u16>,
    /// The last failure's error.
    pub last_error: Option<String>,
    /// The last success, RFC 3339.
    #[schema(format = DateTime)]
    pub last_success_at: Option<String>,
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    /// When the current run of failures began, RFC 3339.
    #[schema(format = DateTime)]
    pub failing_since: Option<String>,
    /// Share of attempts that succeeded over about the last hour (0 to 1); absent with no
    /// attempts. Counted in hourly buckets, the older one weighted by its overlap.
    pub success_rate_1h: Option<f64>,
    /// The same over about the last day.
    pub success_rate_24h: Option<f64>,
    /// Attempts over about the last day.
    pub attempts_24h: u64,
}

impl StoredHealth {
    /// The API's view at `now_ms`.
    pub fn view(&self, now_ms: i64) -> SubscriptionHealth {
        let (ok_1h, all_1h) = window(&self.buckets, now_ms, 1);
        let (ok_24h, all_24h) = window(&self.buckets, now_ms, 24);
        let rate = |ok: f64, all: f64| (all >= 0.5).then(|| (ok / all).clamp(0.0, 1.0));
        SubscriptionHealth {
            last_attempt_at: self.last_attempt_at.map(rfc3339),
            last_result: self
                .last_success
                .map(|ok| if ok { "succeeded" } else { "failed" }),
            last_status: self.last_status,
            last_error: self.last_error.clone(),
            last_success_at: self.last_success_at.map(rfc3339),
            consecutive_failures: self.consecutive_failures,
            failing_since: self.failing_since.map(rfc3339),
            success_rate_1h: rate(ok_1h, all_1h),
            success_rate_24h: rate(ok_24h, all_24h),
            attempts_24h: all_24h.round() as u64,
        }
    }
}

/// (succeeded, all) over the last `hours` hours: the whole buckets inside the window, and
/// the bucket the window starts in weighted by how much of it is inside.
fn window(buckets: &[(i64, u32, u32)], now_ms: i64, hours: i64) -> (f64, f64) {
    let current = now_ms.div_euclid(HOUR_MS);
    let into_current = now_ms.rem_euclid(HOUR_MS) as f64 / HOUR_MS as f64;
    let oldest = current - hours;
    buckets
        .iter()
        .filter(|(h, _, _)| *h >= oldest && *h <= current)
        .fold((0.0, 0.0), |(ok, all), &(h, s, f)| {
            let weight = if h == oldest { 1.0 - into_current } else { 1.0 };
            (ok + weight * f64::from(s), all + weight * f64::from(s + f))
        })
}

/// When a subscription that keeps failing is disabled (`[delivery] disable_after` and
/// `disable_after_failures`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisablePolicy {
    /// Every attempt failed for at least this long, Unix ms; 0 turns the policy off.
    pub after_ms: i64,
    /// And there were at least this many failed attempts in a row.
    pub min_failures: u32,
}

impl DisablePolicy {
    /// The reason to disable a subscription with this health at `now_ms`, if any.
    pub fn verdict(&self, health: &StoredHealth, now_ms: i64) -> Option<String> {
        let since = health.failing_since?;
        if self.after_ms <= 0
            || health.consecutive_failures < self.min_failures
            || now_ms - since < self.after_ms
        {
            return None;
        }
        Some(format!(
            "every attempt failed since {} ({} in a row, the last: {})",
            rfc3339(since),
            health.consecutive_failures,
            health.last_error.as_deref().unwrap_or("no answer")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NextState;

    fn record(sub: &str, at: i64, ok: Option<bool>, status: Option<u16>) -> AttemptRecord {
        AttemptRecord {
            delivery_id: format!("msg_{at}"),
            subscription_id: sub.into(),
            receiver: ok,
            attempt: 1,
            started_at_ms: at,
            latency_us: 0,
            status_code: status,
            error: (ok == Some(false)).then(|| "the receiver answered HTTP 503".into()),
            response_body: None,
            plugin_version: None,
            next: NextState::Delivered,
            parked_on: None,
        }
    }

    #[test]
    fn a_batch_folds_into_one_delta_per_subscription() {
        let h = HOUR_MS;
        let deltas = fold(&[
            record("a", h - 10, Some(false), Some(503)),
            record("b", h - 5, None, None),
            record("a", h + 10, Some(true), Some(200)),
            record("a", h + 20, Some(false), Some(500)),
            record("a", h + 30, Some(false), None),
        ]);
        assert_eq!(deltas.len(), 1, "b tried nothing");
        let a = &deltas[0];
        assert_eq!(a.last_attempt_at, h + 30);
        assert!(!a.last_success);
        assert_eq!(a.last_success_at, Some(h + 10));
        assert_eq!(
            (a.trailing_failures, a.first_trailing_failure_at),
            (2, Some(h + 20))
        );
        assert_eq!(a.buckets, vec![(0, 0, 1), (1, 1, 2)]);
    }

    #[test]
    fn rates_weigh_the_oldest_bucket_by_its_overlap() {
        let now = 10 * HOUR_MS + HOUR_MS / 4;
        let health = StoredHealth {
            buckets: vec![(9, 4, 4), (10, 2, 0), (-20, 100, 0)],
            ..Default::default()
        };
        let view = health.view(now);
        // Last hour: all of bucket 10 (2 ok) and 3/4 of bucket 9 (3 ok, 3 failed).
        assert_eq!(view.success_rate_1h, Some(5.0 / 8.0));
        assert_eq!(view.attempts_24h, 10, "bucket -20 is more than a day old");
        assert_eq!(StoredHealth::default().view(now).success_rate_1h, None);
    }

    #[test]
    fn disable_needs_both_the_time_and_the_count() {
        let policy = DisablePolicy {
            after_ms: 1_000,
            min_failures: 3,
        };
        let failing = |since, n| StoredHealth {
            failing_since: Some(since),
            consecutive_failures: n,
            ..Default::default()
        };
        assert!(
            policy.verdict(&failing(0, 3), 999).is_none(),
            "not long enough"
        );
        assert!(
            policy.verdict(&failing(0, 2), 5_000).is_none(),
            "too few failures"
        );
        assert!(policy.verdict(&failing(0, 3), 1_000).is_some());
        assert!(policy.verdict(&StoredHealth::default(), 5_000).is_none());
        let off = DisablePolicy {
            after_ms: 0,
            min_failures: 0,
        };
        assert!(off.verdict(&failing(0, 100), 1 << 40).is_none());
    }
}
