//! The `wasmhook` binary: parses the command line and hands over to the library.

/// mimalloc instead of the system allocator. The engine allocates on one thread and frees
/// on another all the time (ingest's write jobs are freed by the store's writer thread,
/// claims and records go the other way), which glibc's arenas handle poorly: malloc and
/// free were 16% of the writer thread. Measured in docs/BENCHMARKS.md ("Allocator"):
/// faster drains and less CPU per delivery, for about 40 MiB more RSS.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    wasmhook::cli::main()
}
