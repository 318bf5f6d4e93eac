//! End-to-end figures for the producer and the auditor's tool, with the real binary:
//!
//! - `record`: wall time per call including process start, appending to a stream
//!   whose current file already holds 100,000 events (p50/p90/p99/max), beside a
//!   trivial process (`true`) started the same way just before each call; the bar
//!   is `p99_over_trivial_ms`;
//! - `record_sealed`: the same in sealed mode: `record` forwards each call to the
//!   release daemon's sealer on a Unix socket, which seals and syncs it before it
//!   answers;
//! - `verify`: MB/s over that stream, single-threaded, file in the page cache, and
//!   its peak RSS (bounded: one line and the chain head at a time). VERIFY_EVENTS
//!   (default 100,000) sets the stream's size, e.g. 1,300,000 for a 1 GB log.
//!
//! `cargo bench --bench cli` (set RECORD_CALLS to change the number of calls).
//! Prints one JSON line per measurement.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    // Criterion-style filters (`cargo bench -- name`) may be passed: run only on match.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    let bin = env!("CARGO_BIN_EXE_auditship");
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join(".claude/audit");
    std::fs::create_dir_all(&dir).unwrap();
    let date = auditship::clock::utc_now().1;
    let file = dir.join(format!("audit-{date}.jsonl"));
    let n: u64 = std::env::var("VERIFY_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        for line in common::chain(1, n, None) {
            w.write_all(&line).unwrap();
        }
    }
    let size = std::fs::metadata(&file).unwrap().len();

    let calls: usize = std::env::var("RECORD_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    if wanted("record_sealed") {
        record_sealed(bin, home.path(), calls);
    }
    if wanted("record") && !filter.iter().any(|f| f == "record_sealed") {
        let payload = br#"{"session_id":"5f0c1e2a-8d3b-4c4e-9a7f-b6433c85b930","transcript_path":"/home/dev/.claude/projects/app/5f0c.jsonl","cwd":"/home/dev/src/app","hook_event_name":"PostToolUse","permission_mode":"default","tool_name":"Bash","tool_use_id":"toolu_01ABC","tool_input":{"command":"cargo test --workspace -- --nocapture","description":"run tests"},"tool_response":{"stdout":"test result: ok. 120 passed","stderr":"","interrupted":false},"duration_ms":5123}"#;
        // Each `record` call is paired with a trivial process (`true`, given the same
        // payload on stdin), run just before it: load on the machine weighs on both
        // alike, and the bar is `record`'s p99 over the trivial process's.
        let env = [
            ("HOME", home.path()),
            ("AUDITSHIP_CONFIG", Path::new("/dev/null")),
        ];
        let trivial = which_true();
        let mut times = Vec::with_capacity(calls);
        let mut base = Vec::with_capacity(calls);
        for _ in 0..calls {
            base.push(timed(&trivial, &[], &env, payload));
            times.push(timed(bin, &["record"], &env, payload));
        }
        println!(
            "{{\"bench\":\"record\",\"calls\":{calls},\"existing_events\":{n},{}}}",
            figures(&mut times, &mut base)
        );
    }

    if wanted("verify") {
        // Warm the page cache, then take the best of three runs.
        // One `auditship verify` run: (seconds, peak RSS in KiB). The peak is read
        // from /proc while it runs: getrusage would also count this process's memory,
        // which the child inherits for a moment between fork and exec.
        let run = || {
            let start = Instant::now();
            let mut child = Command::new(bin)
                .arg("verify")
                .arg(&dir)
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            let status_file = format!("/proc/{}/status", child.id());
            let mut peak = 0i64;
            loop {
                if let Some(kb) = std::fs::read_to_string(&status_file).ok().and_then(|t| {
                    t.lines()
                        .find(|l| l.starts_with("VmHWM:"))
                        .and_then(|l| l.split_whitespace().nth(1)?.parse::<i64>().ok())
                }) {
                    peak = peak.max(kb);
                }
                if let Some(status) = child.try_wait().unwrap() {
                    assert!(status.success(), "the generated stream verifies clean");
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            (start.elapsed().as_secs_f64(), peak)
        };
        run();
        let runs: Vec<(f64, i64)> = (0..3).map(|_| run()).collect();
        let best = runs.iter().map(|r| r.0).fold(f64::MAX, f64::min);
        let rss = runs.iter().map(|r| r.1).max().unwrap_or(0);
        let size = std::fs::metadata(&file).unwrap().len();
        println!(
            "{{\"bench\":\"verify\",\"bytes\":{size},\"seconds\":{best:.3},\"mb_per_s\":{:.1},\"peak_rss_mb\":{:.1}}}",
            size as f64 / 1e6 / best,
            rss as f64 / 1024.0
        );
    }
    let _ = size;
}

/// p50/p90/p99/max of `times` and of the trivial process's `base`, as JSON members.
fn figures(times: &mut [Duration], base: &mut [Duration]) -> String {
    times.sort();
    base.sort();
    let pct = |v: &[Duration], p: f64| {
        v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1].as_secs_f64() * 1e3
    };
    format!(
        "\"p50_ms\":{:.3},\"p90_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3},\"trivial_p50_ms\":{:.3},\"trivial_p99_ms\":{:.3},\"p99_over_trivial_ms\":{:.3}",
        pct(times, 0.50),
        pct(times, 0.90),
        pct(times, 0.99),
        pct(times, 1.0),
        pct(base, 0.50),
        pct(base, 0.99),
        pct(times, 0.99) - pct(base, 0.99),
    )
}

/// Runs `program args` with `payload` on stdin; its wall time, process start included.
fn timed(program: &str, args: &[&str], env: &[(&str, &Path)], payload: &[u8]) -> Duration {
    let start = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // `true` may exit before reading: a broken pipe is its answer.
    let _ = child.stdin.take().unwrap().write_all(payload);
    let status = child.wait().unwrap();
    assert!(status.success(), "{program} {args:?}");
    start.elapsed()
}

/// `record` in sealed mode against the release daemon's sealer, paired with the
/// trivial process like the local figure.
fn record_sealed(bin: &str, home: &Path, calls: usize) {
    let dir = home.join("sealed-bench");
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("record.sock");
    let daemon_cfg = dir.join("daemon.toml");
    std::fs::write(
        &daemon_cfg,
        format!(
            "[agent]\nstate_dir = \"{state}\"\nheartbeat_interval = \"0s\"\n[metrics]\nenabled = false\n[[source]]\nname = \"none\"\npaths = [\"{state}/none\"]\n[[sink]]\nname = \"f\"\ntype = \"file\"\npath = \"{state}/shipped.jsonl\"\n[sealer]\nlisten = \"{socket}\"\ndir = \"{sealed}\"\nhmac_key_file = \"{state}/sealer.key\"\n",
            state = dir.join("state").display(),
            socket = socket.display(),
            sealed = dir.join("sealed").display(),
        ),
    )
    .unwrap();
    let client_cfg = dir.join("client.toml");
    std::fs::write(
        &client_cfg,
        format!(
            "[record]\nsocket = \"{}\"\non_error = \"block\"\n",
            socket.display()
        ),
    )
    .unwrap();
    let mut daemon = Command::new(bin)
        .args(["run", "--config"])
        .arg(&daemon_cfg)
        .env("HOME", home)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the sealer did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let payload = br#"{"session_id":"5f0c1e2a-8d3b-4c4e-9a7f-b6433c85b930","transcript_path":"/home/dev/.claude/projects/app/5f0c.jsonl","cwd":"/home/dev/src/app","hook_event_name":"PreToolUse","permission_mode":"default","tool_name":"Bash","tool_use_id":"toolu_01ABC","tool_input":{"command":"cargo test --workspace -- --nocapture","description":"run tests"}}"#;
    let env = [("HOME", home)];
    let config = client_cfg.to_str().unwrap();
    let trivial = which_true();
    let mut times = Vec::with_capacity(calls);
    let mut base = Vec::with_capacity(calls);
    for _ in 0..calls {
        base.push(timed(&trivial, &[], &env, payload));
        times.push(timed(bin, &["record", "--config", config], &env, payload));
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    let _ = daemon.wait();
    println!(
        "{{\"bench\":\"record_sealed\",\"calls\":{calls},{}}}",
        figures(&mut times, &mut base)
    );
}

/// The path of `true`, the trivial process `record` is measured against.
fn which_true() -> String {
    ["/bin/true", "/usr/bin/true"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("true(1) is on every system this runs on")
        .to_owned()
}
