//! The `wasmhook` binary, for the end-to-end tests (same main as `host/src/main.rs`).

fn main() -> std::process::ExitCode {
    wasmhook::cli::main()
}
