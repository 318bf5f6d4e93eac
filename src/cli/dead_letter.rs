//! `auditship dead-letter list|replay|purge`: what sinks rejected for good, and why;
//! sending it again; deleting what is no longer wanted.
//!
//! Every action works on the queue with the daemon stopped: sled locks the queue, so
//! a command and the daemon never change it at once. (A running daemon could take the
//! work instead, but its only listener is the unauthenticated, read-only loopback
//! `/status`; a way in that deletes or sends records needs more than that.)

use crate::config;
use crate::config::daemon::{DaemonConfig, SinkConfig};
use crate::queue::{DeadLetter, DeadLetterStore};
use crate::words::count;
use std::io::Write;
use std::process::ExitCode;

/// Inspect, replay or purge the dead letters: records a sink rejected for good,
/// stored with the sink's reason instead of being dropped.
///
/// Rejected for good: an HTTP 4xx answer other than 401, 403 and 407 (credentials,
/// proxy: retried until the configuration is fixed), 408 and 429 (retried) and 413
/// (the batch is split; only a record too large to send alone is dead-lettered),
/// and records a sink refuses one by one in an answered request (an Elasticsearch
/// item whose status is a 4xx other than 408, 409, which means already stored, and
/// 429).
///
/// Every action reads the queue under the configured state directory, which the
/// daemon locks while it runs: stop it first (`systemctl stop auditship`). Run as
/// the user that owns the state directory (`sudo -u auditship auditship dead-letter
/// list` for the system service): any other user, root included, is refused, since
/// it could not read the queue or would leave files the daemon cannot use. Exit 2
/// when the state directory or the queue cannot be read: never "0 dead letters"
/// for what was not read.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  auditship dead-letter list                     # sink, batch, events, stored, reason
  auditship dead-letter list --records --config /etc/auditship/auditship.toml > rejected.jsonl
  auditship dead-letter replay --sink siem       # send them again, to the sink that refused them
  auditship dead-letter purge --before 2026-01-01")]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    List(ListArgs),
    Replay(ReplayArgs),
    Purge(PurgeArgs),
}

/// List the dead letters: sink, batch, part, events, when stored and the reason,
/// oldest batch first per sink.
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

/// Send dead letters again, each to the sink that rejected it and to no other.
///
/// The records go as they were stored, so they keep their `_auditship.id`s (a SIEM
/// that saw part of them can drop the repeats), in requests within the sink's batch
/// limits, each sent once. A dead letter is removed only once the sink acknowledged
/// all of its records; what the sink did not take stays a dead letter (a partial
/// success keeps only the rest). One line per dead letter says what happened. Exit 0
/// when every one was delivered, 1 when any was not, 2 when the queue or the
/// configuration cannot be read. The sink's settings are today's: fix the sink (or
/// its configuration) first. Stop the daemon first: it locks the queue.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  auditship dead-letter replay                       # every dead letter, each to its sink
  auditship dead-letter replay --sink siem
  auditship dead-letter replay --sink siem --batch 1842")]
pub struct ReplayArgs {
    #[command(flatten)]
    pub config: super::ConfigArg,
    /// Only the dead letters of this sink
    #[arg(long, value_name = "NAME")]
    pub sink: Option<String>,
    /// Only the dead letters of this batch (as `list` shows it)
    #[arg(long, value_name = "ID")]
    pub batch: Option<u64>,
}

/// Delete dead letters stored before a date, printing each one removed.
///
/// DATE is a UTC day (`2026-01-01`, meaning its midnight) or an RFC 3339 time
/// (`2026-01-01T12:00:00Z`). A dead letter stored by a version that did not record
/// the time counts by its newest record's `_auditship.received_at`. The records are
/// gone for good: `list --records` first if they may still be wanted. Stop the
/// daemon first: it locks the queue.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  auditship dead-letter purge --before 2026-01-01
  auditship dead-letter purge --before 2026-06-30T00:00:00Z --sink siem
  auditship dead-letter purge --before 2026-01-01 --dry-run")]
pub struct PurgeArgs {
    #[command(flatten)]
    pub config: super::ConfigArg,
    /// Remove dead letters stored before this UTC day or RFC 3339 time
    #[arg(long, value_name = "DATE", value_parser = parse_before)]
    pub before: u64,
    /// Only the dead letters of this sink
    #[arg(long, value_name = "NAME")]
    pub sink: Option<String>,
    /// Print what would be removed, remove nothing
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(args: Args) -> ExitCode {
    match args.action {
        Action::List(a) => list(a),
        Action::Replay(a) => replay(a),
        Action::Purge(a) => purge(a),
    }
}

fn fail(msg: String) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "auditship dead-letter: {msg}");
    ExitCode::from(2)
}

/// The configuration and the dead-letter store it names; `None` for the store when
/// the daemon has not stored anything yet. Refuses a state directory of another
/// user, and one it cannot read.
fn open(flag: &super::ConfigArg) -> Result<(DaemonConfig, Option<DeadLetterStore>), ExitCode> {
    let daemon = match config::load_daemon(flag.config.as_deref()) {
        Ok((_, d)) => d,
        Err(e) => return Err(fail(e.to_string())),
    };
    if let Err(e) = super::state::check_owner(&daemon.agent.state_dir) {
        return Err(fail(e));
    }
    let dir = daemon.agent.state_dir.join("queue");
    match DeadLetterStore::open(&dir) {
        Ok(store) => Ok((daemon, store)),
        Err(e) => Err(fail(format!(
            "cannot read the queue at {} (is the daemon running? it locks the queue): {e}",
            dir.display()
        ))),
    }
}

/// Every dead letter, or a failure already reported.
fn letters(store: Option<&DeadLetterStore>) -> Result<Vec<DeadLetter>, ExitCode> {
    match store.map(DeadLetterStore::list) {
        None => Ok(Vec::new()),
        Some(Ok(l)) => Ok(l),
        Some(Err(e)) => Err(fail(format!("cannot read the dead letters: {e}"))),
    }
}

/// `sink batch N part P`, as every action names a dead letter.
fn label(d: &DeadLetter) -> String {
    format!("{} batch {} part {}", d.sink, d.id, d.part)
}

fn stored(d: &DeadLetter) -> String {
    match d.stored_ms {
        Some(ms) => utc(ms),
        None => "at an unknown time".into(),
    }
}

fn utc(ms: u64) -> String {
    let ms = i64::try_from(ms).unwrap_or(i64::MAX);
    crate::clock::format_utc(ms.div_euclid(1000), ms.rem_euclid(1000) as u32).0
}

fn list(args: ListArgs) -> ExitCode {
    let (_, store) = match open(&args.config) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let letters = match letters(store.as_ref()) {
        Ok(l) => l,
        Err(code) => return code,
    };
    drop(store);
    let mut out = std::io::stdout().lock();
    let written = (|| -> std::io::Result<()> {
        for d in &letters {
            if args.records {
                out.write_all(&d.records)?;
            } else if args.json {
                let v = serde_json::json!({
                    "sink": d.sink, "batch": d.id, "part": d.part,
                    "events": d.events, "bytes": d.records.len(),
                    "stored_at": d.stored_ms.map(utc), "reason": d.reason,
                });
                writeln!(out, "{v}")?;
            } else {
                writeln!(
                    out,
                    "{}: {}, {} bytes, stored {}: {}",
                    label(d),
                    count(u64::from(d.events), "event", "events"),
                    d.records.len(),
                    stored(d),
                    d.reason
                )?;
            }
        }
        if !args.records && !args.json {
            let events: u64 = letters.iter().map(|d| u64::from(d.events)).sum();
            writeln!(
                out,
                "{}, {}",
                count(letters.len() as u64, "dead letter", "dead letters"),
                count(events, "event", "events")
            )?;
        }
        out.flush()
    })();
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => fail(e.to_string()),
    }
}

fn replay(args: ReplayArgs) -> ExitCode {
    let (daemon, store) = match open(&args.config) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let chosen: Vec<DeadLetter> = match letters(store.as_ref()) {
        Ok(l) => l
            .into_iter()
            .filter(|d| args.sink.as_ref().is_none_or(|s| *s == d.sink))
            .filter(|d| args.batch.is_none_or(|b| b == d.id))
            .collect(),
        Err(code) => return code,
    };
    let Some(store) = store.filter(|_| !chosen.is_empty()) else {
        println!("no dead letters to replay");
        return ExitCode::SUCCESS;
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    crate::daemon::install_crypto_provider();
    let mut replayer = Replayer {
        daemon: &daemon,
        sinks: Default::default(),
    };
    let (mut done, mut failed) = (0usize, 0usize);
    for d in &chosen {
        let (line, ok) = runtime.block_on(replayer.one(&store, d));
        println!("{line}");
        if ok {
            done += 1;
        } else {
            failed += 1;
        }
    }
    println!(
        "{} delivered and removed, {failed} kept",
        count(done as u64, "dead letter", "dead letters")
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The sinks built so far, by name (`Err`: why it cannot be built).
struct Replayer<'a> {
    daemon: &'a DaemonConfig,
    sinks: std::collections::HashMap<String, Result<crate::ship::sinks::Sink, String>>,
}

impl Replayer<'_> {
    /// Replays one dead letter and updates the store: the line to print, and whether
    /// every record was delivered.
    async fn one(&mut self, store: &DeadLetterStore, d: &DeadLetter) -> (String, bool) {
        let Some(cfg) = self.daemon.sinks.iter().find(|s| s.name == d.sink) else {
            return (
                format!(
                    "{}: kept: no sink named {:?} is configured",
                    label(d),
                    d.sink
                ),
                false,
            );
        };
        let sink = self
            .sinks
            .entry(d.sink.clone())
            .or_insert_with(|| crate::ship::sinks::Sink::new(cfg));
        let sink = match sink {
            Ok(s) => s,
            Err(e) => {
                return (
                    format!("{}: kept: the sink cannot start: {e}", label(d)),
                    false,
                );
            }
        };
        let outcome = crate::ship::replay::send_again(cfg, sink, &d.records).await;
        settle(store, cfg, d, outcome)
    }
}

/// Removes a delivered dead letter, or keeps what was not delivered of it.
fn settle(
    store: &DeadLetterStore,
    cfg: &SinkConfig,
    d: &DeadLetter,
    o: crate::ship::replay::Outcome,
) -> (String, bool) {
    let all = o.left_events == 0;
    let stored = if all {
        store.remove(d)
    } else if o.delivered > 0 {
        store.keep_only(d, &o.left, o.left_events)
    } else {
        Ok(())
    };
    let name = label(d);
    match (all, stored) {
        (true, Ok(())) => (
            format!(
                "{name}: {} events delivered to {:?}; removed",
                o.delivered, cfg.name
            ),
            true,
        ),
        (true, Err(e)) => (
            format!(
                "{name}: {} events delivered to {:?}, but the dead letter could not be removed ({e}): a later replay sends them again",
                o.delivered, cfg.name
            ),
            false,
        ),
        (false, Ok(())) => (
            format!(
                "{name}: {} of {} events delivered; {} kept: {}",
                o.delivered,
                o.delivered + o.left_events,
                o.left_events,
                o.reason
            ),
            false,
        ),
        (false, Err(e)) => (
            format!(
                "{name}: {} of {} events delivered; the dead letter could not be updated ({e}), so a later replay sends them again: {}",
                o.delivered,
                o.delivered + o.left_events,
                o.reason
            ),
            false,
        ),
    }
}

fn purge(args: PurgeArgs) -> ExitCode {
    let (_, store) = match open(&args.config) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let all = match letters(store.as_ref()) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let (mut removed, mut events, mut unknown) = (0usize, 0u64, 0usize);
    for d in all
        .iter()
        .filter(|d| args.sink.as_ref().is_none_or(|s| *s == d.sink))
    {
        let Some(at) = d.stored_ms.or_else(|| newest_received(&d.records)) else {
            unknown += 1;
            println!("{}: kept: when it was stored is not known", label(d));
            continue;
        };
        if at >= args.before {
            continue;
        }
        if !args.dry_run
            && let Some(Err(e)) = store.as_ref().map(|s| s.remove(d))
        {
            return fail(format!("{}: cannot remove it: {e}", label(d)));
        }
        removed += 1;
        events += u64::from(d.events);
        let reason = d.reason.lines().next().unwrap_or("");
        println!(
            "{verb} {}: {}, stored {}: {reason}",
            label(d),
            count(u64::from(d.events), "event", "events"),
            match d.stored_ms {
                Some(ms) => utc(ms),
                None => format!("before {}", utc(at)),
            }
        );
    }
    println!(
        "{verb} {removed} dead letters ({events} events) stored before {}",
        utc(args.before)
    );
    if unknown > 0 {
        println!("{unknown} dead letters of unknown age kept");
    }
    ExitCode::SUCCESS
}

/// The newest `_auditship.received_at` of a dead letter's records (ms since the
/// epoch): the age of a letter stored without its time.
fn newest_received(records: &[u8]) -> Option<u64> {
    crate::ship::record::lines(records)
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_slice(l).ok()?;
            let nanos = crate::clock::rfc3339_nanos(v["_auditship"]["received_at"].as_str()?)?;
            u64::try_from(nanos / 1_000_000).ok()
        })
        .max()
}

/// `--before`: a UTC day (its midnight) or an RFC 3339 time, as ms since the epoch.
fn parse_before(s: &str) -> Result<u64, String> {
    let full = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_string()
    };
    let nanos = crate::clock::rfc3339_nanos(&full).ok_or_else(|| {
        format!("expected a UTC day (2026-01-01) or an RFC 3339 time (2026-01-01T12:00:00Z), found {s:?}")
    })?;
    u64::try_from(nanos / 1_000_000).map_err(|_| format!("{s:?} is before 1970"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_for_purge() {
        assert_eq!(parse_before("1970-01-02"), Ok(86_400_000));
        assert_eq!(parse_before("1970-01-01T00:00:01.5Z"), Ok(1_500));
        assert_eq!(parse_before("1970-01-01T02:00:00+02:00"), Ok(0));
        assert!(parse_before("yesterday").is_err());
        assert!(parse_before("2026-13-01").is_err());
        assert!(parse_before("1969-12-31").is_err());
    }

    #[test]
    fn a_letter_without_a_time_ages_by_its_newest_record() {
        let records = concat!(
            r#"{"_auditship":{"v":1,"id":"a","received_at":"1970-01-01T00:00:02.000Z"}}"#,
            "\n",
            r#"{"_auditship":{"v":1,"id":"b","received_at":"1970-01-01T00:00:05.000Z"}}"#,
            "\n",
            r#"{"no":"meta"}"#,
            "\n"
        );
        assert_eq!(newest_received(records.as_bytes()), Some(5_000));
        assert_eq!(newest_received(b"{}\n"), None);
    }
}
