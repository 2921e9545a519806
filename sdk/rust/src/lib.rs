//! Write [wasmhook](https://github.com/wasmhook/wasmhook) adapters in Rust.
//!
//! An adapter is a WebAssembly component that turns one event into the HTTP request one
//! kind of receiver expects. This crate owns the `wasmhook:adapter@0.2.0` bindings (the WIT
//! travels inside it), so an adapter is a plain type, a settings declaration and one macro:
//!
//! ```
//! use wasmhook_adapter::{Action, Adapter, Context, Error, Event, Request};
//! use wasmhook_adapter::serde_json::json;
//!
//! wasmhook_adapter::settings! {
//!     /// What a subscription can set.
//!     pub struct Settings {
//!         /// The channel to post to, such as `#ops`.
//!         channel: String,
//!         /// The header line; the event type when unset.
//!         title: Option<String>,
//!         /// How many payload fields to show.
//!         max_fields: u32 = 10,
//!         /// The receiver's API token.
//!         #[secret]
//!         token: Option<String>,
//!         /// How loud the message is.
//!         #[one_of("info", "warning", "critical")]
//!         level: String = "info",
//!     }
//! }
//!
//! struct Chat;
//!
//! impl Adapter for Chat {
//!     type Settings = Settings;
//!
//!     fn transform(event: Event, settings: Settings, _context: Context) -> Result<Action, Error> {
//!         let title = settings.title.unwrap_or_else(|| event.kind.clone());
//!         let body = json!({"channel": settings.channel, "text": title, "level": settings.level});
//!         Ok(Action::deliver(Request::json(&body)))
//!     }
//! }
//!
//! wasmhook_adapter::export_adapter!(Chat);
//! # fn main() {
//! #     let action = wasmhook_adapter::testing::run::<Chat>(
//! #         &Event::new("host.down", json!({"host": "web-1"})),
//! #         &[("channel", "#ops")],
//! #     ).unwrap();
//! #     let Action::Deliver(request) = action else { panic!() };
//! #     assert_eq!(request.body_text(), r##"{"channel":"#ops","text":"host.down","level":"info"}"##);
//! # }
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` (crate type `cdylib`).
//! The engine reads the manifest (the crate's name, version and description from
//! `Cargo.toml`, and the settings above), refuses subscriptions whose settings do not fit it
//! before the first delivery, and fills in the defaults.
//!
//! # Layout
//! - [`settings!`] and [`Settings`]: typed settings, declared once for both the manifest
//!   and parsing.
//! - [`Adapter`] and [`export_adapter!`]: the adapter itself.
//! - [`Event`], [`Context`], [`Request`], [`Action`], [`Error`]: what goes in and out.
//! - [`log`]: log lines for the operator; [`signing`]: HMACs with the subscription's
//!   secrets, computed by the engine.
//! - [`text`]: helpers for rendering payloads (scalar fields, truncation, type patterns).
//! - [`testing`]: run an adapter natively in unit tests.
//! - [`bindings`]: the raw WIT bindings, for what the helpers do not cover.

// Lets the generated bindings name this crate the same way from inside and from users.
extern crate self as wasmhook_adapter;

mod adapter;
pub mod log;
mod settings;
pub mod signing;
pub mod testing;
pub mod text;

pub use adapter::{Action, Adapter, Context, Error, Event, Request};
pub use serde_json;
pub use settings::{SettingValue, Settings, Url};

/// The raw `wasmhook:adapter@0.2.0` bindings generated from the WIT inside this crate.
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit/v0.2.0",
        world: "adapter",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "wasmhook_adapter::bindings",
        runtime_path: "wasmhook_adapter::__private::wit_bindgen::rt",
    });
}

/// What the macros expand to; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::adapter::{manifest, transform};
    pub use crate::settings::{description, lookup};
    pub use wit_bindgen;

    /// One doc-comment line of a settings field, or nothing for another attribute.
    #[macro_export]
    #[doc(hidden)]
    macro_rules! __setting_doc {
        (doc = $doc:expr) => {
            $doc
        };
        ($($other:tt)*) => {
            ""
        };
    }

    /// Whether a settings field attribute is `#[secret]`.
    #[macro_export]
    #[doc(hidden)]
    macro_rules! __setting_secret {
        (secret) => {
            true
        };
        ($($other:tt)*) => {
            false
        };
    }

    /// The values of a settings field's `#[one_of(...)]`, or none.
    #[macro_export]
    #[doc(hidden)]
    macro_rules! __setting_allowed {
        (one_of($($value:expr),* $(,)?)) => {
            [$(::std::string::ToString::to_string(&$value)),*].to_vec()
        };
        ($($other:tt)*) => {
            ::std::vec::Vec::<::std::string::String>::new()
        };
    }

    /// A settings field's default as text, if it has one.
    #[macro_export]
    #[doc(hidden)]
    macro_rules! __setting_default {
        () => {
            ::std::option::Option::<::std::string::String>::None
        };
        ($default:expr) => {
            ::std::option::Option::Some(::std::string::ToString::to_string(&$default))
        };
    }
}
