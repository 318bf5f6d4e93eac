//! `auditship status`: the running daemon's state, asked of the daemon that owns a
//! state directory.
//!
//! The daemon is found only through its own state directory: it writes the address
//! it bound to `<state_dir>/metrics.addr` and names its state directory in
//! `/status`. The configured `[metrics] listen` is never asked: on a host where each
//! user runs a daemon, that port may belong to another user's daemon when this one
//! could not bind it. Only the state directory is needed, so `status` works while the
//! configuration file on disk is broken (the daemon runs on its previous one).

use crate::config;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Show the running daemon's state: health, configuration reloads (refused ones with
/// the reason), reader, queue, and per sink lag, last success and last error.
///
/// Asks the daemon that keeps its state in the state directory: `--state-dir`, else
/// `[agent] state_dir` of the configuration (read from the file even when it does
/// not load), else the default. The address comes from `<state_dir>/metrics.addr`,
/// which the daemon writes once its listener is bound; without it (the daemon is
/// stopped, could not bind `[metrics] listen`, or runs with `[metrics] enabled =
/// false`) the daemon counts as not running. Exit status: 0 healthy, 1 unhealthy, 2
/// not running or cannot be asked.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  auditship status
  auditship status --state-dir /var/lib/auditship
  auditship status --json | jq .sinks")]
pub struct Args {
    #[command(flatten)]
    pub config: super::ConfigArg,
    /// The daemon's state directory [default: from the configuration]
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Print the daemon's status document (JSON) as it is
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> ExitCode {
    let fail = |msg: String| {
        let _ = writeln!(std::io::stderr(), "auditship status: {msg}");
        ExitCode::from(2)
    };
    let state = state_dir(&args);
    let (addr, doc) = match ask(&state) {
        Ok(x) => x,
        Err(msg) => return fail(msg),
    };
    let healthy = doc["healthy"].as_bool().unwrap_or(false);
    let mut out = std::io::stdout().lock();
    let _ = if args.json {
        writeln!(out, "{doc}")
    } else {
        print_summary(&mut out, &doc, addr)
    };
    if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The state directory to ask about: `--state-dir`, else the configuration's, else
/// what a configuration that does not load names, else the default. A configuration
/// that does not load is said on stderr (a reload would refuse it).
fn state_dir(args: &Args) -> PathBuf {
    if let Some(dir) = &args.state_dir {
        return dir.clone();
    }
    let flag = args.config.config.as_deref();
    match config::load_daemon(flag) {
        Ok((_, d)) => d.agent.state_dir,
        Err(e) => {
            let first = e.to_string();
            let first = first.lines().next().unwrap_or("");
            let _ = writeln!(
                std::io::stderr(),
                "auditship status: warning: the configuration does not load ({first}); \
                 a reload would be refused. Asking the daemon of the state directory it names."
            );
            config::salvage::state_dir(flag).unwrap_or_else(config::daemon::default_state_dir)
        }
    }
}

/// The address and `/status` document of the daemon of `state`, or why it cannot
/// be asked.
fn ask(state: &Path) -> Result<(std::net::SocketAddr, serde_json::Value), String> {
    let file = state.join(crate::daemon::telemetry::ADDR_FILE);
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "not running: no daemon listens for the state directory {} ({} is absent: \
                 the daemon is stopped, could not bind its [metrics] listen address, or runs \
                 with [metrics] enabled = false; its log says which)",
                state.display(),
                file.display()
            ));
        }
        Err(e) => {
            return Err(format!(
                "cannot read {}: {e}; run as the user the daemon runs as",
                file.display()
            ));
        }
    };
    let addr: std::net::SocketAddr = text.trim().parse().map_err(|_| {
        format!(
            "{} does not hold a listener address: {:?}",
            file.display(),
            text.trim()
        )
    })?;
    let doc = get_status(addr).map_err(|e| {
        format!(
            "not running: the daemon of {} does not answer on {addr} ({e})",
            state.display()
        )
    })?;
    // An address left by a daemon that did not stop cleanly may lead to another.
    if let Some(theirs) = doc["state_dir"].as_str()
        && !same_dir(Path::new(theirs), state)
    {
        return Err(format!(
            "not running: {addr}, named in {}, is answered by the daemon of another state \
             directory ({theirs})",
            file.display()
        ));
    }
    Ok((addr, doc))
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn get_status(addr: std::net::SocketAddr) -> std::io::Result<serde_json::Value> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"GET /status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let at = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no HTTP answer"))?;
    serde_json::from_slice(&resp[at + 4..]).map_err(std::io::Error::other)
}

fn print_summary(
    out: &mut dyn Write,
    d: &serde_json::Value,
    addr: std::net::SocketAddr,
) -> std::io::Result<()> {
    let healthy = d["healthy"].as_bool().unwrap_or(false);
    writeln!(
        out,
        "auditship {} on {} (pid {}, up {}s, listening on {addr})",
        d["version"].as_str().unwrap_or("?"),
        d["host"].as_str().unwrap_or("?"),
        d["pid"],
        d["uptime_seconds"],
    )?;
    if healthy {
        writeln!(out, "health: ok")?;
    } else {
        writeln!(
            out,
            "health: UNHEALTHY: {}",
            d["reason"].as_str().unwrap_or("?")
        )?;
    }
    print_config(out, d)?;
    let r = &d["reader"];
    writeln!(
        out,
        "reader: {}, {}, {}, {}{}",
        count(&r["files"], "file tracked", "files tracked"),
        count(&r["events"], "event read", "events read"),
        count(&r["problems"], "problem", "problems"),
        count(&r["redacted"], "redacted", "redacted"),
        if r["paused_for_full_queue"] == true {
            ", PAUSED (queue full)"
        } else {
            ""
        }
    )?;
    let sealer = &d["sealer"];
    if sealer.is_object() {
        writeln!(
            out,
            "sealer: {} on {}: {}, {}, {}, {}",
            sealer["listen"].as_str().unwrap_or("?"),
            count(&sealer["streams"], "stream", "streams"),
            count(&sealer["sealed"], "event sealed", "events sealed"),
            count(&sealer["digests"], "digest", "digests"),
            count(&sealer["refused"], "refused", "refused"),
            count(&sealer["turned_away"], "turned away", "turned away"),
        )?;
    }
    let t = &d["telemetry"];
    if t.is_object() {
        let last = &t["last_hook_problem"];
        writeln!(
            out,
            "telemetry: receiver on {}: {}, {}, {}{}",
            t["listen"].as_str().unwrap_or("?"),
            count(&t["records_accepted"], "record sealed", "records sealed"),
            count(&t["records_refused"], "refused", "refused"),
            count(&t["hook_problems"], "hook problem", "hook problems"),
            match (last["hook_event"].as_str(), last["kind"].as_str()) {
                (Some(event), Some(kind)) => format!(" (last: {event} {kind})"),
                _ => String::new(),
            }
        )?;
    }
    let q = &d["queue"];
    writeln!(
        out,
        "queue: {}, {}",
        count(&q["batches"], "batch", "batches"),
        count(&q["bytes"], "byte", "bytes")
    )?;
    let now_ms = crate::clock::now_ms();
    for s in d["sinks"].as_array().into_iter().flatten() {
        print_sink(out, s, now_ms)?;
    }
    Ok(())
}

/// The configuration line, and the last refused reload with its reason.
fn print_config(out: &mut dyn Write, d: &serde_json::Value) -> std::io::Result<()> {
    let refused = d["config_reload_failures"].as_u64().unwrap_or(0);
    writeln!(
        out,
        "config: {}; {} applied, {} refused",
        d["config_hash"]
            .as_str()
            .map_or("?", |h| &h[..h.len().min(12)]),
        count(&d["config_reloads"], "reload", "reloads"),
        refused
    )?;
    if let Some(why) = d["config_reload_error"].as_str() {
        writeln!(
            out,
            "config: the last reload was REFUSED; the daemon runs on its previous configuration:"
        )?;
        for line in why.lines() {
            writeln!(out, "  {line}")?;
        }
    } else if refused > 0 {
        writeln!(out, "config: a reload applied after the refused ones")?;
    }
    Ok(())
}

fn print_sink(out: &mut dyn Write, s: &serde_json::Value, now_ms: u64) -> std::io::Result<()> {
    let state = match s["failing_for_seconds"].as_u64() {
        Some(f) => format!(
            "FAILING for {f}s: {}",
            s["last_error"].as_str().unwrap_or("")
        ),
        None => "ok".to_string(),
    };
    writeln!(
        out,
        "sink {} ({}): {}; {}, lag {} / {:.1}s, {}, {} dead-lettered",
        s["name"].as_str().unwrap_or("?"),
        s["type"].as_str().unwrap_or("?"),
        state,
        count(&s["events"], "event", "events"),
        count(&s["lag_batches"], "batch", "batches"),
        s["lag_seconds"].as_f64().unwrap_or(0.0),
        count(&s["retries"], "retry", "retries"),
        s["dead_lettered"]
    )?;
    match s["last_success_ms"].as_u64() {
        Some(ms) => writeln!(
            out,
            "  last success: {} ({}s ago)",
            utc(ms),
            now_ms.saturating_sub(ms) / 1000
        )?,
        None => writeln!(out, "  last success: never (since the daemon started)")?,
    }
    if let Some(e) = s["last_error"].as_str() {
        writeln!(out, "  last error: {e}")?;
    }
    Ok(())
}

/// `1 event`, `2 events`: a count with its noun in the right number.
fn count(n: &serde_json::Value, one: &str, many: &str) -> String {
    match n.as_u64() {
        Some(1) => format!("1 {one}"),
        Some(n) => format!("{n} {many}"),
        None => format!("? {many}"),
    }
}

fn utc(ms: u64) -> String {
    let ms = i64::try_from(ms).unwrap_or(i64::MAX);
    crate::clock::format_utc(ms.div_euclid(1000), ms.rem_euclid(1000) as u32).0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_agree_in_number() {
        assert_eq!(count(&serde_json::json!(1), "event", "events"), "1 event");
        assert_eq!(count(&serde_json::json!(0), "event", "events"), "0 events");
        assert_eq!(
            count(&serde_json::json!(2), "batch", "batches"),
            "2 batches"
        );
        assert_eq!(count(&serde_json::Value::Null, "x", "xs"), "? xs");
    }

    #[test]
    fn the_summary_shows_refused_reloads_and_each_sinks_last_success_and_error() {
        let doc = serde_json::json!({
            "version": "0", "host": "h", "pid": 7, "uptime_seconds": 3,
            "healthy": true, "config_hash": "ab".repeat(32),
            "config_reloads": 0, "config_reload_failures": 1,
            "config_reload_error": "auditship.toml:1:7: expected `]`\nsecond line",
            "reader": {"files": 1, "events": 2, "problems": 0, "redacted": 0},
            "queue": {"batches": 0, "bytes": 0},
            "sinks": [{"name": "siem", "type": "http", "events": 1, "lag_batches": 0,
                       "lag_seconds": 0.0, "retries": 1, "dead_lettered": 0,
                       "last_success_ms": 1_000, "last_error": "HTTP 503: busy"}],
        });
        let mut out = Vec::new();
        print_summary(&mut out, &doc, "127.0.0.1:9".parse().unwrap()).unwrap();
        let text = String::from_utf8(out).unwrap();
        for want in [
            "0 reloads applied, 1 refused",
            "REFUSED",
            "  auditship.toml:1:7: expected `]`",
            "  second line",
            "1 file tracked, 2 events read",
            "1 event, lag 0 batches",
            "1 retry",
            "last success: 1970-01-01T00:00:01.000Z",
            "last error: HTTP 503: busy",
        ] {
            assert!(text.contains(want), "{want:?} in:\n{text}");
        }
    }
}
