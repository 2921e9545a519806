//! The one place that runs `bindgen!`: one module per published WIT version, each next to
//! the folder it is generated from (`wit/v<version>/`). A new version is added beside the
//! old ones, never in place of them, so adapters built for every shipped version keep
//! running.

/// `wasmhook:adapter@0.1.0`.
pub mod v0_1_0 {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "adapter",
        exports: { default: async },
    });
}

/// The WIT versions this engine runs, oldest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.1.0"];
