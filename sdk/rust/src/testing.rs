//! Running an adapter natively, in `cargo test`: the glue the engine drives in a component
//! (defaults, settings parsing) without a component, plus stand-ins for the imports.
//!
//! ```
//! use wasmhook_adapter::{Action, Adapter, Context, Error, Event, Request, testing};
//! use wasmhook_adapter::serde_json::json;
//!
//! struct Echo;
//! impl Adapter for Echo {
//!     type Settings = ();
//!     fn transform(event: Event, _: (), _: Context) -> Result<Action, Error> {
//!         wasmhook_adapter::log::info("echoing");
//!         Ok(Action::deliver(Request::json(&event.data)))
//!     }
//! }
//!
//! let action = testing::run::<Echo>(&Event::new("x.y", json!({"a": 1})), &[]).unwrap();
//! assert_eq!(action, Action::deliver(Request::json(&json!({"a": 1}))));
//! assert_eq!(testing::take_logs(), ["info: echoing"]);
//! ```

use std::cell::RefCell;

use crate::{Action, Adapter, Context, Error, Event, Settings};

thread_local! {
    static LOGS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    static KEYS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// Runs `A` on `event` with these settings as the engine would: the manifest's defaults
/// fill what is unset, then the settings are parsed and `transform` is called with a test
/// [`Context`].
pub fn run<A: Adapter>(event: &Event, settings: &[(&str, &str)]) -> Result<Action, Error> {
    let mut pairs: Vec<(String, String)> = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for setting in A::Settings::schema() {
        if let Some(default) = setting.default
            && !pairs
                .iter()
                .any(|(k, v)| k == &setting.name && !v.trim().is_empty())
        {
            pairs.push((setting.name, default));
        }
    }
    pairs.sort();
    let parsed = A::Settings::parse(&pairs)?;
    let context = Context {
        settings: pairs,
        ..Context::default()
    };
    A::transform(event.clone(), parsed, context)
}

/// Sets the signing secrets [`signing::hmac_sha256`](crate::signing::hmac_sha256) uses in
/// this thread's tests, newest first: `whsec_…` ones by their decoded key, others as text.
pub fn set_signing_secrets(secrets: &[&str]) {
    use base64::Engine as _;
    let keys = secrets
        .iter()
        .map(|s| match s.strip_prefix("whsec_") {
            Some(encoded) => base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .expect("a whsec_ secret is base64 after the prefix"),
            None => s.as_bytes().to_vec(),
        })
        .collect();
    KEYS.with(|k| *k.borrow_mut() = keys);
}

/// The log lines written in this thread since the last call, as `level: message`.
pub fn take_logs() -> Vec<String> {
    LOGS.with(|l| std::mem::take(&mut *l.borrow_mut()))
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn record_log(level: crate::log::Level, message: &str) {
    use crate::log::Level;
    let level = match level {
        Level::Trace => "trace",
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    };
    eprintln!("adapter log {level}: {message}");
    LOGS.with(|l| l.borrow_mut().push(format!("{level}: {message}")));
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn hmac_sha256(message: &[u8]) -> Vec<Vec<u8>> {
    use hmac::{Hmac, Mac};
    KEYS.with(|keys| {
        keys.borrow()
            .iter()
            .map(|key| {
                let mut mac =
                    Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
                mac.update(message);
                mac.finalize().into_bytes().to_vec()
            })
            .collect()
    })
}
