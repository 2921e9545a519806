//! Builds every adapter in `plugins/` and every test guest in `tests/guests/` for
//! wasm32-wasip2, and exposes each component's path to the tests as an environment
//! constant: `WASMHOOK_PLUGIN_<NAME>` and `WASMHOOK_GUEST_<NAME>`.
//!
//! The JavaScript and Python example adapters need npm and PyPI, so they are built by
//! `scripts/build-example-adapters` (which `scripts/test` runs), not here; their paths are
//! exposed as `WASMHOOK_EXAMPLE_TEAMS` and `WASMHOOK_EXAMPLE_DISCORD`.

fn main() {
    let root = guest_build::workspace_root();
    for dir in ["plugins", "tests/guests", "wit"] {
        guest_build::rerun_if_changed(&root.join(dir));
    }
    guest_build::build_workspace(&root.join("plugins"), "PLUGIN");
    guest_build::build_workspace(&root.join("tests/guests"), "GUEST");
    guest_build::expose_example_adapters(&root);
}
