//! Adapters: WASM components that turn an event into a receiver's request.
//!
//! - `wit`: one module per WIT version (`since_v0_1_0`, `since_v0_2_0`), each owning its
//!   `bindgen!`, linker set-up, host functions and conversions to the latest types.
//! - `manifest`: an adapter's manifest (0.2.0+) and checking settings against it.
//! - `sandbox`: engine, limits, fresh (or reused) instances, typed faults; it only dispatches
//!   to `wit`.
//! - `gate`: how many calls of one plugin run at once, and how many may queue.
//! - `guest_pool`: the threads adapter calls run on, apart from the engine's own.
//! - `epoch`: the ticker that counts guests' CPU budgets, awake only while a guest runs.
//! - `host_state`: what each store holds: empty WASI, log sink, limiter, stderr tail, the
//!   memory budget, and the signing keys the host's HMAC function uses.
//! - `cache`: compiled components on disk, sealed so only our own output is loaded.
//! - `registry`: the loaded plugins, swapped atomically when the plugins folder changes.
//! - `watcher`: watches the plugins folder and reloads what changed.

pub mod cache;
pub mod epoch;
pub mod gate;
pub mod guest_pool;
pub mod host_state;
pub mod manifest;
pub mod registry;
pub mod sandbox;
pub mod watcher;
pub mod wit;

pub use cache::CompileCache;
pub use manifest::{Manifest, SettingsError};
pub use registry::{LoadedPlugin, PluginInfo, Registry, SettingsCheck};
pub use sandbox::{Call, CallLimits, OwnedCall, Prepared, Sandbox, SandboxLimits};
pub use wit::PrepareError;

use std::time::Duration;

use crate::signing::SigningKey;

/// Names one loaded version of a plugin in messages: "plugin `slack` v3".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginLabel {
    /// File stem.
    pub name: String,
    /// Load counter for this name since the engine started: 1, 2, 3, …
    pub version: u32,
    /// First 12 hex digits of the file's SHA-256, stable across restarts.
    pub hash: String,
}

impl std::fmt::Display for PluginLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "plugin `{}` v{}", self.name, self.version)
    }
}

impl PluginLabel {
    /// The form stored on attempts: `slack v3 sha256:0123456789ab`.
    pub fn record(&self) -> String {
        format!("{} v{} sha256:{}", self.name, self.version, self.hash)
    }
}

/// What a subscription passes to its adapter besides the event.
#[derive(Debug, Clone, Copy)]
pub struct AdapterInput<'a> {
    /// The subscription id.
    pub subscription_id: &'a str,
    /// The subscription's URL.
    pub url: &'a str,
    /// The subscription's settings, sorted by key (with the manifest's defaults filled in
    /// for adapters that have one).
    pub settings: &'a [(String, String)],
    /// The attempt number, from 1.
    pub attempt: u32,
    /// Unix seconds of the attempt: what the engine signs and sends as `webhook-timestamp`.
    pub timestamp: i64,
    /// The subscription's active signing keys, newest first, for the host's HMAC import.
    /// They never enter the sandbox.
    pub signing_keys: &'a [SigningKey],
}

/// What an adapter decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this.
    Deliver(OutboundRequest),
    /// Send nothing, for this reason.
    Skip(String),
}

/// The request an adapter asked for, checked against the output rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRequest {
    /// POST, PUT or PATCH.
    pub method: String,
    /// Overrides the subscription's URL.
    pub url: Option<String>,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// An adapter call that produced no usable action. `Returned` is the adapter's own answer;
/// every other variant is a fault of the adapter the engine caught.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Fault {
    /// The adapter returned `adapter-error`.
    #[error("{plugin} returned an error: {message}")]
    Returned {
        /// Which plugin.
        plugin: PluginLabel,
        /// Its message.
        message: String,
    },
    /// The call ran out of CPU budget.
    #[error("{plugin} exceeded its {} ms CPU budget", budget.as_millis())]
    CpuBudget {
        /// Which plugin.
        plugin: PluginLabel,
        /// The budget.
        budget: Duration,
    },
    /// The guest tried to grow memory past the cap.
    #[error("{plugin} exceeded its {} MiB memory limit", limit_bytes >> 20)]
    MemoryLimit {
        /// Which plugin.
        plugin: PluginLabel,
        /// The cap.
        limit_bytes: u64,
    },
    /// The guest trapped (panic, `unreachable`, out-of-bounds access, …).
    #[error("{plugin} trapped: {detail}")]
    Trap {
        /// Which plugin.
        plugin: PluginLabel,
        /// The trap, and the guest's stderr when it wrote any.
        detail: String,
    },
    /// The returned request is larger than allowed.
    #[error("{plugin} returned {size} bytes, over the {limit}-byte output limit")]
    OutputTooLarge {
        /// Which plugin.
        plugin: PluginLabel,
        /// What it returned.
        size: usize,
        /// The cap.
        limit: usize,
    },
    /// The returned request breaks a rule (method, reserved header, bad URL).
    #[error("{plugin} returned an invalid request: {reason}")]
    InvalidOutput {
        /// Which plugin.
        plugin: PluginLabel,
        /// Which rule.
        reason: String,
    },
    /// The subscription's settings do not fit the adapter's manifest (a plugin reloaded
    /// with new required settings, say); the adapter was not called.
    #[error("{plugin} ({}) refuses this subscription's settings: {}", error.adapter, error.problems.join("; "))]
    InvalidSettings {
        /// Which plugin.
        plugin: PluginLabel,
        /// What is wrong, naming each setting (boxed: it is large and rare).
        error: Box<SettingsError>,
    },
    /// Every adapter instance together holds `[plugins] total_memory_bytes`: the engine is
    /// short of adapter memory, which is no fault of this adapter.
    #[error(
        "{plugin} could not get memory: the adapters' total memory budget ([plugins] total_memory_bytes) is in use"
    )]
    MemoryBudget {
        /// Which plugin.
        plugin: PluginLabel,
    },
    /// The subscription was deleted or disabled while the call ran; it was interrupted.
    #[error("{plugin} was interrupted: the subscription was deleted or disabled during the call")]
    Cancelled {
        /// Which plugin.
        plugin: PluginLabel,
    },
    /// No instance could be created (pool exhausted, link error).
    #[error("{plugin} could not be instantiated: {detail}")]
    Instantiate {
        /// Which plugin.
        plugin: PluginLabel,
        /// Why.
        detail: String,
    },
}

impl Fault {
    /// A short stable name for metrics and the API: `returned`, `cpu_budget`, …
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Returned { .. } => "returned",
            Self::CpuBudget { .. } => "cpu_budget",
            Self::MemoryLimit { .. } => "memory_limit",
            Self::MemoryBudget { .. } => "memory_budget",
            Self::Cancelled { .. } => "cancelled",
            Self::Trap { .. } => "trap",
            Self::OutputTooLarge { .. } => "output_too_large",
            Self::InvalidOutput { .. } => "invalid_output",
            Self::InvalidSettings { .. } => "invalid_settings",
            Self::Instantiate { .. } => "instantiate",
        }
    }
}
