//! `wasmhook migrate-store`: copy the embedded store into an empty PostgreSQL database, to
//! move from one node to several.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{Config, ProcessEnv};
use crate::store::redact_url;

/// Arguments of `migrate-store`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The config of the engine that used the embedded store (for `[storage] path`).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The embedded store's folder, instead of reading it from `--config`.
    #[arg(long)]
    from: Option<PathBuf>,
    /// The PostgreSQL database to copy into (empty), `postgres://…`.
    #[arg(long, env = "WASMHOOK_DATABASE_URL", hide_env_values = true)]
    to: String,
}

/// Copies the store and reports what moved.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let from = match args.from {
        Some(dir) => dir,
        None => {
            let mut config = Config::load(args.config.as_deref(), &ProcessEnv)?;
            // The target is the --to database, whatever the config or environment says.
            config.storage.backend = crate::config::Backend::Embedded;
            config.storage.path
        }
    };
    let copied =
        super::runtime()?.block_on(crate::store::migrate::embedded_to_postgres(&from, &args.to))?;
    println!(
        "copied {} subscriptions, {} events, {} deliveries and {} attempts from {} to {}",
        copied.subscriptions,
        copied.events,
        copied.deliveries,
        copied.attempts,
        from.display(),
        redact_url(&args.to)
    );
    println!(
        "next: set [storage] backend = \"postgres\" and url (or WASMHOOK_DATABASE_URL) on every node, and start them"
    );
    Ok(ExitCode::SUCCESS)
}
