//! `auditship report` at scale, beside `auditship verify` on the same files: 50
//! streams of 20,000 events each (1,000,000 events, ~700 bytes each, as `record`
//! writes them for tool calls), in one tree, read by the release binary.
//!
//! For each command: the best wall time of three runs (files in the page cache after
//! a first run) and its peak RSS, read with getrusage(RUSAGE_CHILDREN) by a small
//! runner process (this bench started again) whose only child is the command, so
//! that no other process's memory is counted. The bars: report's peak RSS at most
//! 100 MB, its time within twice verify's (`ratio`).
//!
//! `cargo bench --bench report`; REPORT_STREAMS and REPORT_EVENTS (per stream) change
//! the size. Prints one JSON line per command and one with the ratio.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// Set in the runner process: run the command given as arguments and print
/// "<seconds> <peak RSS KiB> <exit code>".
const RUNNER: &str = "AUDITSHIP_BENCH_RUNNER";

fn main() {
    if std::env::var_os(RUNNER).is_some() {
        runner();
        return;
    }
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !filter.is_empty() && !filter.iter().any(|f| "report".contains(f.as_str())) {
        return;
    }
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let streams = env("REPORT_STREAMS", 50) as u32;
    let per_stream = env("REPORT_EVENTS", 20_000);
    let root = tempfile::tempdir().unwrap();
    let tree = root.path().join("homes");
    let bytes = generate(&tree, streams, per_stream);
    let events = u64::from(streams) * per_stream;
    let out = root.path().join("report.json");

    let verify = measure(&["verify".as_ref(), tree.as_os_str()]);
    let report = measure(&[
        "report".as_ref(),
        "--format".as_ref(),
        "json".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
        tree.as_os_str(),
    ]);
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out).unwrap()).expect("the report is JSON");
    assert_eq!(doc["events"], events, "the report counts every event");
    assert_eq!(doc["ok"], true);
    for (name, (seconds, rss_kb)) in [("verify", verify), ("report --format json", report)] {
        println!(
            "{{\"bench\":\"report\",\"command\":\"{name}\",\"events\":{events},\"streams\":{streams},\"bytes\":{bytes},\"seconds\":{seconds:.3},\"peak_rss_mb\":{:.1}}}",
            rss_kb as f64 / 1024.0
        );
    }
    let ratio = report.0 / verify.0;
    println!(
        "{{\"bench\":\"report\",\"ratio_to_verify\":{ratio:.2},\"report_peak_rss_mb\":{:.1},\"within_bars\":{}}}",
        report.1 as f64 / 1024.0,
        ratio <= 2.0 && report.1 <= 100 * 1024
    );
}

/// Writes `streams` stream directories of `per_stream` chained events under `tree`.
/// Returns the bytes written.
fn generate(tree: &Path, streams: u32, per_stream: u64) -> u64 {
    let mut bytes = 0;
    for s in 0..streams {
        let dir = tree.join(format!("dev{s:02}/.claude/audit"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut w = std::io::BufWriter::new(
            std::fs::File::create(dir.join("audit-2026-11-01.jsonl")).unwrap(),
        );
        for line in common::chain(s, per_stream, None) {
            bytes += line.len() as u64;
            w.write_all(&line).unwrap();
        }
        w.flush().unwrap();
    }
    bytes
}

/// The best time of three runs of `auditship ARGS` (after one to warm the page
/// cache) and the highest peak RSS seen, in KiB. Each run must exit 0 (intact).
fn measure(args: &[&std::ffi::OsStr]) -> (f64, i64) {
    let run = || {
        let out = Command::new(std::env::current_exe().unwrap())
            .env(RUNNER, "1")
            .arg(env!("CARGO_BIN_EXE_auditship"))
            .args(args)
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let mut f = text.split_whitespace();
        let seconds: f64 = f.next().unwrap().parse().unwrap();
        let rss: i64 = f.next().unwrap().parse().unwrap();
        let code: i32 = f.next().unwrap().parse().unwrap();
        assert_eq!(code, 0, "auditship {args:?} exited {code}");
        (seconds, rss)
    };
    run();
    let runs: Vec<(f64, i64)> = (0..3).map(|_| run()).collect();
    let best = runs.iter().map(|r| r.0).fold(f64::MAX, f64::min);
    let rss = runs.iter().map(|r| r.1).max().unwrap_or(0);
    (best, rss)
}

/// In the runner: the command's wall time, peak RSS and exit code.
fn runner() {
    let mut args = std::env::args_os().skip(1);
    let program = args.next().expect("a program to run");
    let start = Instant::now();
    let status = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let seconds = start.elapsed().as_secs_f64();
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    println!(
        "{seconds} {} {}",
        usage.ru_maxrss,
        status.code().unwrap_or(-1)
    );
}
