//! `wasmhook plugin …` and `wasmhook wit`: everything an adapter author does without an
//! engine running, under the sandbox and limits the engine uses.
//!
//! - `load`: compiling an adapter through the author's compile cache, reading its manifest.
//! - `check`: `plugin check`, what a component is and what its manifest declares.
//! - `dry_run`: `plugin run`, one faithful dry run: the request the engine would sign and send.
//! - `watch`: `plugin watch`, the dry run again at every change of the file.
//! - `scaffold`: `plugin new`, a project that builds with one command, and `wit`.
//! - `build`: `plugin build`, the project's own build, then a check.
//! - `out`: printing on stdout without panicking on a closed pipe.

mod build;
mod check;
mod dry_run;
mod load;
mod out;
mod scaffold;
mod watch;

use std::process::ExitCode;

pub use scaffold::WitArgs;

/// `plugin` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Validate a component: the world it implements, its imports, exports and manifest.
    Check {
        /// The `.wasm` file.
        file: std::path::PathBuf,
        /// Compile without the compile cache.
        #[arg(long)]
        no_cache: bool,
    },
    /// Run an adapter once on an event file and print the request the engine would send.
    Run(dry_run::RunArgs),
    /// Run an adapter on an event file again at every change of either file.
    Watch(dry_run::RunArgs),
    /// Write a new adapter project that builds with one command.
    New(scaffold::NewArgs),
    /// Build the adapter project in a folder (default: the current one) and check it.
    Build(build::BuildArgs),
}

impl Command {
    /// The log filter when `RUST_LOG` is not set: adapter log lines at every level, since
    /// showing them is the point of a dry run.
    pub fn default_log_filter(&self) -> &'static str {
        match self {
            Self::Run(_) | Self::Watch(_) => {
                "warn,wasmhook::adapter=trace,cranelift=warn,wasmtime=warn"
            }
            _ => super::logging::DEFAULT_FILTER,
        }
    }
}

/// Dispatches a `plugin` subcommand.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Check { file, no_cache } => check::run(&file, !no_cache),
        Command::Run(args) => dry_run::run(&args),
        Command::Watch(args) => watch::run(&args),
        Command::New(args) => scaffold::new(&args),
        Command::Build(args) => build::run(&args),
    }
}

/// `wasmhook wit`: prints (or writes) the WIT adapters implement.
pub fn wit(args: &WitArgs) -> anyhow::Result<ExitCode> {
    scaffold::wit(args)
}
