//! `wasmhook plugin watch`: the dry run of `plugin run`, again at every change of the
//! adapter file or the event file, so `plugin build` in one terminal shows its effect in
//! another. The folders are watched (not the files), so a build that replaces the file by
//! a rename is seen too.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context as _;
use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, new_debouncer};

use super::dry_run::{self, RunArgs};
use super::load;
use crate::config::{Config, ProcessEnv};

/// How long the files must be quiet before a rerun: a build writes in several steps.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// Runs the dry run, then again after each change, until interrupted.
pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(args.config.as_deref(), &ProcessEnv)?;
    let sandbox = load::sandbox(&config)?;
    let watched: BTreeSet<PathBuf> = [&args.file, &args.event]
        .into_iter()
        .map(|p| absolute(p))
        .collect();
    let (tx, rx) = mpsc::channel::<()>();
    let files = watched.clone();
    let mut debouncer = new_debouncer(DEBOUNCE, None, move |result: DebounceEventResult| {
        let Ok(events) = result else { return };
        let relevant = events
            .iter()
            .any(|e| !e.event.kind.is_access() && e.event.paths.iter().any(|p| files.contains(p)));
        if relevant {
            let _ = tx.send(());
        }
    })?;
    let folders: BTreeSet<PathBuf> = watched
        .iter()
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .collect();
    for folder in &folders {
        debouncer
            .watch(folder, RecursiveMode::NonRecursive)
            .with_context(|| format!("cannot watch {}", folder.display()))?;
    }
    let mut runs = 0u64;
    loop {
        if runs > 0 {
            eprintln!(
                "--- run {} after a change, at {} ---",
                runs + 1,
                crate::clock::rfc3339(crate::clock::now_ms())
            );
        }
        match load::load(&sandbox, &args.file, &config, !args.no_cache) {
            Ok(loaded) => {
                if let Err(e) = dry_run::once(&sandbox, &loaded, args, &config) {
                    eprintln!("error: {e:#}");
                }
            }
            Err(e) => eprintln!("error: {e:#}"),
        }
        if runs == 0 {
            let names: Vec<String> = watched.iter().map(|p| p.display().to_string()).collect();
            eprintln!("watching {}; Ctrl-C to stop", names.join(" and "));
        }
        runs += 1;
        rx.recv().context("the file watcher stopped")?;
        // A build writes several events; one rerun covers them.
        while rx.recv_timeout(DEBOUNCE).is_ok() {}
    }
}

/// The path as the watcher reports it: its folder resolved (symlinks too), then its name.
fn absolute(path: &Path) -> PathBuf {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    match (path.parent(), path.file_name()) {
        (Some(folder), Some(name)) => std::fs::canonicalize(folder)
            .map(|f| f.join(name))
            .unwrap_or(path),
        _ => path,
    }
}
