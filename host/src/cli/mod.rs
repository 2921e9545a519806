//! The `wasmhook` command line: one binary, one subcommand per job.
//!
//! - `serve`: run the engine.
//! - `send`: publish one event to a running engine.
//! - `deliveries`, `dead-letters`, `endpoints`: inspect and act on a running engine.
//! - `plugin check` / `run` / `watch` / `new` / `build`, `wit`: write, build, validate and
//!   dry-run adapters with no engine running.
//! - `verify`: check a Standard Webhooks signature, for people writing receivers.
//! - `secret`: print a fresh `whsec_` signing secret.
//! - `migrate-store`: copy the embedded store into PostgreSQL, to go from one node to several.
//! - `openapi`: print the HTTP API's OpenAPI 3.1 document (as served at `/openapi.json`).

mod api;
mod manage;
mod migrate;
mod plugin;
mod send;
mod serve;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A webhook delivery engine with WebAssembly adapters.
#[derive(Debug, Parser)]
#[command(name = "wasmhook", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the engine.
    Serve(serve::Args),
    /// Publish one event to a running engine.
    Send(send::Args),
    /// List, inspect and retry deliveries.
    #[command(subcommand)]
    Deliveries(manage::Deliveries),
    /// List and replay dead letters.
    #[command(subcommand, name = "dead-letters")]
    DeadLetters(manage::DeadLetters),
    /// Show each receiver endpoint's circuit breaker and load.
    Endpoints(api::Connection),
    /// Write, build, check or dry-run an adapter.
    #[command(subcommand)]
    Plugin(plugin::Command),
    /// Print the WIT adapters implement (`wasmhook:adapter`), the newest version by default.
    Wit(plugin::WitArgs),
    /// Check a webhook signature, as a receiver would.
    Verify(verify::Args),
    /// Print a new random `whsec_` signing secret.
    Secret {
        /// A plain secret (64 hex digits) instead, for receivers with their own signature
        /// scheme that take the secret as text (GitHub-style `X-Hub-Signature-256`).
        #[arg(long)]
        plain: bool,
    },
    /// Print the HTTP API's OpenAPI 3.1 document, as served at `/openapi.json`.
    Openapi,
    /// Copy the embedded store (engine stopped) into an empty PostgreSQL database.
    #[command(name = "migrate-store")]
    MigrateStore(migrate::Args),
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(match &cli.command {
        Command::Plugin(cmd) => cmd.default_log_filter(),
        _ => "info,cranelift=warn,wasmtime=warn",
    });
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Send(args) => send::run(args),
        Command::Deliveries(cmd) => manage::deliveries(cmd),
        Command::DeadLetters(cmd) => manage::dead_letters(cmd),
        Command::Endpoints(connection) => manage::endpoints(connection),
        Command::Plugin(cmd) => plugin::run(cmd),
        Command::Wit(args) => plugin::wit(&args),
        Command::Verify(args) => verify::run(args),
        Command::Secret { plain } => {
            let secret = if plain {
                crate::signing::generate_plain_secret()
            } else {
                crate::signing::generate_secret()
            };
            println!("{}", secret.expose());
            Ok(ExitCode::SUCCESS)
        }
        Command::MigrateStore(args) => migrate::run(args),
        Command::Openapi => {
            println!("{}", crate::api::openapi::document_json());
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr; `RUST_LOG` picks the level (default: the command's `default`).
fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

/// A tokio runtime for one command.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
