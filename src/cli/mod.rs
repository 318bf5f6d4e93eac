//! Command-line interface: one file per subcommand, each turning parsed arguments
//! into a call on the library and its result into output and an exit code.

pub mod archive;
pub mod check_config;
pub mod completions;
pub mod dead_letter;
pub mod install_hooks;
pub mod man;
pub mod mcp;
pub mod record;
pub mod report;
pub mod run;
pub mod state;
pub mod status;
pub mod verify;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Ships Claude Code audit events as a tamper-evident, hash-chained trail.
#[derive(Debug, Parser)]
#[command(name = "auditship", version, about, long_about = None, propagate_version = true)]
#[command(after_help = "\
Typical use:
  auditship run                           ship ~/.claude/audit (embedded default, no config needed)
  auditship install-hooks                 wire Claude Code's hooks to `auditship record`
  auditship install-hooks --mcp           and let the model record its decisions (`auditship mcp`)
  auditship verify ~/.claude/audit        prove a stream intact (exit 1 on any problem)
  auditship report --out r.html /home/*/.claude/audit   the auditor's report of a period
  auditship dead-letter list              what sinks rejected for good, and why
  auditship dead-letter replay            send them again, once the sink is fixed
  auditship archive --now                 gzip and verify files older than [archive] after_days
  auditship status                        the running daemon: queue, sinks, health
  auditship completions bash              shell completions (also zsh, fish, elvish, powershell)

Configuration: --config PATH, else $AUDITSHIP_CONFIG, else ~/.config/auditship/auditship.toml
($XDG_CONFIG_HOME/auditship/…) if present, else /etc/auditship/auditship.toml if present;
without a file, built-in defaults apply (see config.example.toml).")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Run(run::Args),
    CheckConfig(check_config::Args),
    Record(record::Args),
    Verify(verify::Args),
    Report(report::Args),
    InstallHooks(install_hooks::Args),
    Mcp(mcp::Args),
    DeadLetter(dead_letter::Args),
    Archive(archive::Args),
    Status(status::Args),
    Completions(completions::Args),
    #[command(hide = true)]
    Man(man::Args),
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::CheckConfig(args) => check_config::run(args),
        Command::Record(args) => record::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Report(args) => report::run(args),
        Command::InstallHooks(args) => install_hooks::run(args),
        Command::Mcp(args) => mcp::run(args),
        Command::DeadLetter(args) => dead_letter::run(args),
        Command::Archive(args) => archive::run(args),
        Command::Status(args) => status::run(args),
        Command::Completions(args) => completions::run(args),
        Command::Man(args) => man::run(args),
    }
}

/// `--config PATH`, shared by the subcommands that read the configuration.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArg {
    /// Configuration file [default: $AUDITSHIP_CONFIG, else ~/.config/auditship/auditship.toml, else /etc/auditship/auditship.toml, the first present]
    #[arg(long, short = 'c', value_name = "PATH")]
    pub config: Option<PathBuf>,
}
