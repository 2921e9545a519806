//! `wasmhook plugin build`: runs an adapter project's own build, installing the language's
//! tools on first use the way the project says (`rustup target add`, `npm ci`, a `.venv`
//! with the pinned componentize-py), leaves `<name>.wasm` in the project folder, and checks
//! it as the engine would load it.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context as _, bail};

use super::out::{self, outln};
use super::{check, load};
use crate::config::Config;

/// Arguments of `plugin build`.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The project folder: a Rust crate (`Cargo.toml`), a JavaScript package
    /// (`package.json`) or a Python project (`pyproject.toml` and `app.py`).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
}

/// Runs `plugin build`.
pub fn run(args: &BuildArgs) -> anyhow::Result<ExitCode> {
    let dir = &args.dir;
    let started = Instant::now();
    let output = if dir.join("Cargo.toml").is_file() {
        rust(dir)?
    } else if dir.join("package.json").is_file() {
        javascript(dir)?
    } else if dir.join("app.py").is_file() {
        python(dir)?
    } else {
        bail!(
            "{} holds no adapter project: no Cargo.toml, package.json or app.py (make one with `wasmhook plugin new`)",
            dir.display()
        );
    };
    let config = Config::default();
    let sandbox = load::sandbox(&config)?;
    let loaded = load::load(&sandbox, &output, &config, true)?;
    outln!(
        "built {} ({} bytes, wasmhook:adapter@{}) in {:.1} s",
        output.display(),
        loaded.size,
        loaded.prepared.world_version,
        started.elapsed().as_secs_f64()
    )?;
    if let Some(manifest) = &loaded.manifest {
        out::raw(check::describe(manifest).as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `program args` in `dir`, with the build's output on this terminal.
fn step(dir: &Path, program: &str, args: &[&str]) -> anyhow::Result<()> {
    eprintln!("==> {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .current_dir(dir)
        .status()
        .with_context(|| format!("cannot run `{program}`; is it installed and on PATH?"))?;
    if !status.success() {
        bail!("`{program} {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

fn found(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The `[package] name` of a Cargo.toml.
fn crate_name(manifest: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(manifest)?;
    let value: toml::Table = toml::from_str(&text)?;
    value
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .map(str::to_owned)
        .with_context(|| format!("{} has no [package] name", manifest.display()))
}

fn rust(dir: &Path) -> anyhow::Result<PathBuf> {
    let name = crate_name(&dir.join("Cargo.toml"))?;
    if found("rustup") {
        let installed = Command::new("rustup")
            .args(["target", "list", "--installed"])
            .output()?;
        if !String::from_utf8_lossy(&installed.stdout)
            .lines()
            .any(|l| l.trim() == "wasm32-wasip2")
        {
            step(dir, "rustup", &["target", "add", "wasm32-wasip2"])?;
        }
    }
    // Cargo's own convention: CARGO_TARGET_DIR, else the project's target/.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.join("target"));
    let target = std::path::absolute(&target)?;
    let target_arg = target.to_string_lossy().into_owned();
    step(
        dir,
        "cargo",
        &[
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
            &target_arg,
        ],
    )?;
    let built = target
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    let output = dir.join(format!("{name}.wasm"));
    copy_into_place(&built, &output)?;
    Ok(output)
}

fn javascript(dir: &Path) -> anyhow::Result<PathBuf> {
    let text = std::fs::read_to_string(dir.join("package.json"))?;
    let package: serde_json::Value =
        serde_json::from_str(&text).context("package.json is not valid JSON")?;
    let name = package["name"]
        .as_str()
        .context("package.json has no name")?
        .to_owned();
    if !found("npm") {
        bail!(
            "node and npm are needed to build a JavaScript adapter (Debian: apt-get install nodejs npm)"
        );
    }
    if !dir.join("node_modules").exists() {
        // The pinned tools, from npm's cache when another project installed them already.
        let install = if dir.join("package-lock.json").is_file() {
            "ci"
        } else {
            "install"
        };
        step(
            dir,
            "npm",
            &[install, "--no-audit", "--no-fund", "--prefer-offline"],
        )?;
    }
    step(dir, "npm", &["run", "--silent", "build"])?;
    Ok(dir.join(format!("{name}.wasm")))
}

fn python(dir: &Path) -> anyhow::Result<PathBuf> {
    let text = std::fs::read_to_string(dir.join("pyproject.toml"))
        .context("a Python adapter project needs a pyproject.toml with [project] name")?;
    let value: toml::Table = toml::from_str(&text)?;
    let name = value
        .get("project")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .context("pyproject.toml has no [project] name")?
        .to_owned();
    let componentize = dir.join(".venv/bin/componentize-py");
    if !componentize.exists() {
        if !found("python3") {
            bail!("python3 (3.9 or newer, with venv) is needed to build a Python adapter");
        }
        step(dir, "python3", &["-m", "venv", ".venv"])?;
        step(
            dir,
            ".venv/bin/pip",
            &[
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
                "requirements.txt",
            ],
        )?;
    }
    let output = format!("{name}.wasm");
    step(
        dir,
        ".venv/bin/componentize-py",
        &[
            "-d",
            "wit",
            "-w",
            "adapter",
            "componentize",
            "app",
            "-o",
            &output,
        ],
    )?;
    Ok(dir.join(output))
}

/// Copies `from` to `to` through a temporary file and a rename, so an engine watching the
/// folder never loads a half-written file.
fn copy_into_place(from: &Path, to: &Path) -> anyhow::Result<()> {
    let tmp = to.with_extension("wasm.tmp");
    std::fs::copy(from, &tmp).with_context(|| format!("cannot copy {}", from.display()))?;
    std::fs::rename(&tmp, to)?;
    Ok(())
}
