//! Builds the bundled adapters in `plugins/` for wasm32-wasip2 and exposes their paths as
//! `WASMHOOK_PLUGIN_<NAME>`, for the adapter scenarios, and the example adapters' paths as
//! `WASMHOOK_EXAMPLE_<NAME>`.

fn main() {
    let root = guest_build::workspace_root();
    for dir in ["plugins", "wit"] {
        guest_build::rerun_if_changed(&root.join(dir));
    }
    guest_build::build_workspace(&root.join("plugins"), "PLUGIN");
    guest_build::expose_example_adapters(&root);
}
