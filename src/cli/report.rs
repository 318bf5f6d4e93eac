//! `auditship report`: the auditor's report of a period, in HTML, JSON or CSV. What
//! is read, checked and counted is [`crate::report`]'s; here are the arguments, the
//! output file (written aside and renamed into place, so a failed run leaves no
//! half report) and the exit status.

use crate::report::{self, Options, csv::Csv, inputs, period::Period};
use crate::verify::checkpoints::Anchors;
use crate::words::count;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Report on a period for an audit: who used the agent, what it did, what was
/// refused or failed, which regulated resources it touched, whether each stream is
/// complete and unaltered, and where each host's record has gaps.
///
/// PATH is a stream directory, a tree of them (the sealer's directory, a directory of
/// homes), an archive directory (with its manifest.jsonl: its archives are read with
/// the live directory they came from, when that is given too, as one chain), stream
/// files, or an export of shipped records (lines with `_auditship`, as a SIEM gives
/// them back). Every stream is verified whole, as `auditship verify` does; activity
/// is counted for the events whose timestamp lies in the period: --from inclusive,
/// --to exclusive, each a date (YYYY-MM-DD, midnight UTC) or an RFC 3339 time.
///
/// A host is silent when it has no event, the daemon's heartbeats (in exports)
/// included, for more than twice --heartbeat-interval.
///
/// --format html (default) is one self-contained page, printable to PDF; json the
/// same numbers for tools (docs/REPORT.md); csv one row per event of the period.
///
/// Exit status: 0 report written and everything intact, 1 report written with
/// integrity problems, 2 usage or I/O error (no report written).
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  auditship report --from 2026-10-01 --to 2027-01-01 --out q4.html /home/*/.claude/audit
  auditship report --format json --out q4.json /var/lib/auditship/sealed
  auditship report --format csv --out events.csv --from 2026-11-01 siem-export.jsonl
  auditship report --out report.html /var/lib/auditship/archive /home/alice/.claude/audit
  auditship report --key host-2026=sealer-hmac.key --pubkey sealer.ed25519.pub \
      --checkpoints siem-export.jsonl --out report.html /var/lib/auditship/sealed")]
pub struct Args {
    /// Streams, trees of streams, archive directories, exports of shipped records
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// First instant reported (inclusive): YYYY-MM-DD (UTC) or RFC 3339
    #[arg(long, value_name = "DATE")]
    pub from: Option<String>,
    /// End of the period (exclusive): YYYY-MM-DD (UTC) or RFC 3339
    #[arg(long, value_name = "DATE")]
    pub to: Option<String>,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Html)]
    pub format: Format,
    /// Write the report to FILE instead of standard output
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// HMAC key: key id and a file holding the key as hex (64+ digits); repeatable
    #[arg(long = "key", value_name = "KID=KEYFILE")]
    pub keys: Vec<String>,
    /// Public key (PEM) to check signed checkpoints with; repeatable
    #[arg(long = "pubkey", value_name = "FILE")]
    pub pubkeys: Vec<PathBuf>,
    /// JSON lines holding checkpoint events (e.g. the SIEM's export); repeatable
    #[arg(long = "checkpoints", value_name = "FILE", requires = "pubkeys")]
    pub checkpoints: Vec<PathBuf>,
    /// The daemons' [agent] heartbeat_interval: a host without any event for more than
    /// twice this is silent [default: 5m, the daemon's default]
    #[arg(long, value_name = "DURATION")]
    pub heartbeat_interval: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Html,
    Json,
    Csv,
}

pub fn run(args: Args) -> ExitCode {
    match report_paths(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            let _ = writeln!(io::stderr(), "auditship report: {e}");
            ExitCode::from(2)
        }
    }
}

fn usage(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Everything the arguments name, read and checked before the report is begun.
fn options(args: &Args) -> io::Result<Options> {
    let period = Period::parse(args.from.as_deref(), args.to.as_deref()).map_err(usage)?;
    let heartbeat = match &args.heartbeat_interval {
        None => crate::config::daemon::DEFAULT_HEARTBEAT_INTERVAL,
        Some(s) => match crate::config::daemon::parse_duration(s) {
            Ok(d) if d >= Duration::from_secs(1) => d,
            Ok(_) => return Err(usage(format!("--heartbeat-interval {s:?}: at least 1s"))),
            Err(e) => return Err(usage(format!("--heartbeat-interval: {e}"))),
        },
    };
    let keys = super::verify::load_keys(&args.keys)?;
    let anchors = if args.pubkeys.is_empty() {
        None
    } else {
        let keys = args
            .pubkeys
            .iter()
            .map(|p| crate::keyfile::read_public_key(p))
            .collect::<io::Result<Vec<_>>>()?;
        let files: Vec<&Path> = args.checkpoints.iter().map(PathBuf::as_path).collect();
        Some(Anchors::read(keys, &files)?)
    };
    let mut verify_args = Vec::new();
    for k in &args.keys {
        verify_args.extend(["--key".to_string(), k.clone()]);
    }
    for p in &args.pubkeys {
        verify_args.extend(["--pubkey".to_string(), p.display().to_string()]);
    }
    for c in &args.checkpoints {
        verify_args.extend(["--checkpoints".to_string(), c.display().to_string()]);
    }
    Ok(Options {
        period,
        heartbeat,
        keys,
        anchors,
        verify_args,
        pubkey_files: args.pubkeys.clone(),
    })
}

/// Writes the report. Returns whether everything was intact.
pub fn report_paths(args: &Args) -> io::Result<bool> {
    let options = options(args)?;
    let plan = inputs::plan(&args.paths)?;
    match &args.out {
        None => write_report(args.format, &plan, &options, Box::new(io::stdout().lock())),
        Some(path) => {
            let (file, tmp) = create_aside(path)?;
            let result = write_report(args.format, &plan, &options, Box::new(file))
                .and_then(|ok| std::fs::rename(&tmp, path).map(|()| ok));
            if result.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            result
        }
    }
}

/// A new file beside `path`, to be renamed over it once complete.
fn create_aside(path: &Path) -> io::Result<(File, PathBuf)> {
    let name = path
        .file_name()
        .ok_or_else(|| usage(format!("--out {}: not a file name", path.display())))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let file = File::create(&tmp)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", tmp.display())))?;
    Ok((file, tmp))
}

fn write_report(
    format: Format,
    plan: &inputs::Plan,
    options: &Options,
    out: Box<dyn Write + '_>,
) -> io::Result<bool> {
    let mut out = BufWriter::with_capacity(256 * 1024, out);
    let report = match format {
        Format::Csv => {
            let mut csv = Csv::new(&mut out)?;
            let report = report::build(plan, options, &mut csv)?;
            csv.finish()?;
            report
        }
        Format::Json | Format::Html => {
            let report = report::build(plan, options, &mut report::NoRows)?;
            match format {
                Format::Json => report::json::write(&report, &mut out)?,
                _ => report::html::write(&report, &mut out)?,
            }
            report
        }
    };
    out.flush()?;
    let inner = out.into_inner().map_err(|e| e.into_error())?;
    drop(inner);
    let verdict = if report.ok() { "intact" } else { "NOT INTACT" };
    let _ = writeln!(
        io::stderr(),
        "auditship report: {} in the period; {} checked, {verdict} ({}); {}",
        count(report.finished.tally.events, "event", "events"),
        count(report.streams.len() as u64, "stream", "streams"),
        count(report.problem_count(), "problem", "problems"),
        count(
            report.finished.silences.len() as u64,
            "silent period",
            "silent periods"
        ),
    );
    Ok(report.ok())
}
