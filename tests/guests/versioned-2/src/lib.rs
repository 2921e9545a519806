//! Version 2 of the versioned test adapter (the logic is in `versioned/adapter.rs`).

const VERSION: u32 = 2;

include!("../../versioned/adapter.rs");
