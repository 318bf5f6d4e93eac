//! `auditship archive --now`: one archive pass, reported.

use crate::config;
use crate::queue::Queue;
use crate::words::count;
use std::io::Write;
use std::process::ExitCode;

/// Archive old audit files now: gzip, verify, record in the manifest, remove.
///
/// Runs the pass the daemon runs every `[archive] interval`, once, and reports what
/// was archived and what waits, with the reason. It reads the daemon's queue (to know
/// what was read and acknowledged), which the daemon locks while it runs: stop it
/// first, or let the daemon's own passes do the work. Run as the user that owns the
/// state directory (`sudo -u auditship auditship archive --now` for the system
/// service): any other user, root included, is refused, since the archives and the
/// manifest it writes must stay the daemon's. Exit status: 0 done, 1 a file could
/// not be archived (each error names the file and the cause), 2 the state directory
/// or the queue cannot be read.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  auditship archive --now
  auditship archive --now --json")]
pub struct Args {
    #[command(flatten)]
    pub config: super::ConfigArg,
    /// Run one pass now (required: the daemon runs passes on its own)
    #[arg(long, required = true)]
    pub now: bool,
    /// Print the report as one JSON object
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> ExitCode {
    let fail = |msg: String| {
        let _ = writeln!(std::io::stderr(), "auditship archive: {msg}");
        ExitCode::from(2)
    };
    let daemon = match config::load_daemon(args.config.config.as_deref()) {
        Ok((_, d)) => d,
        Err(e) => return fail(e.to_string()),
    };
    if let Err(e) = super::state::check_owner(&daemon.agent.state_dir) {
        return fail(e);
    }
    let dir = daemon.agent.state_dir.join("queue");
    let names: Vec<String> = daemon.sinks.iter().map(|s| s.name.clone()).collect();
    let queue = match Queue::open(&dir, daemon.queue.cache_capacity, &names) {
        Ok(q) => q,
        Err(e) => {
            return fail(format!(
                "cannot open the queue at {} (is the daemon running? it locks the queue): {e}",
                dir.display()
            ));
        }
    };
    let report = crate::archive::pass(&daemon, &queue, std::time::SystemTime::now());
    let _ = queue.flush();
    let mut out = std::io::stdout().lock();
    let written = if args.json {
        serde_json::to_writer(&mut out, &report)
            .map_err(std::io::Error::other)
            .and_then(|()| writeln!(out))
    } else {
        (|| -> std::io::Result<()> {
            for a in &report.archived {
                writeln!(
                    out,
                    "archived {} -> {} ({}, {} -> {} bytes{})",
                    a.original,
                    a.archive,
                    count(a.events, "event", "events"),
                    a.size,
                    a.archive_size,
                    if a.resumed {
                        ", finished an interrupted pass"
                    } else {
                        ""
                    }
                )?;
            }
            for s in &report.skipped {
                writeln!(out, "waits    {}: {}", s.file, s.reason)?;
            }
            for e in &report.expired {
                writeln!(out, "expired  {e}")?;
            }
            for e in &report.errors {
                writeln!(out, "error    {e}")?;
            }
            Ok(())
        })()
    };
    if written.is_err() {
        return ExitCode::from(2);
    }
    if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
