//! `auditship man`: the manual pages (roff), rendered from the clap definition.
//!
//! Hidden from `--help`: it serves packaging (packaging/build-deb.sh), not users, who
//! read the pages with `man auditship` once the package installed them.

use clap::CommandFactory;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Write the manual page auditship(1) to stdout, or every page to a directory.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  auditship man | man -l -
  auditship man --dir target/man     # auditship.1, auditship-run.1, ...")]
pub struct Args {
    /// Write auditship.1 and one page per subcommand (auditship-run.1, ...) into DIR
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub fn run(args: Args) -> ExitCode {
    let result = match &args.dir {
        Some(dir) => write_pages(dir).map(|pages| {
            for p in pages {
                println!("{}", p.display());
            }
        }),
        None => {
            let page = page();
            let mut out = std::io::stdout().lock();
            out.write_all(&page).and_then(|()| out.flush())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "auditship man: {e}");
            ExitCode::from(1)
        }
    }
}

fn command() -> clap::Command {
    without_help_subcommand(super::Cli::command())
}

/// The `help` subcommand is clap's, not ours (`--help` is on every page already):
/// leave it off every level, or it would get a page of its own.
fn without_help_subcommand(cmd: clap::Command) -> clap::Command {
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    names
        .iter()
        .fold(cmd.disable_help_subcommand(true), |cmd, name| {
            cmd.mut_subcommand(name, without_help_subcommand)
        })
}

/// A page whose footer names the program, not the subcommand ("auditship 0.1.0").
fn man(cmd: clap::Command) -> clap_mangen::Man {
    clap_mangen::Man::new(cmd)
        .source(concat!("auditship ", env!("CARGO_PKG_VERSION")))
        .manual("auditship manual")
}

/// auditship(1): synopsis, options, the list of subcommands and the examples.
pub fn page() -> Vec<u8> {
    let mut buf = Vec::new();
    man(command())
        .render(&mut buf)
        .expect("rendering into a Vec cannot fail");
    buf
}

/// Writes auditship.1 and a page per visible subcommand, nested ones included
/// (auditship-dead-letter-list.1); returns the paths written.
pub fn write_pages(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = command();
    cmd.build();
    let mut written = Vec::new();
    fn walk(cmd: &clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> std::io::Result<()> {
        written.push(man(cmd.clone()).generate_to(dir)?);
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub, dir, written)?;
        }
        Ok(())
    }
    walk(&cmd, dir, &mut written)?;
    Ok(written)
}
