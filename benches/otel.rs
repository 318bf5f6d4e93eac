//! Throughput of the telemetry receiver: the release daemon with `[telemetry]` on
//! (shipping its streams to a file sink, as the defaults do), and clients posting
//! OTLP/protobuf bodies of Claude Code log records on keep-alive connections, each
//! waiting for its 200 (sent only once the body's events are fsynced in the chain).
//! Prints one JSON line:
//! `{"records", "bodies", "connections", "seconds", "records_per_s", "cpu_s", "peak_rss_mb"}`.
//!
//! `cargo bench --bench otel` (OTEL_RECORDS, default 200000; OTEL_BODY, records per
//! body, default 100; OTEL_CONNECTIONS, default 4; OTEL_EXTRA, TOML appended to the
//! daemon's config). The records are those of `tests/fixtures/otel/denied.pb` (a real
//! Claude Code 2.1.328 session: tool decisions, tool results, API requests, hook runs),
//! repeated.

#[path = "../tests/http1.rs"]
mod http1;

use auditship::otel::{Export, LogRecord, proto};
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / hz
}

fn peak_rss_mb(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// Bodies of `per_body` records each, cycling through the fixture's records.
fn bodies(per_body: usize, count: usize) -> Vec<Vec<u8>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/otel/denied.pb");
    let export = proto::decode(&std::fs::read(path).unwrap()).unwrap();
    let resource = &export.resources[0];
    let records: Vec<LogRecord> = resource.scopes[0].records.clone();
    (0..count)
        .map(|b| {
            let mut e = Export {
                resources: vec![resource.clone()],
            };
            e.resources[0].scopes[0].records = (0..per_body)
                .map(|i| records[(b * per_body + i) % records.len()].clone())
                .collect();
            proto::encode(&e)
        })
        .collect()
}

fn main() {
    let total = env_num("OTEL_RECORDS", 200_000);
    let per_body = env_num("OTEL_BODY", 100).max(1);
    let connections = env_num("OTEL_CONNECTIONS", 4).max(1);
    let n_bodies = total.div_ceil(per_body);
    let distinct = bodies(per_body, 16);

    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dir.path().join("auditship.toml");
    std::fs::write(
        &cfg,
        format!(
            "[agent]\nstate_dir = \"{state}\"\nhost = \"bench\"\nheartbeat_interval = \"0s\"\n\
             [[source]]\nname = \"claude\"\npaths = [\"{state}/none\"]\n\
             [[sink]]\nname = \"local\"\ntype = \"file\"\npath = \"{state}/shipped.jsonl\"\nmax_file_bytes = 67108864\nmax_files = 2\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n[telemetry]\nlisten = \"127.0.0.1:{port}\"\n{extra}",
            state = dir.path().join("state").display(),
            extra = std::env::var("OTEL_EXTRA")
                .unwrap_or_default()
                .replace("\\n", "\n")
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_auditship"))
        .arg("run")
        .arg("--config")
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id();
    let ready = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            ready.elapsed() < Duration::from_secs(30),
            "the receiver never listened"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let cpu_before = cpu_seconds(pid);

    let next = std::sync::atomic::AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..connections {
            s.spawn(|| {
                let conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
                conn.set_nodelay(true).unwrap();
                let mut conn = BufReader::new(conn);
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n_bodies {
                        return;
                    }
                    let body = &distinct[i % distinct.len()];
                    let head = format!(
                        "POST /v1/logs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    );
                    let w = conn.get_mut();
                    w.write_all(head.as_bytes()).unwrap();
                    w.write_all(body).unwrap();
                    let r = http1::read_response(&mut conn).unwrap();
                    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                }
            });
        }
    });
    let seconds = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu_before;
    let rss = peak_rss_mb(pid);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = child.wait();
    let records = n_bodies * per_body;
    println!(
        "{{\"records\":{records},\"bodies\":{n_bodies},\"connections\":{connections},\"seconds\":{seconds:.2},\"records_per_s\":{:.0},\"cpu_s\":{cpu:.2},\"peak_rss_mb\":{rss:.1}}}",
        records as f64 / seconds
    );
}
