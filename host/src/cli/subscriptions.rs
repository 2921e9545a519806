//! `wasmhook subscriptions`: list, read, create, change, delete, rotate the secret of and
//! test subscriptions on a running engine, through `/v1/subscriptions`.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use http::Method;
use serde_json::{Map, Value, json};

use super::api::Connection;
use super::output::{Columns, Format};

/// The subscription list's table columns.
const COLUMNS: Columns = Columns(&[
    "id", "enabled", "source", "url", "events", "plugin", "filter",
]);

/// `subscriptions` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List every subscription (secrets are never shown).
    List {
        #[command(flatten)]
        connection: Connection,
    },
    /// Show one subscription.
    Get {
        /// Subscription id.
        id: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Create a subscription; its signing secret is printed this once.
    Create {
        /// Stable id (default: a fresh `sub_…`).
        #[arg(long)]
        id: Option<String>,
        /// The signing secret, `whsec_…` (default: a fresh one).
        #[arg(long, env = "WASMHOOK_SUBSCRIPTION_SECRET", hide_env_values = true)]
        secret: Option<String>,
        /// Create it disabled.
        #[arg(long)]
        disabled: bool,
        #[command(flatten)]
        fields: Fields,
        #[command(flatten)]
        connection: Connection,
    },
    /// Change a subscription: only the fields given change (`--header` and `--set` replace
    /// the whole map).
    Update {
        /// Subscription id.
        id: String,
        /// Start sending it events again.
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Stop sending it events (its deliveries wait).
        #[arg(long)]
        disable: bool,
        /// Remove an optional field (`filter`, `plugin`, `name`, `rate_limit`, …); repeatable.
        #[arg(long, value_name = "FIELD")]
        clear: Vec<String>,
        #[command(flatten)]
        fields: Fields,
        #[command(flatten)]
        connection: Connection,
    },
    /// Delete a subscription; its pending deliveries become dead letters.
    Delete {
        /// Subscription id.
        id: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Give a subscription a new signing secret (printed this once); the old one keeps
    /// signing beside it for the grace period.
    #[command(name = "rotate-secret")]
    RotateSecret {
        /// Subscription id.
        id: String,
        /// How long the old secret keeps signing (`24h`, `0s`); default `[delivery]
        /// secret_rotation_grace`.
        #[arg(long)]
        grace: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Send a signed `wasmhook.test` event and show its first attempt; exits non-zero
    /// unless it was delivered.
    Test {
        /// Subscription id.
        id: String,
        #[command(flatten)]
        connection: Connection,
    },
}

/// The fields of a create or an update, as flags or from a JSON file.
#[derive(Debug, clap::Args)]
pub struct Fields {
    /// A JSON object with the fields, as `POST /v1/subscriptions` takes it (`-`: stdin);
    /// flags override its fields.
    #[arg(long, short)]
    file: Option<PathBuf>,
    /// The receiver URL.
    #[arg(long)]
    url: Option<String>,
    /// Event-type patterns, comma-separated: `host.*,cert.expiring`.
    #[arg(long, value_delimiter = ',')]
    events: Vec<String>,
    /// A human name.
    #[arg(long)]
    name: Option<String>,
    /// A CEL filter on the event: `data.severity == "critical"`.
    #[arg(long)]
    filter: Option<String>,
    /// The adapter (plugin name).
    #[arg(long)]
    plugin: Option<String>,
    /// An extra request header, `NAME=VALUE`; repeatable.
    #[arg(long = "header", value_name = "NAME=VALUE")]
    headers: Vec<String>,
    /// An adapter setting, `KEY=VALUE`; repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    settings: Vec<String>,
    /// A setting whose value is secret (never shown back); repeatable.
    #[arg(long = "secret-setting", value_name = "KEY")]
    secret_settings: Vec<String>,
    /// Waits between attempts, comma-separated: `5s,5m,1h`.
    #[arg(long, value_delimiter = ',')]
    retry_schedule: Vec<String>,
    /// Attempts before a dead letter.
    #[arg(long)]
    max_attempts: Option<u32>,
    /// Time limit of one attempt: `15s`.
    #[arg(long)]
    timeout: Option<String>,
    /// Most deliveries a second.
    #[arg(long)]
    rate_limit: Option<u32>,
    /// The adapter's CPU budget for this subscription: `100ms`.
    #[arg(long)]
    cpu_budget: Option<String>,
    /// Reuse one adapter instance for up to this many deliveries.
    #[arg(long)]
    instance_reuse: Option<u32>,
}

impl Fields {
    /// The JSON body: the file's object, then every flag that is set.
    fn body(self) -> anyhow::Result<Map<String, Value>> {
        let mut body = match &self.file {
            Some(path) => read_object(path)?,
            None => Map::new(),
        };
        let mut set = |key: &str, value: Value| {
            body.insert(key.to_owned(), value);
        };
        if let Some(url) = self.url {
            set("url", json!(url));
        }
        if !self.events.is_empty() {
            set("events", json!(self.events));
        }
        if let Some(name) = self.name {
            set("name", json!(name));
        }
        if let Some(filter) = self.filter {
            set("filter", json!(filter));
        }
        if let Some(plugin) = self.plugin {
            set("plugin", json!(plugin));
        }
        if !self.headers.is_empty() {
            set("headers", pairs(&self.headers, "--header")?);
        }
        if !self.settings.is_empty() {
            set("settings", pairs(&self.settings, "--set")?);
        }
        if !self.secret_settings.is_empty() {
            set("secret_settings", json!(self.secret_settings));
        }
        if !self.retry_schedule.is_empty() {
            set("retry_schedule", json!(self.retry_schedule));
        }
        if let Some(n) = self.max_attempts {
            set("max_attempts", json!(n));
        }
        if let Some(timeout) = self.timeout {
            set("timeout", json!(timeout));
        }
        if let Some(n) = self.rate_limit {
            set("rate_limit", json!(n));
        }
        if let Some(budget) = self.cpu_budget {
            set("cpu_budget", json!(budget));
        }
        if let Some(n) = self.instance_reuse {
            set("instance_reuse", json!(n));
        }
        Ok(body)
    }
}

/// A JSON object from a file, or from stdin for `-`.
fn read_object(path: &PathBuf) -> anyhow::Result<Map<String, Value>> {
    let text = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        text
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?
    };
    match serde_json::from_str(&text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => bail!(
            "{} must hold a JSON object such as {{\"url\": \"https://…\", \"events\": [\"host.*\"]}}",
            path.display()
        ),
        Err(e) => bail!("{} is not valid JSON: {e}", path.display()),
    }
}

/// `["a=1", "b=2"]` as `{"a": "1", "b": "2"}`.
fn pairs(items: &[String], flag: &str) -> anyhow::Result<Value> {
    let mut map = Map::new();
    for item in items {
        let Some((key, value)) = item.split_once('=') else {
            bail!("{flag} takes KEY=VALUE, got `{item}`");
        };
        map.insert(key.trim().to_owned(), json!(value));
    }
    Ok(Value::Object(map))
}

/// Runs a `subscriptions` subcommand.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::List { connection } => {
            let answer = connection.call(Method::GET, "/v1/subscriptions", None)?;
            connection.show(&answer, COLUMNS)?;
        }
        Command::Get { id, connection } => {
            let answer = connection.call(Method::GET, &path(&id, ""), None)?;
            connection.show(&answer, COLUMNS)?;
        }
        Command::Create {
            id,
            secret,
            disabled,
            fields,
            connection,
        } => {
            let mut body = fields.body()?;
            if let Some(id) = id {
                body.insert("id".into(), json!(id));
            }
            if let Some(secret) = secret {
                body.insert("secret".into(), json!(secret));
            }
            if disabled {
                body.insert("enabled".into(), json!(false));
            }
            for required in ["url", "events"] {
                if !body.contains_key(required) {
                    bail!("a subscription needs --{required} (or `{required}` in --file)");
                }
            }
            let body = Value::Object(body).to_string();
            let answer = connection.call(Method::POST, "/v1/subscriptions", Some(body))?;
            connection.show(&answer, COLUMNS)?;
        }
        Command::Update {
            id,
            enable,
            disable,
            clear,
            fields,
            connection,
        } => {
            let mut body = fields.body()?;
            if enable || disable {
                body.insert("enabled".into(), json!(enable));
            }
            for field in clear {
                body.insert(field, Value::Null);
            }
            if body.is_empty() {
                bail!("nothing to change: give a flag such as --url, --disable or --clear filter");
            }
            let body = Value::Object(body).to_string();
            let answer = connection.call(Method::PATCH, &path(&id, ""), Some(body))?;
            connection.show(&answer, COLUMNS)?;
        }
        Command::Delete { id, connection } => {
            connection.call(Method::DELETE, &path(&id, ""), None)?;
            connection.show(&json!({"id": id, "deleted": true}), COLUMNS)?;
        }
        Command::RotateSecret {
            id,
            grace,
            connection,
        } => {
            let body = json!({ "grace": grace }).to_string();
            let answer = connection.call(Method::POST, &path(&id, "/rotate-secret"), Some(body))?;
            connection.show(&answer, COLUMNS)?;
        }
        Command::Test { id, connection } => {
            let answer = connection.call(Method::POST, &path(&id, "/test"), None)?;
            connection.show(&answer, COLUMNS)?;
            if answer.get("status").and_then(Value::as_str) != Some("delivered") {
                if connection.output == Format::Table {
                    let why = answer.get("last_error").and_then(Value::as_str);
                    eprintln!(
                        "the test event was not delivered{}",
                        why.map(|w| format!(": {w}")).unwrap_or_default()
                    );
                }
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `/v1/subscriptions/{id}{rest}`, with the id percent-encoded.
fn path(id: &str, rest: &str) -> String {
    format!("/v1/subscriptions/{}{rest}", super::api::encode(id))
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        fields: Fields,
    }

    #[test]
    fn flags_become_the_api_body() {
        let cli = Cli::parse_from([
            "x",
            "--url",
            "https://r.example/h",
            "--events",
            "a.*,b",
            "--set",
            "channel=#ops",
            "--header",
            "X-Team=core=1",
            "--retry-schedule",
            "1s,1m",
        ]);
        let body = Value::Object(cli.fields.body().unwrap());
        assert_eq!(
            body,
            json!({
                "url": "https://r.example/h",
                "events": ["a.*", "b"],
                "settings": {"channel": "#ops"},
                "headers": {"X-Team": "core=1"},
                "retry_schedule": ["1s", "1m"],
            })
        );
    }

    #[test]
    fn a_pair_without_equals_is_refused_naming_the_flag() {
        let err = pairs(&["oops".into()], "--set").unwrap_err().to_string();
        assert!(err.contains("--set takes KEY=VALUE"), "{err}");
    }
}
