//! `auditship report` at scale, beside `auditship verify` on the same files: 50
//! streams of 20,000 events each (1,000,000 events, ~700 bytes each, as `record`
//! writes them for tool calls), in one tree, read by the release binary.
//!
//! For each command: the best wall and CPU times of three runs (taken in turns with
//! the other command, files in the page cache after a first run of each) and its
//! peak RSS, read with getrusage(RUSAGE_CHILDREN) by a small runner process (this
//! bench started again) whose only child is the command, so that no other process's
//! memory is counted. The bars: report's peak RSS at most 100 MB, its time within
//! twice verify's (`ratio_to_verify`; `cpu_ratio_to_verify` is the same in CPU time,
//! which load from elsewhere on the machine disturbs less).
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

    let verify: [&std::ffi::OsStr; 2] = ["verify".as_ref(), tree.as_os_str()];
    let report: [&std::ffi::OsStr; 6] = [
        "report".as_ref(),
        "--format".as_ref(),
        "json".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
        tree.as_os_str(),
    ];
    // One run of each to warm the page cache, then three of each, taken in turns so
    // that load from elsewhere on the machine weighs on both alike.
    run(&verify);
    run(&report);
    let (mut v, mut r) = (Best::default(), Best::default());
    for _ in 0..3 {
        v.add(run(&verify));
        r.add(run(&report));
    }
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out).unwrap()).expect("the report is JSON");
    assert_eq!(doc["events"], events, "the report counts every event");
    assert_eq!(doc["ok"], true);
    for (name, b) in [("verify", &v), ("report --format json", &r)] {
        println!(
            "{{\"bench\":\"report\",\"command\":\"{name}\",\"events\":{events},\"streams\":{streams},\"bytes\":{bytes},\"seconds\":{:.3},\"cpu_seconds\":{:.3},\"peak_rss_mb\":{:.1}}}",
            b.wall,
            b.cpu,
            b.rss_kb as f64 / 1024.0
        );
    }
    let (ratio, cpu_ratio) = (r.wall / v.wall, r.cpu / v.cpu);
    println!(
        "{{\"bench\":\"report\",\"ratio_to_verify\":{ratio:.2},\"cpu_ratio_to_verify\":{cpu_ratio:.2},\"report_peak_rss_mb\":{:.1},\"within_bars\":{}}}",
        r.rss_kb as f64 / 1024.0,
        ratio <= 2.0 && r.rss_kb <= 100 * 1024
    );
}

/// The best wall and CPU times of some runs, and the highest peak RSS.
#[derive(Default)]
struct Best {
    wall: f64,
    cpu: f64,
    rss_kb: i64,
}

impl Best {
    fn add(&mut self, run: Run) {
        let first = self.wall == 0.0;
        self.wall = if first {
            run.wall
        } else {
            self.wall.min(run.wall)
        };
        self.cpu = if first {
            run.cpu
        } else {
            self.cpu.min(run.cpu)
        };
        self.rss_kb = self.rss_kb.max(run.rss_kb);
    }
}

/// One run: wall seconds, CPU seconds (user and system), peak RSS in KiB.
struct Run {
    wall: f64,
    cpu: f64,
    rss_kb: i64,
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

/// One run of `auditship ARGS` through the runner; it must exit 0 (intact).
fn run(args: &[&std::ffi::OsStr]) -> Run {
    let out = Command::new(std::env::current_exe().unwrap())
        .env(RUNNER, "1")
        .arg(env!("CARGO_BIN_EXE_auditship"))
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let f: Vec<&str> = text.split_whitespace().collect();
    let code: i32 = f[3].parse().unwrap();
    assert_eq!(code, 0, "auditship {args:?} exited {code}");
    Run {
        wall: f[0].parse().unwrap(),
        cpu: f[2].parse().unwrap(),
        rss_kb: f[1].parse().unwrap(),
    }
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
    let cpu = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    println!(
        "{seconds} {} {} {}",
        usage.ru_maxrss,
        cpu(usage.ru_utime) + cpu(usage.ru_stime),
        status.code().unwrap_or(-1)
    );
}
