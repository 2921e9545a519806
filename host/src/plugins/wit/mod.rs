//! The WIT versions the engine runs, organised as zed's extension host does: one module per
//! published version of `wasmhook:adapter`, each owning its `bindgen!`, its linker set-up,
//! its host functions and the conversions to the engine's latest types. This module only
//! picks the version a component implements and dispatches to it; the sandbox sees
//! [`AdapterPre`] and [`AdapterInstance`], never a version's bindings.
//!
//! Adding a version: copy the newest `since_v*` module, point it at the new `wit/v<x>/`,
//! add a variant to the two enums below and to [`SUPPORTED_VERSIONS`]. Old modules never
//! change, so adapters built for every shipped version keep running.

pub mod since_v0_1_0;
pub mod since_v0_2_0;

use wasmtime::component::{Component, Linker};
use wasmtime::{AsContextMut, Engine};

use super::Action;
use super::host_state::HostState;
use super::manifest::Manifest;
use crate::event::Event;

/// The WIT versions this engine runs, oldest first.
pub const SUPPORTED_VERSIONS: &[&str] = &[since_v0_1_0::VERSION, since_v0_2_0::VERSION];

/// The newest version: what `wasmhook wit` prints and `wasmhook plugin new` builds against.
pub const LATEST: &str = since_v0_2_0::VERSION;

/// The text of each version's WIT package, for `wasmhook wit` and `plugin new`.
pub const WIT_FILES: &[(&str, &str)] = &[
    (
        since_v0_1_0::VERSION,
        include_str!("../../../../wit/v0.1.0/adapter.wit"),
    ),
    (
        since_v0_2_0::VERSION,
        include_str!("../../../../wit/v0.2.0/adapter.wit"),
    ),
];

/// Everything one `transform` call gets, in the engine's latest terms; each version
/// passes what its world has room for.
#[derive(Debug, Clone, Copy)]
pub struct CallInput<'a> {
    /// The event.
    pub event: &'a Event,
    /// The subscription id.
    pub subscription_id: &'a str,
    /// The subscription's URL.
    pub url: &'a str,
    /// The settings, sorted by key (with the manifest's defaults, from 0.2.0).
    pub settings: &'a [(String, String)],
    /// The delivery's message id (`webhook-id`).
    pub message_id: &'a str,
    /// The attempt number, from 1.
    pub attempt: u32,
    /// Unix seconds of the attempt (`webhook-timestamp`).
    pub timestamp: i64,
}

/// Why a component cannot be used as an adapter.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// Not a WebAssembly component (a core module, or not wasm at all).
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    /// A component, but not of a world this engine runs.
    #[error("{0}")]
    WrongWorld(String),
}

/// Adds WASI preview 2 (which language runtimes import even when they grant nothing) and
/// every version's imports to `linker`.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    since_v0_1_0::add_to_linker(linker)?;
    since_v0_2_0::add_to_linker(linker)?;
    Ok(())
}

/// A component type-checked against one supported world, ready to instantiate.
#[derive(Clone)]
pub enum AdapterPre {
    /// `wasmhook:adapter@0.1.0`.
    V0_1_0(since_v0_1_0::Pre),
    /// `wasmhook:adapter@0.2.0`.
    V0_2_0(since_v0_2_0::Pre),
}

impl std::fmt::Debug for AdapterPre {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AdapterPre({})", self.version())
    }
}

/// One instance of an adapter, of whichever version.
pub enum AdapterInstance {
    /// `wasmhook:adapter@0.1.0`.
    V0_1_0(since_v0_1_0::Instance),
    /// `wasmhook:adapter@0.2.0`.
    V0_2_0(since_v0_2_0::Instance),
}

impl std::fmt::Debug for AdapterInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let version = match self {
            Self::V0_1_0(_) => since_v0_1_0::VERSION,
            Self::V0_2_0(_) => since_v0_2_0::VERSION,
        };
        write!(f, "AdapterInstance({version})")
    }
}

impl AdapterPre {
    /// Type-checks `component` against the version it declares, or, when it names none
    /// (a guest that imports nothing versioned), against each version from the newest.
    pub fn new(
        engine: &Engine,
        linker: &Linker<HostState>,
        component: &Component,
    ) -> Result<Self, PrepareError> {
        let declared = declared_version(engine, component);
        let candidates: Vec<&str> = match declared.as_deref() {
            Some(version) if SUPPORTED_VERSIONS.contains(&version) => vec![version],
            Some(version) => {
                return Err(PrepareError::WrongWorld(format!(
                    "the component implements wasmhook:adapter@{version}, which this engine does not run; \
                     supported versions: {}",
                    SUPPORTED_VERSIONS.join(", ")
                )));
            }
            None => SUPPORTED_VERSIONS.iter().rev().copied().collect(),
        };
        let mut last = None;
        for version in candidates {
            let result = match version {
                since_v0_1_0::VERSION => since_v0_1_0::prepare(linker, component).map(Self::V0_1_0),
                _ => since_v0_2_0::prepare(linker, component).map(Self::V0_2_0),
            };
            match result {
                Ok(pre) => return Ok(pre),
                Err(e) => last = Some((version, e)),
            }
        }
        let (version, e) = last.expect("at least one candidate version");
        Err(PrepareError::WrongWorld(format!(
            "the component does not implement the wasmhook:adapter world (supported versions: {}); \
             checked against {version}: {e:#}",
            SUPPORTED_VERSIONS.join(", ")
        )))
    }

    /// The WIT version, such as `0.2.0`.
    pub fn version(&self) -> &'static str {
        match self {
            Self::V0_1_0(_) => since_v0_1_0::VERSION,
            Self::V0_2_0(_) => since_v0_2_0::VERSION,
        }
    }

    /// Whether the world has a `manifest` export (0.2.0 and later).
    pub fn has_manifest(&self) -> bool {
        !matches!(self, Self::V0_1_0(_))
    }

    /// A fresh instance in `store`.
    pub async fn instantiate(
        &self,
        store: impl AsContextMut<Data = HostState>,
    ) -> wasmtime::Result<AdapterInstance> {
        Ok(match self {
            Self::V0_1_0(pre) => AdapterInstance::V0_1_0(pre.instantiate_async(store).await?),
            Self::V0_2_0(pre) => AdapterInstance::V0_2_0(pre.instantiate_async(store).await?),
        })
    }
}

impl AdapterInstance {
    /// Calls `transform`; `Err(message)` inside is the adapter's own `adapter-error`.
    pub async fn transform(
        &self,
        store: impl AsContextMut<Data = HostState>,
        input: &CallInput<'_>,
    ) -> wasmtime::Result<Result<Action, String>> {
        match self {
            Self::V0_1_0(instance) => since_v0_1_0::transform(instance, store, input).await,
            Self::V0_2_0(instance) => since_v0_2_0::transform(instance, store, input).await,
        }
    }

    /// Calls `manifest`; `None` for versions before 0.2.0, which have none.
    pub async fn manifest(
        &self,
        store: impl AsContextMut<Data = HostState>,
    ) -> wasmtime::Result<Option<Manifest>> {
        match self {
            Self::V0_1_0(_) => Ok(None),
            Self::V0_2_0(instance) => since_v0_2_0::manifest(instance, store).await.map(Some),
        }
    }
}

/// The `wasmhook:adapter@X` version a component names in its imports or exports, if any.
fn declared_version(engine: &Engine, component: &Component) -> Option<String> {
    let ty = component.component_type();
    let names = ty
        .imports(engine)
        .map(|(name, _)| name.to_owned())
        .chain(ty.exports(engine).map(|(name, _)| name.to_owned()));
    names
        .filter_map(|name| name.strip_prefix("wasmhook:adapter/").map(str::to_owned))
        .find_map(|rest| rest.split_once('@').map(|(_, v)| v.to_owned()))
}
