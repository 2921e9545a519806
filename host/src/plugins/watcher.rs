//! Hot reload: watches the plugins folder (not the files, so renames and new files are
//! seen) through `notify` with a debouncer, and reloads each changed plugin off the async
//! runtime. Writing a file in place and renaming a finished file over the old one both
//! work: the debouncer waits for the folder to be quiet, and a load that fails (a file
//! caught half-written) leaves the last good version serving until the next change.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, new_debouncer};
use tokio::sync::mpsc;

use super::Registry;
use super::registry::plugin_name;

/// What changed, for the engine to react (for example, to resume waiting deliveries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new version of this plugin is serving.
    Loaded(String),
    /// This plugin's file is gone.
    Removed(String),
    /// This plugin's file was refused; the previous version, if any, keeps serving.
    Rejected {
        /// The plugin.
        name: String,
        /// Why.
        error: String,
    },
}

/// Keeps the watch alive; dropping it stops watching.
pub struct Watch {
    _debouncer: Box<dyn Send>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Watch")
    }
}

/// Starts watching `registry.dir()`; each change is applied to the registry and then
/// reported through `on_change`.
pub fn watch(
    registry: Arc<Registry>,
    debounce: Duration,
    on_change: impl Fn(Change) + Send + Sync + 'static,
) -> anyhow::Result<Watch> {
    let dir = registry.dir().to_path_buf();
    std::fs::create_dir_all(&dir)?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<PathBuf>>();
    let mut debouncer =
        new_debouncer(
            debounce,
            None,
            move |result: DebounceEventResult| match result {
                Ok(events) => {
                    let paths = events.into_iter().flat_map(|e| e.event.paths).collect();
                    let _ = tx.send(paths);
                }
                Err(errors) => {
                    for e in errors {
                        tracing::warn!(error = %e, "plugin folder watch error");
                    }
                }
            },
        )?;
    debouncer.watch(&dir, RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        while let Some(mut paths) = rx.recv().await {
            // Coalesce whatever else is queued; reload each plugin once.
            while let Ok(more) = rx.try_recv() {
                paths.extend(more);
            }
            let names: BTreeSet<String> = paths.iter().filter_map(|p| plugin_name(p)).collect();
            for name in names {
                let path = dir.join(format!("{name}.wasm"));
                let registry = Arc::clone(&registry);
                let change =
                    tokio::task::spawn_blocking(move || apply(&registry, &name, &path)).await;
                if let Ok(Some(change)) = change {
                    on_change(change);
                }
            }
        }
    });
    Ok(Watch {
        _debouncer: Box::new(debouncer),
    })
}

/// Reloads or removes one plugin to match its file.
fn apply(registry: &Registry, name: &str, path: &Path) -> Option<Change> {
    if path.is_file() {
        match registry.load(path) {
            Ok(Some(_)) => Some(Change::Loaded(name.to_owned())),
            // Unchanged content.
            Ok(None) => None,
            // Logged by the registry; the old version keeps serving.
            Err(e) => Some(Change::Rejected {
                name: name.to_owned(),
                error: e.to_string(),
            }),
        }
    } else if registry.remove(name) {
        Some(Change::Removed(name.to_owned()))
    } else {
        None
    }
}
