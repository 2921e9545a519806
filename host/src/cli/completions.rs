//! `wasmhook completions <shell>`: shell completion scripts, generated from the clap
//! definitions so they always match the commands.

use std::process::ExitCode;

use clap_complete::Shell;

/// Arguments of `completions`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Install, for example:\n  \
    bash: wasmhook completions bash > /etc/bash_completion.d/wasmhook\n  \
    zsh:  wasmhook completions zsh > \"${fpath[1]}/_wasmhook\"\n  \
    fish: wasmhook completions fish > ~/.config/fish/completions/wasmhook.fish")]
pub struct Args {
    /// The shell: bash, zsh, fish, elvish or powershell.
    shell: Shell,
}

/// Prints the completion script for `args.shell`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut super::command(), "wasmhook", &mut script);
    super::output::raw(&script)?;
    Ok(ExitCode::SUCCESS)
}
