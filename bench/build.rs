//! Builds the bundled adapters in `plugins/` for wasm32-wasip2 and exposes their paths as
//! `WASMHOOK_PLUGIN_<NAME>`, for the adapter scenarios, the test guests as `WASMHOOK_GUEST_<NAME>`, and the example adapters' paths as
//! `WASMHOOK_EXAMPLE_<NAME>`.

fn main() {
    let root = guest_build::workspace_root();
    for dir in ["plugins", "tests/guests", "wit"] {
        guest_build::rerun_if_changed(&root.join(dir));
    }
    guest_build::build_workspace(&root.join("plugins"), "PLUGIN");
    // The versioned test adapters, whose bodies name their version, for the reload delay.
    guest_build::build_workspace(&root.join("tests/guests"), "GUEST");
    guest_build::expose_example_adapters(&root);
}
