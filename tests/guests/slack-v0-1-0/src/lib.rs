//! The bundled Slack adapter exactly as it shipped for `wasmhook:adapter@0.1.0`, kept as a
//! test guest so the engine is shown to run 0.1.0 adapters built from their old source
//! beside 0.2.0 ones. Only the paths changed: the WIT is `wit/v0.1.0` and the helpers that
//! lived in the `kit` crate are the `kit` module. Do not modernise it.
//!
//! The Slack adapter: turns an event into a Block Kit message for an incoming webhook.
//!
//! Settings (all optional):
//! - `channel`, `username`, `icon_emoji`: passed through to Slack.
//! - `title`: the header line; defaults to the event type.
//! - `summary_field`: the payload field holding a one-line summary; by default the first of
//!   `summary`, `message`, `title`, `description`.
//! - `fields`: comma-separated payload fields to show; by default the first ten scalar fields.

mod kit;
mod message;

/// The generated bindings; lints are silenced here only, for code we do not write.
#[allow(clippy::too_many_arguments)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit/v0.1.0",
        world: "adapter",
    });
}

use bindings::{Action, AdapterError, Context, Event, Guest, Request};

use kit::{Event as Parsed, Settings};

struct Slack;

impl Guest for Slack {
    fn transform(event: Event, context: Context) -> Result<Action, AdapterError> {
        let parsed = Parsed::parse(&event.id, &event.type_, &event.timestamp, &event.data)
            .map_err(|message| AdapterError { message })?;
        let body = message::render(&parsed, Settings(&context.settings));
        Ok(Action::Deliver(Request {
            method: "POST".into(),
            url: None,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        }))
    }
}

bindings::export!(Slack with_types_in bindings);
