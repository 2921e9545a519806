//! The PagerDuty adapter: turns an event into a PagerDuty Events API v2 `enqueue` body.
//!
//! The request goes to the subscription's URL; point it at
//! `https://events.pagerduty.com/v2/enqueue`. Settings:
//! - `routing_key` (required): the integration key of the PagerDuty service.
//! - `resolve_on`, `acknowledge_on`: comma-separated event-type patterns (`host.recovered`,
//!   `*.resolved`) that send `resolve` or `acknowledge`; every other event sends `trigger`.
//! - `dedup_fields`: comma-separated payload fields that identify the incident, so a trigger
//!   and its resolve share a `dedup_key`. Defaults to `dedup_key`, then `incident_id`, then
//!   the event id.
//! - `severity_field` (default `severity`) and `default_severity` (default `warning`).
//! - `source`: the affected system; defaults to the payload's `source`, `host` or `hostname`.
//! - `skip_on`: comma-separated patterns of events to send nothing for.

mod alert;

/// The generated bindings; lints are silenced here only, for code we do not write.
#[allow(clippy::too_many_arguments)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/v0.1.0",
        world: "adapter",
    });
}

use bindings::{Action, AdapterError, Context, Event, Guest, Request};

use kit::{Event as Parsed, Settings};

struct PagerDuty;

impl Guest for PagerDuty {
    fn transform(event: Event, context: Context) -> Result<Action, AdapterError> {
        let parsed = Parsed::parse(&event.id, &event.type_, &event.timestamp, &event.data)
            .map_err(|message| AdapterError { message })?;
        match alert::render(&parsed, Settings(&context.settings)) {
            Ok(alert::Outcome::Send(body)) => Ok(Action::Deliver(Request {
                method: "POST".into(),
                url: None,
                headers: vec![("content-type".into(), "application/json".into())],
                body: body.to_string().into_bytes(),
            })),
            Ok(alert::Outcome::Skip(reason)) => Ok(Action::Skip(reason)),
            Err(message) => Err(AdapterError { message }),
        }
    }
}

bindings::export!(PagerDuty with_types_in bindings);
