//! `wasmhook migrate-store`: copy the embedded store into an empty PostgreSQL database, to
//! move from one node to several.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};

use super::output::{self, outln};
use crate::config::{Config, ProcessEnv};
use crate::keyring::{self, Keyring};
use crate::store::migrate::{Copied, MigrationKeys};
use crate::store::{PgTls, PostgresOptions, redact_url};

/// Arguments of `migrate-store`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The config of the engine that used the embedded store (for `[storage] path`, its
    /// storage keys, and TLS to PostgreSQL).
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
    let mut config = Config::load(args.config.as_deref(), &ProcessEnv)?;
    // The target is the --to database, whatever the config or environment says.
    config.storage.backend = crate::config::Backend::Embedded;
    let from = args.from.unwrap_or_else(|| config.storage.path.clone());
    let (keys, key_note) = migration_keys(&config, &from)?;
    let target = PostgresOptions {
        url: args.to.clone(),
        pool_size: 2,
        node_id: "migrate-store".into(),
        heartbeat: std::time::Duration::from_secs(5),
        lease: std::time::Duration::from_secs(30),
        tls: PgTls {
            sslmode: config.storage.sslmode,
            ca_file: config.storage.ca_file.clone(),
        },
    };
    let bar = progress_bar();
    let mut report = |copied: &Copied, total: u64| {
        bar.set_length(total);
        bar.set_position(copied.rows());
    };
    let copied = super::runtime()?.block_on(crate::store::migrate::embedded_to_postgres(
        &from,
        target,
        &keys,
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
        "next: set [storage] backend = \"postgres\" and url (or WASMHOOK_DATABASE_URL) on every node{key_note}, and start them"
    )?;
    Ok(ExitCode::SUCCESS)
}

/// The keys of the copy: the embedded store's specs open with the configured keys or the
/// key it generated in its folder; they are sealed again with the first configured key,
/// or, when none is configured, with that generated key, which every node then needs.
/// Also returns what the next step must say about the key.
fn migration_keys(config: &Config, from: &Path) -> anyhow::Result<(MigrationKeys, String)> {
    let configured = keyring::configured_keys(&config.storage)?;
    let generated_file = from.join(keyring::GENERATED_KEY_FILE);
    let generated = keyring::read_key_file(&generated_file)?;
    let source = Keyring::new(configured.iter().copied().chain(generated)).ok();
    let (target, note) = match (configured.first(), generated) {
        (Some(key), _) => (*key, String::new()),
        (None, Some(key)) => (
            key,
            format!(
                " with the same storage key: copy {} to each node and set [storage] encryption_key_files to it",
                generated_file.display()
            ),
        ),
        (None, None) => anyhow::bail!(
            "the PostgreSQL store needs a storage key, the same on every node: make one \
             (`openssl rand -base64 32 > /etc/wasmhook/storage.key`) and set [storage] encryption_key_files \
             in --config, or WASMHOOK_ENCRYPTION_KEYS"
        ),
    };
    let keys = MigrationKeys {
        source,
        target: Keyring::new([target])?,
    };
    Ok((keys, note))
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
