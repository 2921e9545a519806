//! Loads an adapter file for the author's commands: compiled through a compile cache of
//! their own (so a second dry run of a JavaScript or Python adapter takes about a second,
//! not the 6 to 18 s a compile costs), type-checked, with its manifest read.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use crate::config::Config;
use crate::plugins::registry::read_manifest;
use crate::plugins::{CallLimits, CompileCache, Manifest, PluginLabel, Prepared, Sandbox};

/// One adapter file, ready to run.
pub struct Loaded {
    /// The component, for its imports and exports.
    pub component: Component,
    /// Type-checked against a supported world.
    pub prepared: Prepared,
    /// What it declares (WIT 0.2.0 and later).
    pub manifest: Option<Manifest>,
    /// `<file stem>` v1, for messages.
    pub label: PluginLabel,
    /// File size.
    pub size: usize,
    /// How long compiling (or loading from the cache) took.
    pub compile_time: Duration,
    /// Whether the native code came from the cache.
    pub from_cache: bool,
}

/// The author's compile cache: `$WASMHOOK_CACHE_DIR`, else `$XDG_CACHE_HOME/wasmhook/compiled`,
/// else `~/.cache/wasmhook/compiled`.
pub fn cache_dir() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("WASMHOOK_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    let base = var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("wasmhook").join("compiled"))
}

/// The sandbox the author's commands run in: the engine's, sized for one call at a time.
pub fn sandbox(config: &Config) -> anyhow::Result<Sandbox> {
    let mut config = config.clone();
    config.delivery.concurrency = 1;
    crate::engine::sandbox(&config)
}

/// Compiles (or loads from the cache), type-checks and reads the manifest of `file`.
pub fn load(
    sandbox: &Sandbox,
    file: &Path,
    config: &Config,
    use_cache: bool,
) -> anyhow::Result<Loaded> {
    // Never blocks on a FIFO or reads without bound, as the engine's own loads.
    let bytes = crate::plugins::registry::read_plugin_file(file, config.plugins.max_plugin_bytes)?;
    let unusable = || format!("{} is not a usable adapter", file.display());
    let sha256 = format!("{:x}", Sha256::digest(&bytes));
    let cache = use_cache
        .then(cache_dir)
        .flatten()
        .and_then(|dir| CompileCache::open(&dir, sandbox.engine()).ok());
    let started = Instant::now();
    let cached = cache
        .as_ref()
        .and_then(|c| c.load(sandbox.engine(), &sha256));
    let from_cache = cached.is_some();
    let component = match cached {
        Some(component) => component,
        None => sandbox.compile(&bytes).with_context(unusable)?,
    };
    let prepared = sandbox.prepare(&component).with_context(unusable)?;
    if let (Some(cache), false) = (&cache, from_cache) {
        cache.store(&sha256, &component);
    }
    let compile_time = started.elapsed();
    let name = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("adapter")
        .to_owned();
    let label = PluginLabel {
        name,
        version: 1,
        hash: sha256[..12].to_owned(),
    };
    let limits = CallLimits::for_plugin(&config.plugins, &label.name);
    let manifest = read_manifest(sandbox, &prepared, &label, &limits).with_context(unusable)?;
    Ok(Loaded {
        component,
        prepared,
        manifest,
        label,
        size: bytes.len(),
        compile_time,
        from_cache,
    })
}
