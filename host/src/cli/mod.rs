//! The `wasmhook` command line: one binary, one subcommand per job.
//!
//! - `serve`: run the engine.
//! - `send`: publish one event to a running engine.
//! - `subscriptions`: manage a running engine's subscriptions.
//! - `deliveries`, `dead-letters`, `endpoints`, `health`: inspect and act on a running engine.
//! - `plugin check` / `run` / `watch` / `new` / `build`, `wit`: write, build, validate and
//!   dry-run adapters with no engine running.
//! - `verify`: check a Standard Webhooks signature, for people writing receivers.
//! - `secret`: print a fresh `whsec_` signing secret.
//! - `migrate-store`: copy the embedded store into PostgreSQL, to go from one node to several.
//! - `openapi`: print the HTTP API's OpenAPI 3.1 document (as served at `/openapi.json`).
//! - `completions`, `man`: shell completions and the manual page, from these definitions.
//!
//! Everything printed on stdout goes through `output` (`outln!`), so a closed pipe ends the
//! command quietly instead of panicking; the lint below keeps it that way.
#![deny(clippy::print_stdout)]

mod api;
mod completions;
mod logging;
mod man;
mod manage;
mod migrate;
mod output;
mod plugin;
mod send;
mod serve;
mod subscriptions;
mod verify;

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand};

use output::outln;

/// A webhook delivery engine with WebAssembly adapters.
#[derive(Debug, Parser)]
#[command(name = "wasmhook", version, about)]
struct Cli {
    /// Log lines on stderr as `text` (coloured only on a terminal) or `json`.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "WASMHOOK_LOG_FORMAT"
    )]
    log_format: logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// The whole command line as clap sees it (for completions and man pages).
fn command() -> clap::Command {
    Cli::command()
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the engine.
    Serve(serve::Args),
    /// Publish one event to a running engine.
    Send(send::Args),
    /// List, create, change, delete, rotate and test subscriptions.
    #[command(subcommand)]
    Subscriptions(Box<subscriptions::Command>),
    /// List, inspect and retry deliveries.
    #[command(subcommand)]
    Deliveries(manage::Deliveries),
    /// List and replay dead letters.
    #[command(subcommand, name = "dead-letters")]
    DeadLetters(manage::DeadLetters),
    /// Show each receiver endpoint's circuit breaker and load.
    Endpoints(api::Connection),
    /// Check that a running engine answers `/healthz` (exits non-zero if not).
    Health(api::Connection),
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
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(completions::Args),
    /// Print the manual page (roff), or write every page into a folder.
    Man(man::Args),
}

/// The log `serve` sets up on its defaults: text on stderr, `RUST_LOG` or the default
/// filter, no trace exporter. For the benchmark, so that its engine pays what a served
/// one pays for logging.
pub fn init_default_logging() {
    logging::init(logging::LogFormat::Text, logging::DEFAULT_FILTER, None);
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` sets logging up itself, once its config says whether traces are exported.
    if !matches!(cli.command, Command::Serve(_)) {
        logging::init(
            cli.log_format,
            match &cli.command {
                Command::Plugin(cmd) => cmd.default_log_filter(),
                _ => logging::DEFAULT_FILTER,
            },
            None,
        );
    }
    let result = match cli.command {
        Command::Serve(args) => serve::run(args, cli.log_format),
        Command::Send(args) => send::run(args),
        Command::Subscriptions(cmd) => subscriptions::run(*cmd),
        Command::Deliveries(cmd) => manage::deliveries(cmd),
        Command::DeadLetters(cmd) => manage::dead_letters(cmd),
        Command::Endpoints(connection) => manage::endpoints(connection),
        Command::Health(connection) => manage::health(connection),
        Command::Plugin(cmd) => plugin::run(cmd),
        Command::Wit(args) => plugin::wit(&args),
        Command::Verify(args) => verify::run(args),
        Command::Secret { plain } => {
            let secret = if plain {
                crate::signing::generate_plain_secret()
            } else {
                crate::signing::generate_secret()
            };
            outln!("{}", secret.expose())
                .map(|()| ExitCode::SUCCESS)
                .map_err(Into::into)
        }
        Command::MigrateStore(args) => migrate::run(args),
        Command::Openapi => outln!("{}", crate::api::openapi::document_json())
            .map(|()| ExitCode::SUCCESS)
            .map_err(Into::into),
        Command::Completions(args) => completions::run(args),
        Command::Man(args) => man::run(args),
    };
    match result {
        Ok(code) => code,
        // The reader went away (`| head`): what it wanted was printed.
        Err(e) if output::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A tokio runtime for one command.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
