//! What the author's commands print on stdout, written so that a closed pipe (`wasmhook
//! plugin check x.wasm | head -1`) comes back as an `io::Error` to return, never a panic.
//! `outln!` has the shape of the CLI-wide `outln!` that the packaging work adds in
//! `cli/output.rs`; once that lands, this file becomes
//! `pub(crate) use crate::cli::output::{outln, raw};`.

/// Writes one line to stdout; an `io::Result`.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, $($arg)*).and_then(|()| stdout.flush())
    }};
}
pub(crate) use outln;

/// Writes bytes to stdout as they are (a WIT file, a request body).
pub fn raw(bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes)?;
    stdout.flush()
}
