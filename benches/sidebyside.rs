//! Side by side: the release daemon at its default settings against Fluent Bit tuned
//! for throughput, on the same v1 streams, into the same counting receiver on
//! 127.0.0.1, once with a receiver that answers at once and once with one that
//! answers each request after a delay (a receiver across a network). Prints one JSON
//! line per run and a table:
//! `shipper, delay_ms, events, seconds, events_per_s, cpu_s, peak_rss_mb, lost, duplicates`.
//!
//! `cargo bench --bench sidebyside` (SXS_EVENTS, default 500000; SXS_STREAMS, default
//! 8; SXS_DATA, a directory of streams to read instead (`<dir>/<stream>/*.jsonl`, e.g.
//! events written by another producer, not in canonical form; read, never written);
//! SXS_DELAYS, receiver delays in ms, default `0,20`; FLUENT_BIT, the path of a
//! `fluent-bit` binary: without it only auditship runs; SXS_FB_STORAGE, Fluent Bit's
//! `storage.type`, default `filesystem` (buffered on disk, as auditship's queue is);
//! SXS_REPS, runs of each, default 1).
//!
//! Before each run the dataset is read once, so both start with it in the page cache.
//! Both are timed from their start until the receiver holds every event, and their
//! CPU (utime + stime) and peak RSS (VmHWM) are read at that moment. An event is
//! known at the receiver by its own `hash` member, which auditship's shipped records
//! and Fluent Bit's `json_lines` both carry; lost and duplicates are counted after
//! the shipper was stopped. Fluent Bit runs as its tuned configuration: `Flush 0.2`,
//! a threaded `tail` input with 512 KiB buffers, the `http` output in `json_lines`.

mod common;
#[path = "../tests/http1.rs"]
mod http1;
#[path = "../tests/sink.rs"]
mod sink;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What follows an event's hash in every shipped copy of it.
const HASH_KEY: &[u8] = b"\"hash\":\"";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// (CPU seconds, peak RSS in MB) of a running process.
fn usage(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm_kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0.0);
    (ticks / hz, hwm_kb / 1024.0)
}

/// The stream files of a dataset: `<root>/<stream>/*.jsonl`.
fn data_files(root: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .filter_map(|d| std::fs::read_dir(d.ok()?.path()).ok())
        .flatten()
        .filter_map(|f| Some(f.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    files
}

/// Reads every stream file once, so each shipper starts with the dataset in the page
/// cache: Fluent Bit's `tail` drops the pages of what it read (`file.cache_advise`,
/// on by default), which would make whoever runs after it read from the disk.
fn warm(root: &Path) {
    for f in data_files(root) {
        let mut file = std::fs::File::open(&f).unwrap();
        std::io::copy(&mut file, &mut std::io::sink()).unwrap();
    }
}

/// The hashes of the events of an existing dataset: `<root>/<stream>/*.jsonl`.
fn hashes_of(root: &Path) -> Vec<String> {
    let mut hashes = Vec::new();
    for f in data_files(root) {
        let data = std::fs::read(&f).unwrap();
        for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let at = memchr::memmem::rfind(line, HASH_KEY).expect("an event has a hash")
                + HASH_KEY.len();
            hashes.push(String::from_utf8_lossy(&line[at..at + 64]).into_owned());
        }
    }
    hashes
}

/// The streams: `<root>/user<s>/audit-2026-11-26.jsonl`, one chain each. Returns the
/// hash of every event.
fn generate(root: &Path, events: u64, streams: u32) -> Vec<String> {
    let mut hashes = Vec::with_capacity(events as usize);
    let per = events / u64::from(streams);
    for s in 0..streams {
        let d = root.join(format!("user{s}"));
        std::fs::create_dir_all(&d).unwrap();
        let mut w = std::io::BufWriter::new(
            std::fs::File::create(d.join("audit-2026-11-26.jsonl")).unwrap(),
        );
        let n = if s == streams - 1 {
            events - per * u64::from(streams - 1)
        } else {
            per
        };
        for line in common::chain(s, n, None) {
            let at = memchr::memmem::rfind(&line, HASH_KEY).unwrap() + HASH_KEY.len();
            hashes.push(String::from_utf8_lossy(&line[at..at + 64]).into_owned());
            w.write_all(&line).unwrap();
        }
    }
    hashes
}

#[derive(Clone, Copy, PartialEq)]
enum Shipper {
    Auditship,
    FluentBit,
}

impl Shipper {
    fn name(self) -> &'static str {
        match self {
            Shipper::Auditship => "auditship (defaults)",
            Shipper::FluentBit => "fluent-bit (tuned)",
        }
    }
}

/// Starts a shipper over `root` into `endpoint` (`http://127.0.0.1:PORT`), with its
/// configuration and state under `work`.
fn start(
    who: Shipper,
    fluent_bit: Option<&Path>,
    root: &Path,
    endpoint: &str,
    work: &Path,
) -> Child {
    std::fs::create_dir_all(work).unwrap();
    let log = std::fs::File::create(work.join("log")).unwrap();
    match who {
        Shipper::Auditship => {
            let cfg = work.join("auditship.toml");
            std::fs::write(
                &cfg,
                format!(
                    "[agent]\nstate_dir = \"{}\"\nhost = \"bench\"\nheartbeat_interval = \"0s\"\n\
                     [[source]]\nname = \"bench\"\npaths = [\"{}/*\"]\nformat = \"auditship-v1\"\n\
                     [[sink]]\nname = \"siem\"\ntype = \"http\"\nendpoint = \"{endpoint}/ingest\"\n",
                    work.join("state").display(),
                    root.display(),
                ),
            )
            .unwrap();
            Command::new(env!("CARGO_BIN_EXE_auditship"))
                .arg("run")
                .arg("--config")
                .arg(&cfg)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap()
        }
        Shipper::FluentBit => {
            let port = endpoint.rsplit(':').next().unwrap();
            let storage = std::env::var("SXS_FB_STORAGE").unwrap_or_else(|_| "filesystem".into());
            std::fs::write(
                work.join("parsers.conf"),
                "[PARSER]\n    Name   json\n    Format json\n",
            )
            .unwrap();
            let conf = work.join("fluent-bit.conf");
            std::fs::write(
                &conf,
                format!(
                    "[SERVICE]\n    Flush 0.2\n    Log_Level warn\n    Parsers_File {w}/parsers.conf\n    \
                     storage.path {w}/storage\n    storage.sync normal\n    storage.checksum off\n    \
                     storage.backlog.mem_limit 5M\n\n\
                     [INPUT]\n    Name tail\n    Path {root}/*/*.jsonl\n    Read_from_Head true\n    \
                     DB {w}/tail.db\n    Parser json\n    Refresh_Interval 1\n    storage.type {storage}\n    \
                     Threaded on\n    Buffer_Chunk_Size 512k\n    Buffer_Max_Size 512k\n\n\
                     [OUTPUT]\n    Name http\n    Match *\n    Host 127.0.0.1\n    Port {port}\n    \
                     URI /ingest\n    Format json_lines\n    Retry_Limit no_limits\n",
                    w = work.display(),
                    root = root.display(),
                ),
            )
            .unwrap();
            Command::new(fluent_bit.expect("FLUENT_BIT is set"))
                .arg("-c")
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap()
        }
    }
}

struct Row {
    who: Shipper,
    delay_ms: u64,
    events: u64,
    seconds: Option<f64>,
    cpu_s: f64,
    rss_mb: f64,
    lost: usize,
    duplicates: u64,
}

fn run(
    who: Shipper,
    fluent_bit: Option<&Path>,
    root: &Path,
    hashes: &[String],
    delay_ms: u64,
    work: &Path,
) -> Row {
    let events = hashes.len() as u64;
    let receiver = sink::TestSink::counting_by(&[HASH_KEY], Duration::from_millis(delay_ms));
    let start_at = Instant::now();
    let mut child = start(who, fluent_bit, root, &receiver.addr, work);
    let pid = child.id();
    let limit = Duration::from_secs(env_or("SXS_TIMEOUT_S", 600));
    let mut last = (0.0, 0.0);
    let mut seconds = None;
    loop {
        if receiver.distinct() as u64 >= events {
            seconds = Some(start_at.elapsed().as_secs_f64());
            last = usage(pid);
            break;
        }
        if start_at.elapsed() > limit || child.try_wait().ok().flatten().is_some() {
            break;
        }
        last = usage(pid);
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let anything still in flight land before counting duplicates.
    std::thread::sleep(Duration::from_secs(1));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = child.wait();
    let ids = receiver.ids();
    let lost = hashes.iter().filter(|h| !ids.contains_key(*h)).count();
    let duplicates = ids.values().map(|&n| u64::from(n.saturating_sub(1))).sum();
    Row {
        who,
        delay_ms,
        events,
        seconds,
        cpu_s: last.0,
        rss_mb: last.1,
        lost,
        duplicates,
    }
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !filter.is_empty() && !filter.iter().any(|f| "sidebyside".contains(f.as_str())) {
        return;
    }
    let events: u64 = env_or("SXS_EVENTS", 500_000);
    let streams: u32 = env_or("SXS_STREAMS", 8);
    let reps: u32 = env_or("SXS_REPS", 1);
    let delays: Vec<u64> = std::env::var("SXS_DELAYS")
        .unwrap_or_else(|_| "0,20".into())
        .split(',')
        .filter_map(|d| d.trim().parse().ok())
        .collect();
    let fluent_bit: Option<PathBuf> = std::env::var_os("FLUENT_BIT").map(PathBuf::from);
    let dir = tempfile::tempdir().unwrap();
    let (root, hashes) = match std::env::var_os("SXS_DATA") {
        Some(data) => {
            let root = PathBuf::from(data);
            let hashes = hashes_of(&root);
            (root, hashes)
        }
        None => {
            let root = dir.path().join("audit");
            let hashes = generate(&root, events, streams);
            (root, hashes)
        }
    };
    let mut who = vec![Shipper::Auditship];
    if fluent_bit.is_some() {
        who.push(Shipper::FluentBit);
    }
    let mut rows = Vec::new();
    let mut n = 0;
    for rep in 0..reps {
        for &delay in &delays {
            // In alternation, so both see the same machine.
            for &w in &who {
                n += 1;
                let work = dir.path().join(format!("run-{n}"));
                warm(&root);
                let load = load();
                let r = run(w, fluent_bit.as_deref(), &root, &hashes, delay, &work);
                println!(
                    "{{\"shipper\":\"{}\",\"rep\":{rep},\"delay_ms\":{delay},\"events\":{},\"seconds\":{},\"events_per_s\":{},\"cpu_s\":{:.2},\"peak_rss_mb\":{:.1},\"lost\":{},\"duplicates\":{},\"load\":\"{load}\"}}",
                    w.name(),
                    r.events,
                    r.seconds.map_or("null".into(), |s| format!("{s:.2}")),
                    r.seconds
                        .map_or("null".into(), |s| format!("{:.0}", r.events as f64 / s)),
                    r.cpu_s,
                    r.rss_mb,
                    r.lost,
                    r.duplicates,
                );
                let _ = std::fs::remove_dir_all(&work);
                rows.push(r);
            }
        }
    }
    println!();
    println!("| shipper | receiver | events/s | CPU s | peak RSS MB | lost | duplicates |");
    println!("|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.2} | {:.1} | {} | {} |",
            r.who.name(),
            if r.delay_ms == 0 {
                "instant".to_string()
            } else {
                format!("{} ms", r.delay_ms)
            },
            r.seconds.map_or("did not finish".into(), |s| format!(
                "{:.0}",
                r.events as f64 / s
            )),
            r.cpu_s,
            r.rss_mb,
            r.lost,
            r.duplicates
        );
    }
}
