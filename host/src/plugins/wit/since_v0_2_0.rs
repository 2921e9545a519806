//! `wasmhook:adapter@0.2.0`: its bindings, its linker set-up, its host functions (logging
//! and HMAC signing with the subscription's secrets) and the conversions between its types
//! and the engine's latest ones. Frozen once published.

use wasmtime::AsContextMut;
use wasmtime::component::{Component, HasSelf, Linker};

use super::super::host_state::{HostState, LogLevel};
use super::super::manifest::{Manifest, SettingSpec, SettingType};
use super::super::{Action, OutboundRequest};
use super::CallInput;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/v0.2.0",
        world: "adapter",
        imports: { "wasmhook:adapter/signing.hmac-sha256": trappable },
        exports: { default: async },
    });
}

use bindings::wasmhook::adapter::{log, signing, types};

/// The WIT package version this module binds.
pub const VERSION: &str = "0.2.0";

/// Ready to instantiate a 0.2.0 adapter.
pub type Pre = bindings::AdapterPre<HostState>;
/// One 0.2.0 adapter instance.
pub type Instance = bindings::Adapter;

/// Adds this version's imports (logging, signing) to `linker`.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    bindings::Adapter::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
}

/// Type-checks `component` against the 0.2.0 world.
pub fn prepare(linker: &Linker<HostState>, component: &Component) -> wasmtime::Result<Pre> {
    Pre::new(linker.instantiate_pre(component)?)
}

/// Calls `transform` and converts the answer to the engine's types; `Err(message)` inside
/// is the adapter's own `adapter-error`.
pub async fn transform(
    instance: &Instance,
    mut store: impl AsContextMut<Data = HostState>,
    input: &CallInput<'_>,
) -> wasmtime::Result<Result<Action, String>> {
    let event = types::Event {
        id: input.event.id.clone(),
        type_: input.event.kind.clone(),
        timestamp: input.event.timestamp(),
        data: input.event.data.clone(),
    };
    let context = types::Context {
        subscription_id: input.subscription_id.to_owned(),
        url: input.url.to_owned(),
        settings: input.settings.to_vec(),
        message_id: input.message_id.to_owned(),
        attempt: input.attempt,
        timestamp: input.timestamp,
    };
    let answer = instance
        .call_transform(&mut store, &event, &context)
        .await?;
    Ok(answer.map(action).map_err(|e| e.message))
}

/// Calls `manifest` and converts it.
pub async fn manifest(
    instance: &Instance,
    mut store: impl AsContextMut<Data = HostState>,
) -> wasmtime::Result<Manifest> {
    let m = instance.call_manifest(&mut store).await?;
    Ok(Manifest {
        name: m.name,
        version: m.version,
        description: m.description,
        settings: m.settings.into_iter().map(setting).collect(),
    })
}

fn setting(s: types::Setting) -> SettingSpec {
    SettingSpec {
        name: s.name,
        kind: match s.type_ {
            types::SettingType::String => SettingType::String,
            types::SettingType::Integer => SettingType::Integer,
            types::SettingType::Number => SettingType::Number,
            types::SettingType::Boolean => SettingType::Boolean,
            types::SettingType::Url => SettingType::Url,
            types::SettingType::List => SettingType::List,
        },
        required: s.required,
        secret: s.secret,
        default: s.default,
        allowed: s.allowed,
        description: s.description,
    }
}

fn action(action: types::Action) -> Action {
    match action {
        types::Action::Deliver(r) => Action::Deliver(OutboundRequest {
            method: r.method,
            url: r.url,
            headers: r.headers,
            body: r.body,
        }),
        types::Action::Skip(reason) => Action::Skip(reason),
    }
}

impl types::Host for HostState {}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) {
        let level = match level {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        self.log(level, &message);
    }
}

impl signing::Host for HostState {
    fn hmac_sha256(&mut self, message: Vec<u8>) -> wasmtime::Result<Vec<Vec<u8>>> {
        self.hmac_sha256(&message).map_err(wasmtime::Error::new)
    }
}
