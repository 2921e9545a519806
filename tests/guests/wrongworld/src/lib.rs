//! A component of another world (`other:thing`), to check the engine refuses it.

/// The generated bindings.
mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "thing",
    });
}

struct Thing;

impl bindings::Guest for Thing {
    fn run(input: String) -> String {
        input
    }
}

bindings::export!(Thing with_types_in bindings);
