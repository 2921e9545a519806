//! An adapter for `wasmhook:adapter@0.9.0`, a version the engine does not know: it must be
//! refused with a message naming the versions the engine supports.

/// The generated bindings; lints are silenced here only, for code we do not write.
#[allow(clippy::too_many_arguments)]
mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "adapter",
    });
}

use bindings::{Action, AdapterError, Context, Event, Guest};

struct Future;

impl Guest for Future {
    fn transform(event: Event, _context: Context) -> Result<Action, AdapterError> {
        Ok(Action::Skip(format!("from the future: {}", event.id)))
    }
}

bindings::export!(Future with_types_in bindings);
