//! `wasmhook plugin check`: whether a component is an adapter this engine runs, which WIT
//! version, its imports and exports, and its manifest: name, version and each setting.

use std::path::Path;
use std::process::ExitCode;

use super::load;
use super::out::{self, outln};
use crate::config::Config;
use crate::plugins::Manifest;

/// Checks `file` and prints what it is.
pub fn run(file: &Path, use_cache: bool) -> anyhow::Result<ExitCode> {
    let config = Config::default();
    let sandbox = load::sandbox(&config)?;
    let loaded = load::load(&sandbox, file, &config, use_cache)?;
    let ty = loaded.component.component_type();
    let engine = sandbox.engine();
    let mut imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_owned()).collect();
    let mut exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_owned()).collect();
    imports.sort();
    exports.sort();
    outln!("{}: ok", file.display())?;
    outln!(
        "implements: wasmhook:adapter/adapter@{}",
        loaded.prepared.world_version
    )?;
    outln!("size: {} bytes", loaded.size)?;
    outln!(
        "compiled in {:.0} ms{}",
        loaded.compile_time.as_secs_f64() * 1e3,
        if loaded.from_cache {
            " (from the compile cache)"
        } else {
            ""
        }
    )?;
    outln!("imports:")?;
    for name in imports {
        outln!("  {name}")?;
    }
    outln!("exports:")?;
    for name in exports {
        outln!("  {name}")?;
    }
    match &loaded.manifest {
        Some(manifest) => out::raw(describe(manifest).as_bytes())?,
        None => outln!(
            "manifest: none (WIT {} has no manifest; settings are passed unchecked)",
            loaded.prepared.world_version
        )?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The manifest as `plugin check` prints it.
pub fn describe(manifest: &Manifest) -> String {
    let mut out = format!("manifest: {}\n", manifest.label());
    if !manifest.description.is_empty() {
        out.push_str(&format!("  {}\n", manifest.description));
    }
    if manifest.settings.is_empty() {
        out.push_str("settings: none\n");
        return out;
    }
    out.push_str("settings:\n");
    for s in &manifest.settings {
        let mut traits = vec![s.kind.as_str().to_owned()];
        if s.required {
            traits.push("required".into());
        }
        if s.secret {
            traits.push("secret".into());
        }
        if let Some(default) = &s.default {
            traits.push(format!("default `{default}`"));
        }
        if !s.allowed.is_empty() {
            traits.push(format!("one of {}", s.allowed.join(", ")));
        }
        out.push_str(&format!("  {} ({})", s.name, traits.join(", ")));
        if !s.description.is_empty() {
            out.push_str(&format!(": {}", s.description));
        }
        out.push('\n');
    }
    out
}
