//! `wasmhook migrate-store`: copy the embedded store into an empty PostgreSQL database, to
//! move from one node to several.

use std::path::PathBuf;
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};

use super::output::{self, outln};
use crate::config::{Config, ProcessEnv};
use crate::store::migrate::Copied;
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
    let bar = progress_bar();
    let mut report = |copied: &Copied, total: u64| {
        bar.set_length(total);
        bar.set_position(copied.rows());
    };
    let copied = super::runtime()?.block_on(crate::store::migrate::embedded_to_postgres(
        &from,
        &args.to,
        &mut report,
    ));
    bar.finish_and_clear();
    let copied = copied?;
    outln!(
        "copied {} subscriptions, {} events, {} deliveries and {} attempts from {} to {}",
        copied.subscriptions,
        copied.events,
        copied.deliveries,
        copied.attempts,
        from.display(),
        redact_url(&args.to)
    )?;
    outln!(
        "next: set [storage] backend = \"postgres\" and url (or WASMHOOK_DATABASE_URL) on every node, and start them"
    )?;
    Ok(ExitCode::SUCCESS)
}

/// A bar on stderr counting copied rows (events, deliveries, attempts), drawn only when
/// stderr is a terminal, so logs and pipes get none of its escape codes.
fn progress_bar() -> ProgressBar {
    if !output::stderr_is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "copying {bar:40} {human_pos}/{human_len} rows ({per_sec}, {eta} left)",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}
