//! For build scripts: builds a cargo workspace of guests for wasm32-wasip2 (with the host
//! build's flags and wrappers removed) and exposes each component's path to the crate as
//! `WASMHOOK_<KIND>_<NAME>` (upper-case, `-` → `_`). Used by `tests/` and `bench/`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root, from a crate one level below it.
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    manifest
        .parent()
        .expect("the crate sits in the workspace root")
        .to_path_buf()
}

/// Cargo reruns the build script when any file under `dir` changes (except build output).
pub fn rerun_if_changed(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            rerun_if_changed(&path);
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

/// Builds the workspace in `dir` for wasm32-wasip2 and exposes its components as
/// `WASMHOOK_<kind>_<NAME>`.
pub fn build_workspace(dir: &Path, kind: &str) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target_dir = dir.join("target");
    let status = Command::new(cargo)
        .current_dir(dir)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--workspace",
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        // Flags and wrappers meant for the host build (clippy-driver under `cargo clippy`)
        // must not leak into the guest build.
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("CLIPPY_ARGS")
        .env_remove("CLIPPY_CONF_DIR")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_PRIMARY_PACKAGE")
        .status()
        .expect("cannot run cargo to build the wasm guests");
    assert!(
        status.success(),
        "building the wasm guests in {} failed; if the error says `can't find crate for std`, \
         run `rustup target add wasm32-wasip2` (scripts/test does this for you)",
        dir.display()
    );
    let out = target_dir.join("wasm32-wasip2/release");
    let mut found = 0;
    for entry in std::fs::read_dir(&out)
        .expect("guest build output exists")
        .flatten()
    {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "wasm") {
            let stem = path
                .file_stem()
                .expect("has a stem")
                .to_string_lossy()
                .to_uppercase()
                .replace('-', "_");
            println!("cargo:rustc-env=WASMHOOK_{kind}_{stem}={}", path.display());
            found += 1;
        }
    }
    assert!(found > 0, "no .wasm files were built in {}", out.display());
}

/// Exposes the paths of the JavaScript and Python example adapters as
/// `WASMHOOK_EXAMPLE_TEAMS` and `WASMHOOK_EXAMPLE_DISCORD`. They need npm and PyPI, so
/// `scripts/build-example-adapters` builds them, not cargo.
pub fn expose_example_adapters(root: &Path) {
    for (name, path) in [
        ("TEAMS", "examples/adapters/js/teams.wasm"),
        ("DISCORD", "examples/adapters/python/discord.wasm"),
    ] {
        println!(
            "cargo:rustc-env=WASMHOOK_EXAMPLE_{name}={}",
            root.join(path).display()
        );
    }
}

/// Everything the tests and the benchmarks run: the adapters in `plugins/`
/// (`WASMHOOK_PLUGIN_<NAME>`), the test guests in `tests/guests/` (`WASMHOOK_GUEST_<NAME>`)
/// and the paths of the example adapters (`WASMHOOK_EXAMPLE_<NAME>`), rebuilt when any of
/// them or `wit/` changes.
pub fn build_all() {
    let root = workspace_root();
    for dir in ["plugins", "tests/guests", "wit"] {
        rerun_if_changed(&root.join(dir));
    }
    build_workspace(&root.join("plugins"), "PLUGIN");
    build_workspace(&root.join("tests/guests"), "GUEST");
    expose_example_adapters(&root);
}
