//! The loaded plugins: one `Arc<LoadedPlugin>` per name in a map that is swapped whole
//! (`ArcSwap`), so a delivery that already holds a plugin finishes on that version while new
//! deliveries pick up the new one. A plugin file is read only if it is a regular file under
//! `[plugins] max_plugin_bytes`, and bytes that were already loaded or already rejected are
//! not compiled (or logged) again.

use std::collections::HashMap;
use std::io::Read as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::cache::CompileCache;
use super::gate::CallGate;
use super::manifest::{Manifest, SettingsError};
use super::{CallLimits, Fault, PluginLabel, PrepareError, Prepared, Sandbox};
use crate::clock::{now_ms, rfc3339};
use crate::config::PluginsConfig;
use crate::subscription::validate_plugin_name;

/// One loaded version of a plugin.
#[derive(Debug)]
pub struct LoadedPlugin {
    /// Name and version, for messages.
    pub label: PluginLabel,
    /// The WIT world version it implements.
    pub world_version: &'static str,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// File size in bytes.
    pub size: u64,
    /// When it was loaded, Unix ms.
    pub loaded_at_ms: i64,
    /// How long compiling (or loading from the compile cache) and type-checking took.
    pub compile_time: Duration,
    /// Whether the native code came from the compile cache.
    pub from_cache: bool,
    /// Ready to instantiate.
    pub prepared: Prepared,
    /// What the adapter says it is and takes (WIT 0.2.0 and later).
    pub manifest: Option<Manifest>,
    /// Call counters.
    pub stats: PluginStats,
    /// Calls running and queued for this version.
    pub gate: CallGate,
}

/// Counters for one loaded version.
#[derive(Debug, Default)]
pub struct PluginStats {
    /// Calls made.
    pub calls: AtomicU64,
    /// Calls that ended in an error or fault.
    pub errors: AtomicU64,
    /// Sum of call latencies, microseconds.
    pub latency_us_total: AtomicU64,
}

impl PluginStats {
    /// Counts one call.
    pub fn observe(&self, latency: Duration, failed: bool) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.latency_us_total
            .fetch_add(latency.as_micros() as u64, Ordering::Relaxed);
    }
}

/// Why a plugin file was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The name is a FIFO, a device, a socket or a folder (or a symlink to one): only
    /// regular files are loaded, so a special file can neither block nor flood the engine.
    #[error("{path} is {kind}, not a regular file; only regular files are loaded as plugins")]
    NotRegular {
        /// The file.
        path: String,
        /// What it is instead: "a FIFO", "a character device", …
        kind: &'static str,
    },
    /// The file is over `[plugins] max_plugin_bytes`.
    #[error(
        "{path} is {size} bytes, over the {limit}-byte limit; raise [plugins] max_plugin_bytes if it is a real adapter"
    )]
    TooLarge {
        /// The file.
        path: String,
        /// Its size (at least this much: reading stops at the limit).
        size: u64,
        /// `[plugins] max_plugin_bytes`.
        limit: u64,
    },
    /// The file name is not a valid plugin name.
    #[error("{0}")]
    BadName(String),
    /// Compiling or type-checking failed.
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    /// Its `manifest` export failed or returned something unusable.
    #[error("its manifest cannot be used: {0}")]
    BadManifest(String),
}

/// What `/v1/plugins` shows for one plugin.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PluginInfo {
    /// Plugin name (file stem).
    pub name: String,
    /// Load counter since start.
    pub version: Option<u32>,
    /// WIT world version.
    #[schema(value_type = Option<String>)]
    pub world_version: Option<&'static str>,
    /// SHA-256 of the loaded file.
    pub sha256: Option<String>,
    /// Size of the loaded file.
    pub size: Option<u64>,
    /// When the serving version was loaded, RFC 3339.
    #[schema(format = DateTime)]
    pub loaded_at: Option<String>,
    /// Compile time of the serving version, ms (loading time when it came from the cache).
    pub compile_ms: Option<f64>,
    /// Whether the serving version's native code came from the compile cache.
    pub from_cache: Option<bool>,
    /// What the adapter says it is and which settings it takes (WIT 0.2.0 and later).
    pub manifest: Option<Manifest>,
    /// Why the last load of this name failed, if it did (the previous version keeps serving).
    pub last_error: Option<String>,
    /// Calls to the serving version.
    pub calls: u64,
    /// Failed calls to the serving version.
    pub errors: u64,
    /// Mean call latency, microseconds.
    pub mean_latency_us: Option<f64>,
}

/// Why the last load of a name failed.
#[derive(Debug, Clone)]
struct Rejection {
    /// The error, for `/v1/plugins`.
    message: String,
    /// SHA-256 of the rejected bytes, when they were read: the same bytes are not tried
    /// (nor logged) again, so a bad file costs one error, not one per file event.
    sha256: Option<String>,
}

/// What [`Registry::check_settings`] could check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingsCheck {
    /// The settings fit the manifest; these settings are secret by the manifest.
    Checked {
        /// The manifest's secret settings.
        secret: Vec<String>,
    },
    /// The plugin is not loaded, so nothing was checked yet.
    NotLoaded,
    /// The plugin has no manifest (WIT 0.1.0): settings go to it unchecked.
    NoManifest,
}

/// The set of loaded plugins.
#[derive(Debug)]
pub struct Registry {
    sandbox: Arc<Sandbox>,
    dir: PathBuf,
    /// `[plugins]` limits and per-plugin overrides.
    config: PluginsConfig,
    cache: Option<CompileCache>,
    loaded: ArcSwap<HashMap<String, Arc<LoadedPlugin>>>,
    /// Last load failure per name; cleared by a successful load.
    last_errors: Mutex<HashMap<String, Rejection>>,
    /// Next version number per name.
    versions: Mutex<HashMap<String, u32>>,
}

impl Registry {
    /// An empty registry over `config.dir`, compiling through `cache` when given.
    pub fn new(sandbox: Arc<Sandbox>, config: PluginsConfig, cache: Option<CompileCache>) -> Self {
        Self {
            sandbox,
            dir: config.dir.clone(),
            config,
            cache,
            loaded: ArcSwap::default(),
            last_errors: Mutex::default(),
            versions: Mutex::default(),
        }
    }

    /// The sandbox plugins run in.
    pub fn sandbox(&self) -> &Arc<Sandbox> {
        &self.sandbox
    }

    /// The watched folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The limits for a call of plugin `name`: its overrides, else the `[plugins]` defaults.
    pub fn limits_for(&self, name: &str) -> CallLimits {
        CallLimits::for_plugin(&self.config, name)
    }

    /// The serving version of `name`.
    pub fn get(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        self.loaded.load().get(name).cloned()
    }

    /// Checks a subscription's `settings` against the manifest of plugin `name`, as config
    /// load and the API do before accepting it.
    pub fn check_settings(
        &self,
        name: &str,
        settings: &std::collections::BTreeMap<String, String>,
    ) -> Result<SettingsCheck, SettingsError> {
        let Some(plugin) = self.get(name) else {
            return Ok(SettingsCheck::NotLoaded);
        };
        let Some(manifest) = &plugin.manifest else {
            return Ok(SettingsCheck::NoManifest);
        };
        manifest.check_settings(name, settings)?;
        Ok(SettingsCheck::Checked {
            secret: manifest.secret_names().map(str::to_owned).collect(),
        })
    }

    /// Loads every `*.wasm` in the folder. Blocking and CPU-heavy: run it off the runtime.
    /// Failures are logged and remembered; they never stop the others from loading.
    pub fn load_all(&self) {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot read the plugins folder; no adapters loaded");
                return;
            }
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| plugin_name(p).is_some())
            .collect();
        paths.sort();
        for path in paths {
            let _ = self.load(&path);
        }
    }

    /// Loads or reloads one file, swapping it in on success. Returns `Ok(None)` when the
    /// bytes are those already serving or already rejected: nothing is compiled or logged
    /// again. On failure the previous version (if any) keeps serving and the error is kept
    /// for `/v1/plugins`.
    pub fn load(&self, path: &Path) -> Result<Option<Arc<LoadedPlugin>>, LoadError> {
        let Some(name) = plugin_name(path) else {
            return Ok(None);
        };
        let (result, sha256) =
            match validate_plugin_name(&name).map_err(|e| LoadError::BadName(e.to_string())) {
                Err(e) => (Err(e), None),
                Ok(()) => match read_plugin_file(path, self.config.max_plugin_bytes) {
                    Err(e) => (Err(e), None),
                    Ok(bytes) => {
                        let sha256 = format!("{:x}", Sha256::digest(&bytes));
                        if self.get(&name).is_some_and(|p| p.sha256 == sha256)
                            || self.errors().get(&name).and_then(|r| r.sha256.as_deref())
                                == Some(sha256.as_str())
                        {
                            return Ok(None); // unchanged: a touch or a duplicate file event
                        }
                        (self.install(&name, &bytes, sha256.clone()), Some(sha256))
                    }
                },
            };
        match &result {
            Ok(plugin) => {
                tracing::info!(
                    plugin = %plugin.label.name, version = plugin.label.version, world = plugin.world_version,
                    sha256 = %plugin.label.hash, compile_ms = plugin.compile_time.as_secs_f64() * 1e3,
                    from_cache = plugin.from_cache, "loaded plugin"
                );
                self.errors().remove(&name);
            }
            Err(e) => {
                tracing::error!(plugin = %name, path = %path.display(), error = %e, "rejected plugin file; the previous version, if any, keeps serving");
                let message = e.to_string();
                self.errors().insert(name, Rejection { message, sha256 });
            }
        }
        result.map(Some)
    }

    /// Compiles (or takes from the compile cache) and swaps in `bytes` as plugin `name`.
    fn install(
        &self,
        name: &str,
        bytes: &[u8],
        sha256: String,
    ) -> Result<Arc<LoadedPlugin>, LoadError> {
        let started = Instant::now();
        let cached = self
            .cache
            .as_ref()
            .and_then(|c| c.load(self.sandbox.engine(), &sha256));
        let from_cache = cached.is_some();
        let component = match cached {
            Some(component) => component,
            None => self.sandbox.compile(bytes)?,
        };
        let prepared = self.sandbox.prepare(&component)?;
        if let (Some(cache), false) = (&self.cache, from_cache) {
            cache.store(&sha256, &component);
        }
        let compile_time = started.elapsed();
        let next_version = self
            .versions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .map_or(1, |v| v + 1);
        let label = PluginLabel {
            name: name.to_owned(),
            version: next_version,
            hash: sha256[..12].to_owned(),
        };
        let manifest = read_manifest(&self.sandbox, &prepared, &label, &self.limits_for(name))?;
        self.versions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), next_version);
        let plugin = Arc::new(LoadedPlugin {
            label,
            world_version: prepared.world_version,
            sha256,
            size: bytes.len() as u64,
            loaded_at_ms: now_ms(),
            compile_time,
            from_cache,
            prepared,
            manifest,
            stats: PluginStats::default(),
            gate: CallGate::new(self.limits_for(name).max_concurrent_calls),
        });
        let previous = self.loaded.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.insert(name.to_owned(), Arc::clone(&plugin));
            next
        });
        if let Some(old) = previous.get(name) {
            self.sandbox.forget(&old.prepared);
        }
        Ok(plugin)
    }

    /// Stops serving `name` (its file was deleted). Attempts already running finish.
    pub fn remove(&self, name: &str) -> bool {
        let previous = self.loaded.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.remove(name);
            next
        });
        self.errors().remove(name);
        match previous.get(name) {
            Some(old) => {
                self.sandbox.forget(&old.prepared);
                tracing::warn!(
                    plugin = name,
                    "plugin file removed; its deliveries wait until it is back"
                );
                true
            }
            None => false,
        }
    }

    /// Every plugin that is loaded or failed to load, by name.
    pub fn list(&self) -> Vec<PluginInfo> {
        let loaded = self.loaded.load();
        let errors: HashMap<String, String> = self
            .errors()
            .iter()
            .map(|(name, r)| (name.clone(), r.message.clone()))
            .collect();
        let mut names: Vec<&String> = loaded.keys().chain(errors.keys()).collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|name| {
                let p = loaded.get(name);
                let calls = p.map_or(0, |p| p.stats.calls.load(Ordering::Relaxed));
                PluginInfo {
                    name: name.clone(),
                    version: p.map(|p| p.label.version),
                    world_version: p.map(|p| p.world_version),
                    sha256: p.map(|p| p.sha256.clone()),
                    size: p.map(|p| p.size),
                    loaded_at: p.map(|p| rfc3339(p.loaded_at_ms)),
                    compile_ms: p.map(|p| p.compile_time.as_secs_f64() * 1e3),
                    from_cache: p.map(|p| p.from_cache),
                    manifest: p.and_then(|p| p.manifest.clone()),
                    last_error: errors.get(name).cloned(),
                    calls,
                    errors: p.map_or(0, |p| p.stats.errors.load(Ordering::Relaxed)),
                    mean_latency_us: p.filter(|_| calls > 0).map(|p| {
                        p.stats.latency_us_total.load(Ordering::Relaxed) as f64 / calls as f64
                    }),
                }
            })
            .collect()
    }

    fn errors(&self) -> std::sync::MutexGuard<'_, HashMap<String, Rejection>> {
        self.last_errors.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Reads a plugin file without ever blocking or reading without bound: the file is opened
/// non-blocking (a FIFO opens at once instead of waiting for a writer), its type is checked
/// on the opened descriptor (no window between a check and the open), and at most `limit`
/// bytes are read even if it grows meanwhile.
pub fn read_plugin_file(path: &Path, limit: u64) -> Result<Vec<u8>, LoadError> {
    let read_error = |e: std::io::Error| LoadError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(read_error)?;
    let meta = file.metadata().map_err(read_error)?;
    if let Some(kind) = not_regular(meta.file_type()) {
        return Err(LoadError::NotRegular {
            path: path.display().to_string(),
            kind,
        });
    }
    let too_large = |size| LoadError::TooLarge {
        path: path.display().to_string(),
        size,
        limit,
    };
    if meta.len() > limit {
        return Err(too_large(meta.len()));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// What a file is when it is not a regular file, in words for an error message.
fn not_regular(file_type: std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt as _;
    if file_type.is_file() {
        None
    } else if file_type.is_dir() {
        Some("a folder")
    } else if file_type.is_fifo() {
        Some("a FIFO")
    } else if file_type.is_char_device() {
        Some("a character device")
    } else if file_type.is_block_device() {
        Some("a block device")
    } else if file_type.is_socket() {
        Some("a socket")
    } else {
        Some("an unknown kind of file")
    }
}

/// Calls the manifest export of a freshly prepared plugin and checks it. Blocking: it runs
/// the guest on the current runtime (or a small one of its own outside any runtime).
pub fn read_manifest(
    sandbox: &Sandbox,
    prepared: &Prepared,
    label: &PluginLabel,
    limits: &CallLimits,
) -> Result<Option<Manifest>, LoadError> {
    let call = sandbox.manifest(prepared, label, limits);
    let result: Result<Option<Manifest>, Fault> = match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle.block_on(call),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| LoadError::BadManifest(e.to_string()))?
            .block_on(call),
    };
    let manifest = result.map_err(|fault| LoadError::BadManifest(fault.to_string()))?;
    if let Some(m) = &manifest {
        m.check().map_err(LoadError::BadManifest)?;
    }
    Ok(manifest)
}

/// The plugin name of a path in the plugins folder: the stem of a `*.wasm` file that is not
/// a dotfile or an editor temp file. Anything else is ignored.
pub fn plugin_name(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    if file.starts_with('.') || file.starts_with('#') || file.ends_with('~') {
        return None;
    }
    file.strip_suffix(".wasm")
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_under_the_limit_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.wasm");
        std::fs::write(&file, b"0123456789").unwrap();
        assert_eq!(read_plugin_file(&file, 10).unwrap(), b"0123456789");
        let err = read_plugin_file(&file, 9).unwrap_err();
        assert!(
            matches!(
                err,
                LoadError::TooLarge {
                    size: 10,
                    limit: 9,
                    ..
                }
            ),
            "{err}"
        );

        // A symlink to a device is opened (it could be a symlink to a real file) but not
        // read: /dev/zero would never end.
        let zero = dir.path().join("zero.wasm");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let err = read_plugin_file(&zero, 1 << 30).unwrap_err();
        assert!(
            err.to_string()
                .contains("is a character device, not a regular file"),
            "{err}"
        );

        // A FIFO with no writer: opening it must not wait for one.
        let fifo = dir.path().join("x.wasm");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let err = read_plugin_file(&fifo, 1 << 30).unwrap_err();
        assert!(err.to_string().contains("is a FIFO"), "{err}");

        let err = read_plugin_file(dir.path(), 1 << 30).unwrap_err();
        assert!(err.to_string().contains("a folder"), "{err}");
        let err = read_plugin_file(&dir.path().join("missing.wasm"), 1).unwrap_err();
        assert!(matches!(err, LoadError::Read { .. }), "{err}");
    }

    #[test]
    fn only_visible_wasm_files_are_plugins() {
        assert_eq!(
            plugin_name(Path::new("/p/slack.wasm")).as_deref(),
            Some("slack")
        );
        assert_eq!(plugin_name(Path::new("/p/.slack.wasm.swp")), None);
        assert_eq!(plugin_name(Path::new("/p/.slack.wasm")), None);
        assert_eq!(plugin_name(Path::new("/p/slack.wasm~")), None);
        assert_eq!(plugin_name(Path::new("/p/#slack.wasm#")), None);
        assert_eq!(plugin_name(Path::new("/p/slack.wasm.tmp")), None);
        assert_eq!(plugin_name(Path::new("/p/readme.md")), None);
        assert_eq!(plugin_name(Path::new("/p/.wasm")), None);
    }
}
