//! `[[sources]]`: where the engine consumes events from, and how messages map to events.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use crate::config::HumanDuration;

/// What a source reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A NATS JetStream stream, through a durable pull consumer.
    Nats,
}

/// One `[[sources]]` entry. `Debug` hides the URL's credentials.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Names the source in logs and metrics.
    pub id: String,
    /// `nats`.
    pub kind: SourceKind,
    /// The server, `nats://host:4222`; credentials may sit in the URL
    /// (`nats://user:pass@host:4222`).
    pub url: String,
    /// The JetStream stream to consume; it must exist.
    pub stream: String,
    /// The durable consumer's name; created on first start, resumed after a restart.
    #[serde(default = "default_consumer")]
    pub consumer: String,
    /// Only subjects matching this NATS pattern (`orders.>`); all of the stream's without it.
    #[serde(default)]
    pub subject: Option<String>,
    /// Cut from the front of each subject before it becomes the type (`events.` turns
    /// `events.order.paid` into `order.paid`).
    #[serde(default)]
    pub strip_prefix: Option<String>,
    /// Subjects whose type is not the subject itself: `{ "legacy.new_order" = "order.created" }`.
    #[serde(default)]
    pub types: BTreeMap<String, String>,
    /// Most messages committed under one transaction.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// How long the server waits for an acknowledgement before it redelivers.
    #[serde(default = "default_ack_wait")]
    pub ack_wait: HumanDuration,
}

fn default_consumer() -> String {
    "wasmhook".to_owned()
}

fn default_batch() -> usize {
    256
}

fn default_ack_wait() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(30))
}

impl fmt::Debug for SourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceConfig")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("url", &crate::secret::redact_url(&self.url))
            .field("stream", &self.stream)
            .field("consumer", &self.consumer)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl SourceConfig {
    /// Checks what types cannot; the error names the source and the key.
    pub fn validate(&self) -> Result<(), String> {
        let fail = |key: &str, why: &str| Err(format!("[[sources]] `{}`: {key} {why}", self.id));
        if self.id.is_empty() {
            return Err("[[sources]] id must not be empty".to_owned());
        }
        if self.stream.is_empty() || self.stream.contains(['.', '*', '>', ' ']) {
            return fail(
                "stream",
                "must be a JetStream stream name (no `.`, `*`, `>` or spaces)",
            );
        }
        if self.consumer.is_empty() || self.consumer.contains(['.', '*', '>', ' ']) {
            return fail(
                "consumer",
                "must be a consumer name (no `.`, `*`, `>` or spaces)",
            );
        }
        if !(1..=crate::event::MAX_BATCH_EVENTS).contains(&self.batch) {
            return fail(
                "batch",
                &format!("must be between 1 and {}", crate::event::MAX_BATCH_EVENTS),
            );
        }
        if self.ack_wait.0 < std::time::Duration::from_secs(1) {
            return fail("ack_wait", "must be at least 1s");
        }
        Ok(())
    }
}
