//! `auditship dead-letter list`: what sinks rejected for good, and why.

use crate::config;
use crate::queue::Queue;
use std::io::Write;
use std::process::ExitCode;

/// Inspect the dead letters: batches a sink rejected for good (a 4xx other than 408
/// and 429), stored with the sink's reason instead of being dropped.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  auditship dead-letter list                     # sink, batch, events, reason
  auditship dead-letter list --json
  auditship dead-letter list --records --config /etc/auditship/auditship.toml > rejected.jsonl")]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    List(ListArgs),
}

/// List the dead letters: sink, batch, part, events and reason, oldest first per sink.
///
/// Reads the queue under the configured state directory. The daemon locks its queue
/// while it runs: stop it first (`systemctl stop auditship`).
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  auditship dead-letter list
  auditship dead-letter list --json
  auditship dead-letter list --records > rejected.jsonl")]
pub struct ListArgs {
    #[command(flatten)]
    pub config: super::ConfigArg,
    /// One JSON object per dead letter instead of text
    #[arg(long, conflicts_with = "records")]
    pub json: bool,
    /// Print the rejected records themselves, as JSON Lines
    #[arg(long)]
    pub records: bool,
}

pub fn run(args: Args) -> ExitCode {
    let Action::List(args) = args.action;
    let fail = |msg: String| {
        let _ = writeln!(std::io::stderr(), "auditship dead-letter: {msg}");
        ExitCode::from(2)
    };
    let daemon = match config::load_daemon(args.config.config.as_deref()) {
        Ok((_, d)) => d,
        Err(e) => return fail(e.to_string()),
    };
    let dir = daemon.agent.state_dir.join("queue");
    let letters = match Queue::read_dead_letters(&dir) {
        Ok(l) => l,
        Err(e) => {
            return fail(format!(
                "cannot read the queue at {} (is the daemon running? it locks the queue): {e}",
                dir.display()
            ));
        }
    };
    let mut out = std::io::stdout().lock();
    let written = (|| -> std::io::Result<()> {
        for d in &letters {
            if args.records {
                out.write_all(&d.records)?;
            } else if args.json {
                let v = serde_json::json!({
                    "sink": d.sink, "batch": d.id, "part": d.part,
                    "events": d.events, "bytes": d.records.len(), "reason": d.reason,
                });
                writeln!(out, "{v}")?;
            } else {
                writeln!(
                    out,
                    "{} batch {} part {}: {} events, {} bytes: {}",
                    d.sink,
                    d.id,
                    d.part,
                    d.events,
                    d.records.len(),
                    d.reason
                )?;
            }
        }
        if !args.records && !args.json {
            let events: u64 = letters.iter().map(|d| u64::from(d.events)).sum();
            writeln!(out, "{} dead letters, {events} events", letters.len())?;
        }
        out.flush()
    })();
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => fail(e.to_string()),
    }
}
