//! A small client for the engine's own API, shared by the commands that talk to a running
//! engine (`send`, `subscriptions`, `deliveries`, `dead-letters`, `endpoints`).

use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::Full;
use serde_json::Value;

use super::output::{self, Columns, Format};
use crate::delivery::HttpClient;
use crate::delivery::ssrf::NetworkPolicy;

/// Where the engine is, how to authenticate, and how to print its answer.
#[derive(Debug, Clone, clap::Args)]
pub struct Connection {
    /// The engine's base URL.
    #[arg(long, global = true, default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// API token.
    #[arg(
        long,
        global = true,
        env = "WASMHOOK_API_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// How to print the answer: `table` for people, `json` (the engine's answer) for scripts.
    #[arg(
        long,
        short,
        global = true,
        value_enum,
        default_value = "table",
        env = "WASMHOOK_OUTPUT"
    )]
    pub output: Format,
}

/// Largest API answer read.
const MAX_ANSWER: usize = 64 << 20;

impl Connection {
    /// Sends one request and returns the JSON answer; an error status becomes an error
    /// carrying the engine's message.
    pub fn call(
        &self,
        method: http::Method,
        path: &str,
        body: Option<String>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.server.trim_end_matches('/'));
        let mut request = http::Request::builder().method(method).uri(&url);
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .with_context(|| format!("invalid server URL `{}`", self.server))?;
        // The engine is the operator's own service, usually on loopback.
        let client = HttpClient::new(
            NetworkPolicy {
                allow_private: true,
                allowlist: Vec::new(),
            },
            None,
        )?;
        let response = super::runtime()?
            .block_on(client.send_reading(request, Duration::from_secs(30), MAX_ANSWER))
            .with_context(|| format!("cannot reach the engine at {url}"))?;
        let answer: Value = serde_json::from_str(&response.body_snippet).unwrap_or(Value::Null);
        if !(200..300).contains(&response.status) {
            match answer.get("message").and_then(Value::as_str) {
                Some(message) => bail!("the engine answered HTTP {}: {message}", response.status),
                None => bail!("the engine answered HTTP {}", response.status),
            }
        }
        Ok(answer)
    }
}

impl Connection {
    /// Prints an answer as `--output` asks; a list's table shows `columns`.
    pub fn show(&self, answer: &Value, columns: Columns) -> anyhow::Result<()> {
        output::print(answer, self.output, columns)
    }
}

/// `?a=1&b=2` from the pairs that are set, percent-encoding the values.
pub fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// Percent-encodes a query value or path segment (everything but unreserved characters).
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_strings_skip_unset_values_and_encode() {
        assert_eq!(super::query(&[("a", None)]), "");
        assert_eq!(
            super::query(&[
                ("a", Some("x y".into())),
                ("b", None),
                ("c", Some("2026-01-01T00:00:00+01:00".into()))
            ]),
            "?a=x%20y&c=2026-01-01T00%3A00%3A00%2B01%3A00"
        );
    }
}
