//! Builds the bundled adapters in `plugins/` and the test guests (the versioned adapter
//! times hot reloads) for wasm32-wasip2, and exposes their paths and the example adapters'
//! paths, as the tests' build script does. The bench runs `scripts/build-example-adapters`
//! itself when the JavaScript and Python components are missing.

fn main() {
    guest_build::build_all();
}
