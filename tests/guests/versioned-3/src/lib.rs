//! Version 3 of the versioned test adapter (the logic is in `versioned/adapter.rs`).

const VERSION: u32 = 3;

include!("../../versioned/adapter.rs");
