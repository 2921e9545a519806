//! `wasmhook deliveries`, `dead-letters`, `endpoints` and `health`: inspect and act on
//! a running engine through its API.

use std::process::ExitCode;

use http::Method;
use serde_json::json;

use super::api::{Connection, query};
use super::output::Columns;

/// A delivery list's table columns.
const DELIVERY_COLUMNS: Columns = Columns(&[
    "id",
    "event_id",
    "subscription_id",
    "event_type",
    "status",
    "attempts",
    "last_status",
    "next_attempt_at",
    "last_error",
]);

/// The endpoint list's table columns.
const ENDPOINT_COLUMNS: Columns = Columns(&[
    "endpoint",
    "circuit",
    "consecutive_failures",
    "in_flight",
    "concurrency_limit",
    "latency_ms",
    "open_until",
]);

/// `deliveries` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Deliveries {
    /// List deliveries, newest first.
    List {
        /// Only this subscription's.
        #[arg(long)]
        subscription: Option<String>,
        /// Only in this state: pending, delivered, dead_letter, skipped.
        #[arg(long)]
        status: Option<String>,
        /// Only for this event type.
        #[arg(long)]
        event_type: Option<String>,
        /// Only for this event id.
        #[arg(long)]
        event: Option<String>,
        /// Page size.
        #[arg(long)]
        limit: Option<usize>,
        /// The page after this delivery id (`next_before` of the previous page).
        #[arg(long)]
        before: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Show one delivery with its attempts.
    Get {
        /// Delivery id (msg_…).
        id: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Attempt a delivery again now, with a fresh retry budget.
    Retry {
        /// Delivery id (msg_…).
        id: String,
        #[command(flatten)]
        connection: Connection,
    },
}

/// `dead-letters` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum DeadLetters {
    /// List dead letters, newest first.
    List {
        #[command(flatten)]
        filter: Filter,
        /// Page size.
        #[arg(long)]
        limit: Option<usize>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Replay dead letters (all, or those matching the filter); they keep their webhook-id.
    Replay {
        #[command(flatten)]
        filter: Filter,
        #[command(flatten)]
        connection: Connection,
    },
}

/// Which dead letters.
#[derive(Debug, clap::Args)]
pub struct Filter {
    /// Only this subscription's.
    #[arg(long)]
    subscription: Option<String>,
    /// Created at or after this RFC 3339 time.
    #[arg(long)]
    since: Option<String>,
    /// Created before this RFC 3339 time.
    #[arg(long)]
    until: Option<String>,
}

/// Runs a `deliveries` subcommand.
pub fn deliveries(command: Deliveries) -> anyhow::Result<ExitCode> {
    let (answer, connection) = match command {
        Deliveries::List {
            subscription,
            status,
            event_type,
            event,
            limit,
            before,
            connection,
        } => {
            let q = query(&[
                ("subscription_id", subscription),
                ("status", status),
                ("event_type", event_type),
                ("event_id", event),
                ("limit", limit.map(|l| l.to_string())),
                ("before", before),
            ]);
            (
                connection.call(Method::GET, &format!("/v1/deliveries{q}"), None)?,
                connection,
            )
        }
        Deliveries::Get { id, connection } => (
            connection.call(Method::GET, &format!("/v1/deliveries/{id}"), None)?,
            connection,
        ),
        Deliveries::Retry { id, connection } => (
            connection.call(Method::POST, &format!("/v1/deliveries/{id}/retry"), None)?,
            connection,
        ),
    };
    connection.show(&answer, DELIVERY_COLUMNS)?;
    Ok(ExitCode::SUCCESS)
}

/// Runs a `dead-letters` subcommand.
pub fn dead_letters(command: DeadLetters) -> anyhow::Result<ExitCode> {
    let (answer, connection) = match command {
        DeadLetters::List {
            filter,
            limit,
            connection,
        } => {
            let q = query(&[
                ("subscription_id", filter.subscription),
                ("since", filter.since),
                ("until", filter.until),
                ("limit", limit.map(|l| l.to_string())),
            ]);
            (
                connection.call(Method::GET, &format!("/v1/dead-letters{q}"), None)?,
                connection,
            )
        }
        DeadLetters::Replay { filter, connection } => {
            let body = json!({
                "subscription_id": filter.subscription,
                "since": filter.since,
                "until": filter.until,
            });
            let answer = connection.call(
                Method::POST,
                "/v1/dead-letters/replay",
                Some(body.to_string()),
            )?;
            (answer, connection)
        }
    };
    connection.show(&answer, DELIVERY_COLUMNS)?;
    Ok(ExitCode::SUCCESS)
}

/// `wasmhook endpoints`: each endpoint's circuit and load.
pub fn endpoints(connection: Connection) -> anyhow::Result<ExitCode> {
    let answer = connection.call(Method::GET, "/v1/endpoints", None)?;
    connection.show(&answer, ENDPOINT_COLUMNS)?;
    Ok(ExitCode::SUCCESS)
}

/// `wasmhook health`: whether the engine answers `/healthz` (for container health checks
/// and scripts); fails when it does not.
pub fn health(connection: Connection) -> anyhow::Result<ExitCode> {
    let answer = connection.call(Method::GET, "/healthz", None)?;
    connection.show(&answer, Columns(&[]))?;
    Ok(ExitCode::SUCCESS)
}
