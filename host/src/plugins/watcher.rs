//! Hot reload: watches the plugins folder (not the files, so renames and new files are
//! seen) through `notify` with a debouncer, and reloads each changed plugin off the async
//! runtime. Writing a file in place and renaming a finished file over the old one both
//! work: the debouncer waits for the folder to be quiet, and a load that fails (a file
//! caught half-written) leaves the last good version serving until the next change.
//!
//! Only events that can change a file's content count (create, write, close after writing,
//! rename, remove): the engine's own reads fire open and access events (gVisor reports them
//! whatever the watch asked for), and reacting to those reloaded a file forever.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::RecursiveMode;
use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
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
    /// `Sync` too, so that the embedded `Engine` that holds it is: producers share one
    /// engine across tasks.
    _debouncer: Box<dyn Send + Sync>,
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
    let known = Arc::clone(&registry);
    let mut debouncer =
        new_debouncer(
            debounce,
            None,
            move |result: DebounceEventResult| match result {
                Ok(events) => {
                    let mut paths = Vec::new();
                    for e in events {
                        if e.event.need_rescan() {
                            // Events were lost: look at every file once more (unchanged
                            // content is not reloaded).
                            paths.extend(rescan_paths(&known));
                        } else if reloads(&e.event.kind) {
                            paths.extend(e.event.paths);
                        }
                    }
                    if !paths.is_empty() {
                        let _ = tx.send(paths);
                    }
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

/// Whether a file event can mean new content (or a file gone): creates, writes, a close
/// after writing, renames and removes. Opens, reads, closes after reading and metadata
/// changes (permissions, times) do not: the engine's own loads cause those.
pub fn reloads(kind: &EventKind) -> bool {
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Name(_) | ModifyKind::Any) => true,
        EventKind::Modify(ModifyKind::Metadata(_) | ModifyKind::Other) => false,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Any | EventKind::Other => false,
    }
}

/// Every file in the folder and every plugin the registry knows (a removed file is found
/// that way), for a rescan after lost events.
fn rescan_paths(registry: &Registry) -> Vec<PathBuf> {
    let dir = registry.dir();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    paths.extend(
        registry
            .list()
            .into_iter()
            .map(|p| dir.join(format!("{}.wasm", p.name))),
    );
    paths
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

#[cfg(test)]
mod tests {
    use notify::event::{CreateKind, DataChange, MetadataKind, RemoveKind, RenameMode};

    use super::*;

    #[test]
    fn only_content_changes_reload() {
        for kind in [
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
            EventKind::Modify(ModifyKind::Any),
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Remove(RemoveKind::File),
        ] {
            assert!(reloads(&kind), "{kind:?}");
        }
        for kind in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Read),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Access(AccessKind::Any),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
            EventKind::Any,
            EventKind::Other,
        ] {
            assert!(!reloads(&kind), "{kind:?}");
        }
    }
}
