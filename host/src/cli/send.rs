//! `wasmhook send`: publish one event to a running engine and print its answer.

use std::process::ExitCode;

use anyhow::Context as _;
use serde_json::json;

use super::api::Connection;
use super::output::Columns;

/// Arguments of `send`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Event type, e.g. host.enrolled.
    #[arg(long = "type", short = 't')]
    kind: String,
    /// Event payload, a JSON object.
    #[arg(long, short, default_value = "{}")]
    data: String,
    /// Event id (idempotency key); the engine picks one when absent.
    #[arg(long)]
    id: Option<String>,
    #[command(flatten)]
    connection: Connection,
}

/// Posts the event; exits non-zero when the engine refuses it.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Kept as raw text, so the payload's field order reaches receivers unchanged.
    let data: &serde_json::value::RawValue =
        serde_json::from_str(&args.data).context("--data is not valid JSON")?;
    let mut body = format!("{{\"type\":{},\"data\":{}", json!(args.kind), data.get());
    if let Some(id) = args.id {
        body.push_str(&format!(",\"id\":{}", json!(id)));
    }
    body.push('}');
    let answer = args
        .connection
        .call(http::Method::POST, "/v1/events", Some(body))?;
    args.connection.show(&answer, Columns(&[]))?;
    Ok(ExitCode::SUCCESS)
}
