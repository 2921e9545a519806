//! `wasmhook plugin check` and `wasmhook plugin run`: work on an adapter file with no
//! engine running, under the same sandbox and limits the engine uses.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::clock::now_ms;
use crate::config::{Config, ProcessEnv};
use crate::event::parse_event;
use crate::plugins::registry::read_plugin_file;
use crate::plugins::{Action, AdapterInput, Call, CallLimits, PluginLabel};

use super::output::outln;

/// `plugin` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Validate a component and print the world it implements.
    Check {
        /// The `.wasm` file.
        file: PathBuf,
    },
    /// Run an adapter on an event file and print what it returns.
    Run(RunArgs),
}

/// Arguments of `plugin run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The `.wasm` file.
    file: PathBuf,
    /// The event, as posted to /v1/events: {"type": ..., "data": {...}, "id"?: ...}.
    #[arg(long)]
    event: PathBuf,
    /// A setting passed to the adapter; repeat for more.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    settings: Vec<String>,
    /// The subscription URL passed to the adapter.
    #[arg(long, default_value = "https://receiver.example.com/webhook")]
    url: String,
    /// The subscription id passed to the adapter.
    #[arg(long, default_value = "dry-run")]
    subscription_id: String,
    /// Config file whose [plugins] limits apply; defaults otherwise.
    #[arg(long)]
    config: Option<PathBuf>,
}

/// Dispatches a `plugin` subcommand.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Check { file } => check(file),
        Command::Run(args) => dry_run(args),
    }
}

fn load(
    file: &Path,
    config: &Config,
) -> anyhow::Result<(crate::plugins::Sandbox, crate::plugins::Prepared)> {
    // Never blocks on a FIFO or reads without bound, as the engine's own loads.
    let bytes = read_plugin_file(file, config.plugins.max_plugin_bytes)?;
    let sandbox = crate::engine::sandbox(config)?;
    let component = sandbox
        .compile(&bytes)
        .with_context(|| format!("{} is not a usable adapter", file.display()))?;
    let prepared = sandbox
        .prepare(&component)
        .with_context(|| format!("{} is not a usable adapter", file.display()))?;
    Ok((sandbox, prepared))
}

fn check(file: PathBuf) -> anyhow::Result<ExitCode> {
    let mut config = Config::default();
    config.delivery.concurrency = 1;
    let (sandbox, prepared) = load(&file, &config)?;
    let bytes = read_plugin_file(&file, config.plugins.max_plugin_bytes)?;
    let component = sandbox.compile(&bytes)?;
    let ty = component.component_type();
    let engine = sandbox.engine();
    let mut imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_owned()).collect();
    let mut exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_owned()).collect();
    imports.sort();
    exports.sort();
    outln!("{}: ok", file.display())?;
    outln!(
        "implements: wasmhook:adapter/adapter@{}",
        prepared.world_version
    )?;
    outln!("size: {} bytes", bytes.len())?;
    outln!("imports:")?;
    for name in imports {
        outln!("  {name}")?;
    }
    outln!("exports:")?;
    for name in exports {
        outln!("  {name}")?;
    }
    Ok(ExitCode::SUCCESS)
}

fn dry_run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut config = Config::load(args.config.as_deref(), &ProcessEnv)?;
    config.delivery.concurrency = 1;
    let (sandbox, prepared) = load(&args.file, &config)?;
    let text = std::fs::read(&args.event)
        .with_context(|| format!("cannot read {}", args.event.display()))?;
    let event = parse_event(&text)
        .and_then(|draft| {
            draft.validate(
                now_ms(),
                &config.limits.event_limits(),
                crate::event::Publisher::Engine,
            )
        })
        .with_context(|| format!("{} is not a valid event", args.event.display()))?;
    let mut settings = Vec::new();
    for pair in &args.settings {
        let Some((k, v)) = pair.split_once('=') else {
            bail!("--set `{pair}` must look like KEY=VALUE");
        };
        settings.push((k.to_owned(), v.to_owned()));
    }
    settings.sort();
    let name = args
        .file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("adapter")
        .to_owned();
    let label = PluginLabel {
        name,
        version: 1,
        hash: String::new(),
    };
    let input = AdapterInput {
        subscription_id: &args.subscription_id,
        url: &args.url,
        settings: &settings,
    };
    let call = Call {
        label: &label,
        event: &event,
        input: &input,
        delivery_id: "msg_dry_run",
        limits: CallLimits::for_plugin(&config.plugins, &label.name),
    };
    let action = super::runtime()?.block_on(sandbox.transform(&prepared, call))?;
    let out = match action {
        Action::Deliver(req) => {
            let body = serde_json::from_slice::<Value>(&req.body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&req.body).into_owned()));
            json!({
                "action": "deliver",
                "method": req.method,
                "url": req.url.unwrap_or(args.url),
                "headers": req.headers.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
                "body": body,
            })
        }
        Action::Skip(reason) => json!({"action": "skip", "reason": reason}),
    };
    outln!("{}", serde_json::to_string_pretty(&out)?)?;
    Ok(ExitCode::SUCCESS)
}
