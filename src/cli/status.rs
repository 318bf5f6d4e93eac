//! `auditship status`: the running daemon's state, from its loopback listener.

use crate::config;
use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

/// Show the running daemon's state: queue, sinks (lag, last success, last error),
/// files tracked, health.
///
/// Asks the daemon's `/status` endpoint (`[metrics] listen`; the address the daemon
/// bound is read from `<state_dir>/metrics.addr`). Exit status: 0 healthy, 1
/// unhealthy, 2 the daemon is not running or cannot be asked.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  auditship status
  auditship status --json | jq .sinks")]
pub struct Args {
    #[command(flatten)]
    pub config: super::ConfigArg,
    /// Print the daemon's status document (JSON) as it is
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> ExitCode {
    let fail = |msg: String| {
        let _ = writeln!(std::io::stderr(), "auditship status: {msg}");
        ExitCode::from(2)
    };
    let daemon = match config::load_daemon(args.config.config.as_deref()) {
        Ok((_, d)) => d,
        Err(e) => return fail(e.to_string()),
    };
    let bound = std::fs::read_to_string(
        daemon
            .agent
            .state_dir
            .join(crate::daemon::telemetry::ADDR_FILE),
    )
    .ok()
    .and_then(|a| a.trim().parse::<std::net::SocketAddr>().ok());
    let Some(addr) = bound.or(daemon.metrics.listen) else {
        return fail(
            "the metrics listener is disabled ([metrics] enabled = false): nothing to ask".into(),
        );
    };
    let doc = match get_status(addr) {
        Ok(d) => d,
        Err(e) => {
            return fail(format!(
                "the daemon is not running, or not listening on {addr} ({e})"
            ));
        }
    };
    let healthy = doc["healthy"].as_bool().unwrap_or(false);
    let mut out = std::io::stdout().lock();
    let _ = if args.json {
        writeln!(out, "{doc}")
    } else {
        print_summary(&mut out, &doc)
    };
    if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
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

fn print_summary(out: &mut dyn Write, d: &serde_json::Value) -> std::io::Result<()> {
    let healthy = d["healthy"].as_bool().unwrap_or(false);
    writeln!(
        out,
        "auditship {} on {} (pid {}, up {}s, config {})",
        d["version"].as_str().unwrap_or("?"),
        d["host"].as_str().unwrap_or("?"),
        d["pid"],
        d["uptime_seconds"],
        d["config_hash"]
            .as_str()
            .map_or("?", |h| &h[..h.len().min(12)])
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
    let r = &d["reader"];
    writeln!(
        out,
        "reader: {} files tracked, {} events read, {} problems, {} redacted{}",
        r["files"],
        r["events"],
        r["problems"],
        r["redacted"],
        if r["paused_for_full_queue"] == true {
            ", PAUSED (queue full)"
        } else {
            ""
        }
    )?;
    let q = &d["queue"];
    writeln!(out, "queue: {} batches, {} bytes", q["batches"], q["bytes"])?;
    for s in d["sinks"].as_array().into_iter().flatten() {
        let state = match s["failing_for_seconds"].as_u64() {
            Some(f) => format!(
                "FAILING for {f}s: {}",
                s["last_error"].as_str().unwrap_or("")
            ),
            None => "ok".to_string(),
        };
        writeln!(
            out,
            "sink {} ({}): {}; {} events, lag {} batches / {:.1}s, {} retries, {} dead-lettered",
            s["name"].as_str().unwrap_or("?"),
            s["type"].as_str().unwrap_or("?"),
            state,
            s["events"],
            s["lag_batches"],
            s["lag_seconds"].as_f64().unwrap_or(0.0),
            s["retries"],
            s["dead_lettered"]
        )?;
    }
    Ok(())
}
