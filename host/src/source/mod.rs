//! Sources: producers the engine pulls from instead of being called by (`[[sources]]`).
//! Each turns messages into [`crate::event::EventDraft`]s and hands them to ingest, and
//! acknowledges a message only once its event is committed.

pub mod config;
pub mod message;
pub mod nats;

pub use config::{SourceConfig, SourceKind};
