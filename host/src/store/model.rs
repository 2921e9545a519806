//! The records the store reads and writes, shared by every backend.

use serde::Serialize;
use utoipa::ToSchema;

use crate::event::Event;

/// An event to store, with the deliveries routing created for it.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The event.
    pub event: Event,
    /// One per matching subscription.
    pub deliveries: Vec<NewDelivery>,
}

/// A delivery to create.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    /// `msg_…`: sent as `webhook-id` on every attempt.
    pub id: String,
    /// The subscription it belongs to.
    pub subscription_id: String,
}

/// What ingest did with one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct IngestResult {
    /// The event id.
    pub id: String,
    /// Deliveries created for it (for a duplicate: created the first time).
    pub deliveries: u32,
    /// True when the id already existed and nothing new was stored.
    pub duplicate: bool,
}

/// The result of `claim_due`.
#[derive(Debug, Default)]
pub struct Claim {
    /// The claimed deliveries, oldest due first.
    pub deliveries: Vec<ClaimedDelivery>,
    /// When the earliest pending delivery that was not claimed falls due, if any.
    pub next_due_ms: Option<i64>,
}

/// A delivery handed to a worker.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    /// `msg_…`.
    pub id: String,
    /// The subscription.
    pub subscription_id: String,
    /// Attempts already made, in all runs.
    pub attempts: u32,
    /// Attempts made since the delivery was last replayed or retried by hand; the retry
    /// budget counts these, so a replayed dead letter gets a full schedule again.
    pub attempts_this_run: u32,
    /// The event.
    pub event: Event,
}

/// Lifecycle of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt (or in flight).
    Pending,
    /// A receiver answered 2xx.
    Delivered,
    /// Retries are exhausted or the receiver refused it for good.
    DeadLetter,
    /// The adapter chose to send nothing.
    Skipped,
    /// Its subscription was deleted before it was delivered.
    Cancelled,
}

impl DeliveryStatus {
    /// The stored and API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::DeadLetter => "dead_letter",
            Self::Skipped => "skipped",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses the stored and API spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "delivered" => Self::Delivered,
            "dead_letter" => Self::DeadLetter,
            "skipped" => Self::Skipped,
            "cancelled" => Self::Cancelled,
            _ => return None,
        })
    }
}

/// Where a delivery goes after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextState {
    /// Done: delivered.
    Delivered,
    /// Done: skipped by the adapter.
    Skipped,
    /// Done: dead letter.
    DeadLetter,
    /// Done: the subscription is gone.
    Cancelled,
    /// Try again at this time.
    RetryAt(i64),
    /// Not an attempt at all (for example the plugin is not loaded): look again at this
    /// time without spending an attempt.
    WaitUntil(i64),
}

/// The outcome of one attempt, to record.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    /// The delivery.
    pub delivery_id: String,
    /// Its subscription, whose health the attempt counts towards.
    pub subscription_id: String,
    /// What the attempt showed of the receiver, for the subscription's health: it answered
    /// 2xx (`Some(true)`), it failed (`Some(false)`: a network error, a timeout, any other
    /// status), or nothing was sent (`None`: an adapter error, a wait, an open circuit).
    pub receiver: Option<bool>,
    /// 1-based attempt number across all runs.
    pub attempt: u32,
    /// When it started.
    pub started_at_ms: i64,
    /// How long it took, in microseconds.
    pub latency_us: u64,
    /// The receiver's status, if it answered.
    pub status_code: Option<u16>,
    /// What went wrong, if anything, for a person to read.
    pub error: Option<String>,
    /// The start of the receiver's response body.
    pub response_body: Option<String>,
    /// The adapter that ran, `name@version`, if any.
    pub plugin_version: Option<String>,
    /// What happens next.
    pub next: NextState,
    /// With `WaitUntil`: what the delivery waits for (`plugin:<name>`), so that `unpark`
    /// can make it due as soon as that arrives.
    pub parked_on: Option<String>,
}

/// A delivery as listed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeliverySummary {
    /// `msg_…`.
    pub id: String,
    /// The event.
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// The subscription.
    pub subscription_id: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: u32,
    /// When the next attempt is due (pending only), RFC 3339.
    #[schema(format = DateTime)]
    pub next_attempt_at: Option<String>,
    /// The last error, or why it is waiting.
    pub last_error: Option<String>,
    /// The last HTTP status received.
    pub last_status: Option<u16>,
    /// When it was created, RFC 3339.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When it last changed, RFC 3339.
    #[schema(format = DateTime)]
    pub updated_at: String,
}

/// One recorded attempt.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AttemptInfo {
    /// 1-based number.
    pub attempt: u32,
    /// When it started, RFC 3339 with milliseconds.
    #[schema(format = DateTime)]
    pub started_at: String,
    /// Duration in microseconds.
    pub latency_us: u64,
    /// HTTP status, if the receiver answered.
    pub status_code: Option<u16>,
    /// What went wrong.
    pub error: Option<String>,
    /// The start of the response body.
    pub response_body: Option<String>,
    /// `name@version` of the adapter that ran.
    pub plugin_version: Option<String>,
}

/// A delivery with its attempts.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeliveryDetail {
    /// The delivery.
    #[serde(flatten)]
    pub delivery: DeliverySummary,
    /// Its attempts, oldest first.
    pub attempts_log: Vec<AttemptInfo>,
}

/// Which deliveries to list.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    /// Only this subscription's.
    pub subscription_id: Option<String>,
    /// Only in this state.
    pub status: Option<DeliveryStatus>,
    /// Only for this event type.
    pub event_type: Option<String>,
    /// Only for this event.
    pub event_id: Option<String>,
    /// Only deliveries created at or after this time (Unix ms).
    pub since_ms: Option<i64>,
    /// Only deliveries created before this time (Unix ms).
    pub until_ms: Option<i64>,
    /// Only ids before this one (the previous page's last id).
    pub before: Option<String>,
    /// Page size.
    pub limit: usize,
}

/// Which dead letters to replay.
#[derive(Debug, Clone, Default)]
pub struct ReplayFilter {
    /// Only this subscription's.
    pub subscription_id: Option<String>,
    /// Only deliveries created at or after this time (Unix ms).
    pub since_ms: Option<i64>,
    /// Only deliveries created before this time (Unix ms).
    pub until_ms: Option<i64>,
}

/// What a manual retry did.
#[derive(Debug, Clone)]
pub enum RetryOutcome {
    /// The delivery is due now, with a fresh retry budget.
    Scheduled(Box<DeliverySummary>),
    /// No such delivery.
    NotFound,
    /// An attempt is running right now; nothing was changed.
    InFlight,
}

/// Where a subscription was defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionSource {
    /// The config file; it is rewritten from the file at every start.
    Config,
    /// The API.
    Api,
}

impl SubscriptionSource {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Api => "api",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Self {
        if s == "config" {
            Self::Config
        } else {
            Self::Api
        }
    }
}

/// A subscription as the store keeps it: the spec is opaque JSON owned by
/// `subscription::SubscriptionSpec`; the store only knows the fields it filters on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSubscription {
    /// Id.
    pub id: String,
    /// Config file or API.
    pub source: SubscriptionSource,
    /// The spec, as JSON.
    pub spec: String,
    /// Whether it receives deliveries.
    pub enabled: bool,
    /// Why it was disabled, if it was (for example `410 Gone`).
    pub disabled_reason: Option<String>,
    /// Created, Unix ms.
    pub created_at_ms: i64,
    /// Last changed, Unix ms.
    pub updated_at_ms: i64,
}

/// One spec to rewrite in place (see `Store::rewrite_specs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecRewrite {
    /// The subscription.
    pub id: String,
    /// The stored text expected now; the row is left alone if it differs.
    pub old: String,
    /// The text to store.
    pub new: String,
}

/// What a purge may delete; each cutoff is a creation time in Unix ms, `None` keeps all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeCutoffs {
    /// Delivered, skipped and cancelled deliveries created before this.
    pub finished_before: Option<i64>,
    /// Dead letters created before this.
    pub dead_before: Option<i64>,
    /// Events created before this, once none of their deliveries is left.
    pub events_before: Option<i64>,
    /// Hourly health counts of hours that ended before this.
    pub counts_before: Option<i64>,
}

impl PurgeCutoffs {
    /// The latest cutoff: rows created after it are never purged, so a scan stops there.
    pub fn latest(&self) -> Option<i64> {
        [self.finished_before, self.dead_before, self.events_before]
            .into_iter()
            .flatten()
            .max()
    }
}

/// One purge step's result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Purged {
    /// Rows deleted (deliveries with their attempts, or events).
    pub deleted: u64,
    /// Where the next step goes on from; `None` when the scan is done.
    pub cursor: Option<String>,
}

/// Pending deliveries, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QueueDepth {
    /// Due now (or in flight).
    pub due: u64,
    /// Waiting for a later time.
    pub scheduled: u64,
}

/// What a node tells the store at each heartbeat.
#[derive(Debug, Clone, Default)]
pub struct NodeReport {
    /// When this node started, Unix ms.
    pub started_at_ms: i64,
    /// Plugins it serves: name to SHA-256 of the loaded file.
    pub plugins: std::collections::BTreeMap<String, String>,
}

/// A node as the store last saw it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NodeStatus {
    /// Its id (`<host>-<pid>-<random>` unless `[storage] node_id` names it).
    pub node_id: String,
    /// Whether it is the node answering.
    pub this_node: bool,
    /// Whether its last heartbeat is recent enough to count it as alive.
    pub live: bool,
    /// When it started, RFC 3339.
    #[schema(format = DateTime)]
    pub started_at: String,
    /// Its last heartbeat, RFC 3339.
    #[schema(format = DateTime)]
    pub heartbeat_at: String,
    /// Plugins it serves: name to SHA-256 of the file, so an operator can see nodes that
    /// disagree.
    pub plugins: std::collections::BTreeMap<String, String>,
}
