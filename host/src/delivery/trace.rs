//! The span of one delivery attempt (exported when `[telemetry]` is on): a child of the
//! event's ingest span through the `traceparent` stored with the event, and the outcome
//! it records.

use crate::store::{AttemptRecord, ClaimedDelivery, NextState};
use crate::telemetry;

/// The span for an attempt at `delivery`; `plugin` and `endpoint` are recorded by the
/// attempt once known, the rest by `record_outcome`.
pub fn attempt_span(delivery: &ClaimedDelivery) -> tracing::Span {
    let span = tracing::info_span!(
        telemetry::ATTEMPT_SPAN,
        otel.name = "delivery attempt",
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        event.id = delivery.event.id.as_str(),
        event.type = delivery.event.kind.as_str(),
        delivery.id = delivery.id.as_str(),
        subscription.id = delivery.subscription_id.as_str(),
        attempt = delivery.attempts + 1,
        plugin = tracing::field::Empty,
        endpoint = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        outcome = tracing::field::Empty,
        error = tracing::field::Empty,
    );
    telemetry::set_parent(&span, delivery.event.traceparent.as_deref());
    span
}

/// Records what the attempt came to on its span; a failure marks the span's status.
pub fn record_outcome(span: &tracing::Span, record: &AttemptRecord) {
    let outcome = outcome(record);
    span.record("outcome", outcome);
    if let Some(status) = record.status_code {
        span.record("http.response.status_code", status);
    }
    if let Some(error) = &record.error {
        span.record("error", error.as_str());
    }
    if outcome == "failed" {
        span.record("otel.status_code", "ERROR");
    }
}

/// `succeeded` or `failed` when the receiver was reached for, `skipped` (the adapter chose
/// not to send), `cancelled`, `waiting` (a
/// wait that spent no attempt: rate limit, disabled subscription, busy endpoint), or
/// `not_sent` (an adapter error or an open circuit).
pub fn outcome(record: &AttemptRecord) -> &'static str {
    let waited = record
        .error
        .as_deref()
        .is_some_and(|e| e.starts_with("waiting"));
    match (record.receiver, &record.next) {
        (Some(true), _) => "succeeded",
        (Some(false), _) => "failed",
        (None, NextState::Cancelled) => "cancelled",
        (None, NextState::Skipped) => "skipped",
        (None, NextState::WaitUntil(_)) if waited => "waiting",
        (None, _) => "not_sent",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(receiver: Option<bool>, next: NextState, error: Option<&str>) -> AttemptRecord {
        AttemptRecord {
            delivery_id: "msg_1".into(),
            subscription_id: "s".into(),
            receiver,
            attempt: 1,
            started_at_ms: 0,
            latency_us: 0,
            status_code: None,
            error: error.map(str::to_owned),
            response_body: None,
            plugin_version: None,
            next,
            parked_on: None,
        }
    }

    #[test]
    fn each_ending_has_its_outcome() {
        assert_eq!(
            outcome(&record(Some(true), NextState::Delivered, None)),
            "succeeded"
        );
        assert_eq!(
            outcome(&record(
                Some(false),
                NextState::RetryAt(5),
                Some("the receiver answered HTTP 500")
            )),
            "failed"
        );
        assert_eq!(outcome(&record(None, NextState::Skipped, None)), "skipped");
        assert_eq!(
            outcome(&record(None, NextState::Cancelled, Some("cancelled: …"))),
            "cancelled"
        );
        assert_eq!(
            outcome(&record(
                None,
                NextState::WaitUntil(5),
                Some("waiting: subscription `s` is disabled")
            )),
            "waiting"
        );
        assert_eq!(
            outcome(&record(
                None,
                NextState::RetryAt(5),
                Some("the adapter failed")
            )),
            "not_sent"
        );
        assert_eq!(
            outcome(&record(
                None,
                NextState::DeadLetter,
                Some("not sent: the circuit …")
            )),
            "not_sent"
        );
    }
}
