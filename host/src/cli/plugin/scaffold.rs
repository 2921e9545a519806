//! `wasmhook plugin new` and `wasmhook wit`. A new project holds everything it needs to
//! build with one command: the WIT, the language's helpers (for Rust, a copy of the
//! `wasmhook-adapter` crate, which carries the WIT), a sample adapter with a unit test, a
//! sample event and a config snippet. The files are compiled into the binary, so `plugin
//! new` works offline and always matches the engine that runs the result.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};

use super::out::{self, outln};
use crate::plugins::wit::{LATEST, WIT_FILES};
use crate::subscription::validate_plugin_name;

/// The languages `plugin new` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust, with the `wasmhook-adapter` crate.
    Rust,
    /// JavaScript, with componentize-js.
    Js,
    /// Python, with componentize-py.
    Python,
}

/// Arguments of `plugin new`.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The adapter's name: the plugin name subscriptions use (`plugin = "NAME"`), made of
    /// lower-case letters, digits, `-` and `_`.
    pub name: String,
    /// The language.
    #[arg(long, value_enum)]
    pub lang: Lang,
    /// Where to write the project (default: `./NAME`). It must not exist or be empty.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Arguments of `wasmhook wit`.
#[derive(Debug, clap::Args)]
pub struct WitArgs {
    /// The WIT version (default: the newest).
    #[arg(long, value_name = "VERSION")]
    pub version: Option<String>,
    /// Write `DIR/v<version>/adapter.wit` instead of printing it.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// The text of WIT `version`.
fn wit_text(version: &str) -> anyhow::Result<&'static str> {
    WIT_FILES
        .iter()
        .find(|(v, _)| *v == version)
        .map(|(_, text)| *text)
        .with_context(|| {
            let known: Vec<&str> = WIT_FILES.iter().map(|(v, _)| *v).collect();
            format!(
                "no WIT version `{version}`; this engine has {}",
                known.join(", ")
            )
        })
}

/// Runs `wasmhook wit`.
pub fn wit(args: &WitArgs) -> anyhow::Result<ExitCode> {
    let version = args.version.as_deref().unwrap_or(LATEST);
    let text = wit_text(version)?;
    match &args.out {
        None => out::raw(text.as_bytes())?,
        Some(dir) => {
            let path = dir.join(format!("v{version}")).join("adapter.wit");
            write(&path, text)?;
            outln!("wrote {}", path.display())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One file of a project: its path inside it, and its text before `{{name}}` is replaced.
type File = (&'static str, &'static str);

macro_rules! sdk_file {
    ($path:literal) => {
        include_str!(concat!("../../../../sdk/", $path))
    };
}

/// Shared by every language.
const COMMON: &[File] = &[
    (
        "sample-event.json",
        sdk_file!("templates/common/sample-event.json"),
    ),
    ("wasmhook.toml", sdk_file!("templates/common/wasmhook.toml")),
];

const RUST: &[File] = &[
    ("Cargo.toml", sdk_file!("templates/rust/Cargo.toml")),
    ("src/lib.rs", sdk_file!("templates/rust/src/lib.rs")),
    (".gitignore", sdk_file!("templates/rust/gitignore")),
];

/// The `wasmhook-adapter` crate, copied into `vendor/` of a Rust project.
const RUST_SDK: &[File] = &[
    ("Cargo.toml", sdk_file!("rust/Cargo.toml")),
    ("README.md", sdk_file!("rust/README.md")),
    ("src/lib.rs", sdk_file!("rust/src/lib.rs")),
    ("src/adapter.rs", sdk_file!("rust/src/adapter.rs")),
    ("src/log.rs", sdk_file!("rust/src/log.rs")),
    ("src/settings.rs", sdk_file!("rust/src/settings.rs")),
    ("src/signing.rs", sdk_file!("rust/src/signing.rs")),
    ("src/testing.rs", sdk_file!("rust/src/testing.rs")),
    ("src/text.rs", sdk_file!("rust/src/text.rs")),
    (
        "wit/v0.2.0/adapter.wit",
        sdk_file!("rust/wit/v0.2.0/adapter.wit"),
    ),
];

const JS: &[File] = &[
    ("package.json", sdk_file!("templates/js/package.json")),
    (
        "package-lock.json",
        sdk_file!("templates/js/package-lock.json"),
    ),
    ("build.mjs", sdk_file!("templates/js/build.mjs")),
    ("adapter.js", sdk_file!("templates/js/adapter.js")),
    ("wasmhook.js", sdk_file!("js/wasmhook.js")),
    ("wasmhook.d.ts", sdk_file!("js/wasmhook.d.ts")),
    (
        "test/adapter.test.mjs",
        sdk_file!("templates/js/test/adapter.test.mjs"),
    ),
    ("test/register.mjs", sdk_file!("js/test/register.mjs")),
    ("test/hooks.mjs", sdk_file!("js/test/hooks.mjs")),
    ("test/wit-stubs.mjs", sdk_file!("js/test/wit-stubs.mjs")),
    (".gitignore", sdk_file!("templates/js/gitignore")),
];

const PYTHON: &[File] = &[
    ("app.py", sdk_file!("templates/python/app.py")),
    ("wasmhook.py", sdk_file!("python/wasmhook.py")),
    ("test_app.py", sdk_file!("templates/python/test_app.py")),
    (
        "requirements.txt",
        sdk_file!("templates/python/requirements.txt"),
    ),
    (
        "pyproject.toml",
        sdk_file!("templates/python/pyproject.toml"),
    ),
    (".gitignore", sdk_file!("templates/python/gitignore")),
];

const README: &str = sdk_file!("templates/common/README.md");

/// Per language: the files, where the WIT goes, and the README's words.
struct Layout {
    files: &'static [File],
    wit_path: Option<&'static str>,
    language: &'static str,
    source: &'static str,
    build: &'static str,
    test: &'static str,
}

fn layout(lang: Lang) -> Layout {
    match lang {
        Lang::Rust => Layout {
            files: RUST,
            // The WIT is inside the vendored crate.
            wit_path: None,
            language: "Rust",
            source: "src/lib.rs",
            build: "cargo build --release --target wasm32-wasip2",
            test: "cargo test",
        },
        Lang::Js => Layout {
            files: JS,
            wit_path: Some("wit/adapter.wit"),
            language: "JavaScript",
            source: "adapter.js",
            build: "npm ci && npm run build",
            test: "npm test",
        },
        Lang::Python => Layout {
            files: PYTHON,
            wit_path: Some("wit/adapter.wit"),
            language: "Python",
            source: "app.py",
            build: ".venv/bin/componentize-py -d wit -w adapter componentize app -o NAME.wasm",
            test: "python3 -m unittest",
        },
    }
}

/// Whether `name` can name a project and its plugin: `validate_plugin_name`, lower case,
/// starting with a letter (a package name in all three languages).
fn check_name(name: &str) -> anyhow::Result<()> {
    validate_plugin_name(name).map_err(|e| anyhow::anyhow!(e))?;
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.chars().any(|c| c.is_ascii_uppercase());
    if !ok {
        bail!(
            "`{name}`: start the name with a lower-case letter and use no upper case, so it is a valid package name in every language"
        );
    }
    Ok(())
}

/// Runs `plugin new`.
pub fn new(args: &NewArgs) -> anyhow::Result<ExitCode> {
    check_name(&args.name)?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists()
        && std::fs::read_dir(&dir)
            .with_context(|| format!("{} is not a folder", dir.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} already exists and is not empty; pick another name or --dir",
            dir.display()
        );
    }
    let layout = layout(args.lang);
    let fill = |text: &str| {
        text.replace("{{name}}", &args.name)
            .replace("{{language}}", layout.language)
            .replace("{{source}}", layout.source)
            .replace("{{build}}", &layout.build.replace("NAME", &args.name))
            .replace("{{test}}", layout.test)
            .replace(
                "{{wit}}",
                layout
                    .wit_path
                    .unwrap_or("vendor/wasmhook-adapter/wit/v0.2.0/adapter.wit"),
            )
    };
    for (path, text) in COMMON.iter().chain(layout.files) {
        write(&dir.join(path), &fill(text))?;
    }
    write(&dir.join("README.md"), &fill(README))?;
    if let Some(path) = layout.wit_path {
        write(&dir.join(path), wit_text(LATEST)?)?;
    }
    if args.lang == Lang::Rust {
        // The crate as published: its text untouched, so `cargo package` works on it.
        for (path, text) in RUST_SDK {
            write(&dir.join("vendor/wasmhook-adapter").join(path), text)?;
        }
    }
    outln!("wrote a {} adapter in {}", layout.language, dir.display())?;
    outln!("next:")?;
    outln!("  cd {}", dir.display())?;
    outln!("  wasmhook plugin build            # → {}.wasm", args.name)?;
    outln!(
        "  wasmhook plugin run {}.wasm --event sample-event.json --set channel=#ops",
        args.name
    )?;
    Ok(ExitCode::SUCCESS)
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_suit_every_language() {
        check_name("my-adapter").unwrap();
        check_name("chat_2").unwrap();
        assert!(check_name("MyAdapter").is_err());
        assert!(check_name("2fast").is_err());
        assert!(check_name("../x").is_err());
    }

    #[test]
    fn the_vendored_sdk_is_the_whole_crate() {
        // Every file of sdk/rust that cargo packages must be in RUST_SDK.
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk/rust");
        let mut on_disk = Vec::new();
        for dir in ["src", "wit/v0.2.0"] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                let name = entry.unwrap().file_name().into_string().unwrap();
                on_disk.push(format!("{dir}/{name}"));
            }
        }
        on_disk.extend(["Cargo.toml".to_owned(), "README.md".to_owned()]);
        on_disk.sort();
        let mut embedded: Vec<String> = RUST_SDK.iter().map(|(p, _)| p.to_string()).collect();
        embedded.sort();
        assert_eq!(embedded, on_disk);
    }

    #[test]
    fn every_copy_of_the_wit_is_the_published_one() {
        let latest = wit_text(LATEST).unwrap();
        let vendored = RUST_SDK
            .iter()
            .find(|(p, _)| p.ends_with("adapter.wit"))
            .unwrap()
            .1;
        assert_eq!(vendored, latest, "sdk/rust/wit must equal wit/v{LATEST}");
        assert!(
            wit_text("0.1.0")
                .unwrap()
                .contains("package wasmhook:adapter@0.1.0;")
        );
        assert!(
            wit_text("9.9.9")
                .unwrap_err()
                .to_string()
                .contains("0.1.0, 0.2.0")
        );
    }
}
