//! Builds every adapter in `plugins/` and every test guest in `tests/guests/` for
//! wasm32-wasip2, and exposes each component's path to the tests as an environment
//! constant: `WASMHOOK_PLUGIN_<NAME>` and `WASMHOOK_GUEST_<NAME>`.
//!
//! The JavaScript and Python example adapters need npm and PyPI, so they are built by
//! `scripts/build-example-adapters` (which `scripts/test` runs), not here; their paths are
//! exposed as `WASMHOOK_EXAMPLE_TEAMS` and `WASMHOOK_EXAMPLE_DISCORD`.

fn main() {
    guest_build::build_all();
}
