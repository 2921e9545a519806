//! `wasmhook man`: the manual page, generated from the clap definitions (roff).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

/// Arguments of `man`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write `wasmhook.1` and one page per subcommand (`wasmhook-serve.1`, …) into this
    /// folder instead of printing `wasmhook.1`.
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Prints `wasmhook(1)`, or writes every page into `--dir`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let command = super::command();
    match args.dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(command, &dir)
                .with_context(|| format!("cannot write man pages into {}", dir.display()))?;
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command).render(&mut page)?;
            super::output::raw(&page)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
