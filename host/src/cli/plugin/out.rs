//! What the author's commands print on stdout: the CLI-wide helpers, so a closed pipe
//! (`wasmhook plugin check x.wasm | head -1`) comes back as an `io::Error`, never a panic.

pub(crate) use crate::cli::output::{outln, raw};
