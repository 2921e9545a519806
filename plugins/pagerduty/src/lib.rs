//! The PagerDuty adapter: turns an event into a PagerDuty Events API v2 `enqueue` body.
//!
//! The request goes to the subscription's URL; point it at
//! `https://events.pagerduty.com/v2/enqueue`. Its settings are declared in
//! [`PagerDutySettings`].

mod alert;

use wasmhook_adapter::{Action, Adapter, Context, Error, Event, Request};

wasmhook_adapter::settings! {
    /// What a subscription to PagerDuty can set.
    pub struct PagerDutySettings {
        /// The integration key of the PagerDuty service.
        #[secret]
        routing_key: String,
        /// Event-type patterns (`host.recovered`, `*.resolved`) that send `resolve`.
        resolve_on: Vec<String>,
        /// Event-type patterns that send `acknowledge`; every other event sends `trigger`.
        acknowledge_on: Vec<String>,
        /// Event-type patterns for which nothing is sent (recorded as skipped).
        skip_on: Vec<String>,
        /// Payload fields that identify the incident, so a trigger and its resolve share a
        /// `dedup_key`; by default the payload's `dedup_key` or `incident_id`, else the event id.
        dedup_fields: Vec<String>,
        /// The payload field holding the severity.
        severity_field: String = "severity",
        /// The severity when the payload has none PagerDuty knows: critical, error, warning,
        /// info, or a common word for one (crit, high, low, ...).
        default_severity: String = "warning",
        /// The affected system; by default the payload's `source`, `host` or `hostname`.
        source: Option<String>,
    }
}

struct PagerDuty;

impl Adapter for PagerDuty {
    type Settings = PagerDutySettings;

    fn transform(event: Event, settings: PagerDutySettings, _: Context) -> Result<Action, Error> {
        Ok(match alert::render(&event, &settings) {
            alert::Outcome::Send(body) => Action::deliver(Request::json(&body)),
            alert::Outcome::Skip(reason) => Action::skip(reason),
        })
    }
}

wasmhook_adapter::export_adapter!(PagerDuty);
