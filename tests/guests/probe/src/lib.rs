//! A test adapter steered by its settings:
//! - `mode`: `echo` (default) delivers `{"event": …, "context": …}`, exactly what it was
//!   given; `skip` skips; `error` returns an adapter error with `message`.
//! - `method`, `url`: override the request's method and URL.
//! - `header_name` + `header_value`: add one header.
//! - `log`: write this line through the log import.
//! - `label`: free text, only echoed back.
//! - `passcode`: declared secret in the manifest; never read.
//!
//! The echo body also carries `instance_calls`: how many calls this instance has served.

use serde_json::json;
use wasmhook_adapter::{Action, Adapter, Context, Error, Event, Request, log};

wasmhook_adapter::settings! {
    /// The probe's knobs; none has a default, so the echo shows exactly what was set.
    pub struct ProbeSettings {
        /// echo, skip or error.
        #[one_of("echo", "skip", "error")]
        mode: Option<String>,
        /// The adapter error's message in `error` mode.
        message: Option<String>,
        /// Overrides the request's method.
        method: Option<String>,
        /// Overrides the request's URL (not checked here: the engine checks it).
        url: Option<String>,
        /// A header to add, with `header_value`.
        header_name: Option<String>,
        /// The value of `header_name`.
        header_value: Option<String>,
        /// A line to log.
        log: Option<String>,
        /// Free text, echoed back.
        label: Option<String>,
        /// A credential the probe never uses: the manifest marks it secret, so the engine
        /// never shows it back although its name does not look like one.
        #[secret]
        passcode: Option<String>,
    }
}

struct Probe;

/// Calls this instance has served; more than 1 only when the engine reuses instances.
static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Adapter for Probe {
    type Settings = ProbeSettings;

    fn transform(event: Event, s: ProbeSettings, context: Context) -> Result<Action, Error> {
        let calls = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if let Some(line) = &s.log {
            log::info(line);
        }
        match s.mode.as_deref().unwrap_or("echo") {
            "skip" => return Ok(Action::skip(format!("probe skipped {}", event.kind))),
            "error" => {
                return Err(Error::new(
                    s.message.unwrap_or_else(|| "probe was told to fail".into()),
                ));
            }
            _ => {}
        }
        let body = json!({
            "event": {"id": event.id, "type": event.kind, "timestamp": event.timestamp, "data": event.data},
            "context": {
                "subscription_id": context.subscription_id,
                "url": context.url,
                "settings": context.settings,
                "message_id": context.message_id,
                "attempt": context.attempt,
                "timestamp": context.timestamp,
            },
            "instance_calls": calls,
        });
        let mut request = Request::json(&body);
        if let (Some(name), Some(value)) = (s.header_name, s.header_value) {
            // Pushed, not `header()`: the probe may try a header the engine forbids.
            request.headers.push((name, value));
        }
        if let Some(method) = s.method {
            request = request.method(&method);
        }
        if let Some(url) = s.url {
            request = request.url(url);
        }
        Ok(Action::deliver(request))
    }
}

wasmhook_adapter::export_adapter!(Probe);
