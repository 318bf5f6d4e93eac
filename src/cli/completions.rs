//! `auditship completions SHELL`: the shell completion script, on stdout.
//!
//! Generated from the same clap definition the binary parses with, so the script
//! cannot drift from the commands. Packages install the bash, zsh and fish scripts
//! (packaging/build-deb.sh); anyone else can source the output directly.

use clap::CommandFactory;
use clap_complete::Shell;
use std::io::Write;
use std::process::ExitCode;

/// Print a shell completion script to stdout.
///
/// Install it where your shell looks for completions, or load it at start-up.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  auditship completions bash > ~/.local/share/bash-completion/completions/auditship
  auditship completions zsh > ~/.zfunc/_auditship      # with fpath+=(~/.zfunc) in .zshrc
  auditship completions fish > ~/.config/fish/completions/auditship.fish
  source <(auditship completions bash)                  # this shell only")]
pub struct Args {
    /// The shell to write the script for
    #[arg(value_enum)]
    pub shell: Shell,
}

pub fn run(args: Args) -> ExitCode {
    let script = script(args.shell);
    let mut out = std::io::stdout().lock();
    match out.write_all(&script).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "auditship completions: {e}");
            ExitCode::from(1)
        }
    }
}

/// The completion script for `shell`, for the binary named `auditship`. Hidden
/// subcommands (`man`, for packagers) are left out: clap_complete would offer them.
pub fn script(shell: Shell) -> Vec<u8> {
    let full = super::Cli::command();
    let mut cmd = clap::Command::new("auditship")
        .version(env!("CARGO_PKG_VERSION"))
        .propagate_version(true)
        .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    if let Some(about) = full.get_about() {
        cmd = cmd.about(about.clone());
    }
    for arg in full.get_arguments() {
        cmd = cmd.arg(arg.clone());
    }
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "auditship", &mut buf);
    buf
}
