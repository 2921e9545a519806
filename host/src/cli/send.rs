//! `wasmhook send`: publish one event to a running engine and print its answer.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::Full;
use serde_json::json;

use crate::delivery::HttpClient;
use crate::delivery::ssrf::NetworkPolicy;

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
    /// The engine's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: String,
    /// API token.
    #[arg(long, env = "WASMHOOK_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
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
    let url = format!("{}/v1/events", args.server.trim_end_matches('/'));
    let mut request = http::Request::post(&url).header("content-type", "application/json");
    if let Some(token) = &args.token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .with_context(|| format!("invalid server URL `{}`", args.server))?;
    let client = HttpClient::new(
        NetworkPolicy {
            allow_private: true,
            allowlist: Vec::new(),
        },
        None,
    )?;
    let response = super::runtime()?
        .block_on(client.send(request, Duration::from_secs(30)))
        .with_context(|| format!("cannot reach the engine at {url}"))?;
    println!("{}", response.body_snippet);
    if !(200..300).contains(&response.status) {
        bail!("the engine answered HTTP {}", response.status);
    }
    Ok(ExitCode::SUCCESS)
}
