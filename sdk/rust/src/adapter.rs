//! The adapter trait, what goes in and out of it, and the glue between it and the WIT
//! exports that [`export_adapter!`](crate::export_adapter!) writes.

use serde_json::Value;

use crate::Settings;
use crate::bindings;

/// An adapter: a type with settings and a `transform`. Export it with
/// [`export_adapter!`](crate::export_adapter!).
pub trait Adapter {
    /// Its settings, declared with [`settings!`](crate::settings!), or `()` for none.
    type Settings: Settings;

    /// Turns one event into the request for this subscription's receiver
    /// ([`Action::deliver`]), or sends nothing ([`Action::skip`]). An `Err` fails the
    /// attempt, which is retried on the subscription's schedule.
    fn transform(event: Event, settings: Self::Settings, context: Context)
    -> Result<Action, Error>;
}

/// One event, with its payload parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The event id (`evt_…`, or the producer's own), stable across retries.
    pub id: String,
    /// The event type, such as `host.enrolled`.
    pub kind: String,
    /// When the engine accepted it, RFC 3339 in UTC.
    pub timestamp: String,
    /// The payload. New fields may appear at any time: ignore those you do not know.
    pub data: Value,
    /// The payload as the producer sent it, byte for byte, for adapters that pass it on
    /// unchanged.
    pub data_json: String,
}

impl Event {
    /// An event for tests: id `evt_test`, time `2026-06-13T12:00:00Z`.
    pub fn new(kind: &str, data: Value) -> Self {
        Self {
            id: "evt_test".into(),
            kind: kind.into(),
            timestamp: "2026-06-13T12:00:00Z".into(),
            data_json: data.to_string(),
            data,
        }
    }

    /// The Standard Webhooks envelope the engine sends when a subscription has no adapter:
    /// `{"id":…,"type":…,"timestamp":…,"data":…}`, with the payload byte for byte.
    pub fn envelope(&self) -> String {
        let text = |s: &str| Value::String(s.to_owned()).to_string();
        format!(
            "{{\"id\":{},\"type\":{},\"timestamp\":{},\"data\":{}}}",
            text(&self.id),
            text(&self.kind),
            text(&self.timestamp),
            self.data_json
        )
    }
}

/// Where and for whom this delivery is being made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// The subscription id.
    pub subscription_id: String,
    /// The subscription's URL; the request goes there unless [`Request::url`] overrides it.
    pub url: String,
    /// The raw settings, sorted by key, with the manifest's defaults filled in.
    pub settings: Vec<(String, String)>,
    /// The delivery's message id (`webhook-id`), the same on every attempt.
    pub message_id: String,
    /// The attempt number, 1 for the first.
    pub attempt: u32,
    /// Unix seconds of this attempt (`webhook-timestamp`): the time to sign, for receivers
    /// whose signature covers a timestamp.
    pub timestamp: i64,
}

impl Default for Context {
    /// A context for tests.
    fn default() -> Self {
        Self {
            subscription_id: "sub_test".into(),
            url: "https://receiver.example.com/hook".into(),
            settings: Vec::new(),
            message_id: "msg_test".into(),
            attempt: 1,
            timestamp: 1_781_352_000,
        }
    }
}

/// The request to send. The engine adds `webhook-id`, `webhook-timestamp`,
/// `webhook-signature` and `user-agent`; an adapter cannot set those.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `POST` (the default), `PUT` or `PATCH`.
    pub method: String,
    /// Send here instead of the subscription's URL (it meets the same checks).
    pub url: Option<String>,
    /// Headers, such as `content-type`.
    pub headers: Vec<(String, String)>,
    /// The body, sent and signed byte for byte.
    pub body: Vec<u8>,
}

impl Request {
    /// A `POST` of `value` as JSON, with `content-type: application/json`.
    pub fn json(value: &Value) -> Self {
        Self::post("application/json", value.to_string())
    }

    /// A `POST` of `body` with this content type.
    pub fn post(content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            method: "POST".into(),
            url: None,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.into(),
        }
    }

    /// The same request with another method (`PUT`, `PATCH`).
    pub fn method(mut self, method: &str) -> Self {
        self.method = method.into();
        self
    }

    /// The same request, sent to `url` instead of the subscription's.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// The same request with one more header (replacing one of the same name).
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The value of header `name`, if set.
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy), for tests and logs.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What to do with this event for this subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this request.
    Deliver(Request),
    /// Send nothing; the delivery is recorded as skipped with this reason.
    Skip(String),
}

impl Action {
    /// Send `request`.
    pub fn deliver(request: Request) -> Self {
        Self::Deliver(request)
    }

    /// Send nothing, for this reason.
    pub fn skip(reason: impl Into<String>) -> Self {
        Self::Skip(reason.into())
    }
}

impl From<Request> for Action {
    fn from(request: Request) -> Self {
        Self::Deliver(request)
    }
}

/// The adapter could not produce a request; the message goes on the attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl Error {
    /// An error with this message for the operator.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Self(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Self(message.into())
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Self(format!("JSON: {e}"))
    }
}

/// The manifest of adapter `A`; `export_adapter!` passes the crate's name, version and
/// description from `Cargo.toml`.
#[doc(hidden)]
pub fn manifest<A: Adapter>(name: &str, version: &str, description: &str) -> bindings::Manifest {
    bindings::Manifest {
        name: name.into(),
        version: version.into(),
        description: description.into(),
        settings: A::Settings::schema(),
    }
}

/// Runs adapter `A` on what the engine passed: parses the payload and the settings, calls
/// `transform`, converts the answer.
#[doc(hidden)]
pub fn transform<A: Adapter>(
    event: bindings::wasmhook::adapter::types::Event,
    context: bindings::wasmhook::adapter::types::Context,
) -> Result<
    bindings::wasmhook::adapter::types::Action,
    bindings::wasmhook::adapter::types::AdapterError,
> {
    use bindings::wasmhook::adapter::types as wit;
    let fail = |e: Error| wit::AdapterError { message: e.0 };
    let data = serde_json::from_str(&event.data)
        .map_err(|e| Error::new(format!("event {}: data is not valid JSON: {e}", event.id)))
        .map_err(fail)?;
    let settings = A::Settings::parse(&context.settings).map_err(fail)?;
    let event = Event {
        id: event.id,
        kind: event.type_,
        timestamp: event.timestamp,
        data,
        data_json: event.data,
    };
    let context = Context {
        subscription_id: context.subscription_id,
        url: context.url,
        settings: context.settings,
        message_id: context.message_id,
        attempt: context.attempt,
        timestamp: context.timestamp,
    };
    match A::transform(event, settings, context).map_err(fail)? {
        Action::Deliver(r) => Ok(wit::Action::Deliver(wit::Request {
            method: r.method,
            url: r.url,
            headers: r.headers,
            body: r.body,
        })),
        Action::Skip(reason) => Ok(wit::Action::Skip(reason)),
    }
}

/// Exports an [`Adapter`] as the component's `manifest` and `transform`. The manifest's
/// name, version and description come from the calling crate's `Cargo.toml`.
#[macro_export]
macro_rules! export_adapter {
    ($adapter:ty) => {
        #[doc(hidden)]
        #[derive(Debug)]
        pub struct __WasmhookExport;

        impl $crate::bindings::Guest for __WasmhookExport {
            fn manifest() -> $crate::bindings::Manifest {
                $crate::__private::manifest::<$adapter>(
                    ::std::env!("CARGO_PKG_NAME"),
                    ::std::env!("CARGO_PKG_VERSION"),
                    ::std::env!("CARGO_PKG_DESCRIPTION"),
                )
            }

            fn transform(
                event: $crate::bindings::Event,
                context: $crate::bindings::Context,
            ) -> ::std::result::Result<$crate::bindings::Action, $crate::bindings::AdapterError>
            {
                $crate::__private::transform::<$adapter>(event, context)
            }
        }

        $crate::bindings::export!(__WasmhookExport with_types_in $crate::bindings);
    };
}
