//! Version 1 of the versioned test adapter (the logic is in `versioned/adapter.rs`).

const VERSION: u32 = 1;

include!("../../versioned/adapter.rs");
