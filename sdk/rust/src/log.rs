//! Log lines for the operator. In a component they go to the engine's log, tagged with the
//! plugin and the delivery (`wasmhook plugin run` prints them); in a native unit test they
//! go to stderr and to [`testing::take_logs`](crate::testing::take_logs).

pub use crate::bindings::wasmhook::adapter::log::Level;

/// Writes one line at `level`. The engine keeps at most 100 lines per call, each cut to 4 KiB.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::wasmhook::adapter::log::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::record_log(level, message);
}

/// Developer detail.
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Normal operation.
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Something unexpected that the adapter worked around.
pub fn warn(message: &str) {
    log(Level::Warn, message);
}

/// Something failed.
pub fn error(message: &str) {
    log(Level::Error, message);
}
