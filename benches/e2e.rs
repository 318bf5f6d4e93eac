//! End-to-end benchmark of `auditship run`: generates N v1 events in S streams, runs
//! the release daemon (chain verification on, durable queue) against a counting HTTP
//! sink on 127.0.0.1, and prints one JSON line:
//! `{"events", "seconds", "events_per_s", "mb_per_s", "cpu_s", "peak_rss_mb", "lost", "duplicates"}`.
//!
//! `cargo bench --bench e2e` (E2E_EVENTS, default 1000000; E2E_STREAMS, default 8;
//! E2E_EXTRA, TOML appended to the daemon's config, e.g. `[queue]\nmax_bytes = 4194304`;
//! E2E_WRAP, a command the daemon runs under, e.g. `heaptrack -o /tmp/ht`; the CPU and
//! memory figures are then the wrapper's; E2E_SINK, the sink type: `http` (default),
//! `splunk_hec`, `elasticsearch`, `otlp`, each against the same counting server, or
//! `syslog`, against a counting RFC 5425 receiver with TLS, or `kafka`, against a tansu
//! broker in memory on 127.0.0.1 (AUDITSHIP_TEST_TANSU, else the cache tests/run.sh
//! installs into), a topic of 8 partitions: arrivals are the records the daemon counts
//! as acknowledged; lost and duplicates come from reading the topic back with
//! kafka-python (AUDITSHIP_TEST_KAFKA_PYTHON, else target/kafka-venv)).

mod common;
#[path = "../tests/http1.rs"]
mod http1;
#[path = "../tests/pki.rs"]
mod pki;
#[path = "../tests/sink.rs"]
mod sink;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn proc_field(pid: u32, file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    text.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
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

/// Where the daemon ships in this run, and how its arrivals are counted.
enum Receiver {
    Http(sink::TestSink),
    Syslog(SyslogCounter),
    Kafka(KafkaBroker),
}

impl Receiver {
    fn accepted(&self) -> u64 {
        match self {
            Receiver::Http(s) => s.accepted(),
            Receiver::Syslog(s) => s.count.load(std::sync::atomic::Ordering::SeqCst),
            Receiver::Kafka(k) => k.acknowledged(),
        }
    }

    fn ids(&self) -> std::collections::HashMap<String, u32> {
        match self {
            Receiver::Http(s) => s.ids(),
            Receiver::Syslog(s) => s
                .ids
                .lock()
                .unwrap()
                .iter()
                .map(|(k, n)| (String::from_utf8_lossy(k).into_owned(), *n))
                .collect(),
            Receiver::Kafka(_) => unreachable!("a kafka run counts by offsets"),
        }
    }
}

/// A tansu broker in memory for the `kafka` run, and the daemon's state directory,
/// whose metrics say how many records the broker acknowledged.
struct KafkaBroker {
    child: std::process::Child,
    bootstrap: String,
    state_dir: std::path::PathBuf,
}

impl KafkaBroker {
    fn start(state_dir: std::path::PathBuf) -> KafkaBroker {
        let tansu = std::env::var_os("AUDITSHIP_TEST_TANSU")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::PathBuf::from(std::env::var_os("HOME").unwrap())
                    .join(".cache/auditship-test/tansu/bin/tansu")
            });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&tansu)
            .arg("broker")
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("tansu at {}: {e}", tansu.display()));
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            std::thread::sleep(Duration::from_millis(50));
        }
        let ok = Command::new(&tansu)
            .args([
                "topic",
                "create",
                "audit",
                "--partitions",
                "8",
                "--broker",
                &url,
            ])
            .status()
            .unwrap()
            .success();
        assert!(ok, "tansu topic create");
        KafkaBroker {
            child,
            bootstrap: format!("127.0.0.1:{port}"),
            state_dir,
        }
    }

    /// `auditship_sink_events_total` from the daemon's metrics (0 until it listens).
    fn acknowledged(&self) -> u64 {
        use std::io::Read;
        let Ok(addr) = std::fs::read_to_string(self.state_dir.join("metrics.addr")) else {
            return 0;
        };
        let Ok(mut c) = std::net::TcpStream::connect(addr.trim()) else {
            return 0;
        };
        let _ = c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut text = String::new();
        let _ = c.read_to_string(&mut text);
        text.lines()
            .find(|l| l.starts_with("auditship_sink_events_total{"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    }

    /// The records in the topic and their distinct `auditship.id` headers, read back
    /// with kafka-python (the broker's end offsets undercount in memory).
    fn records(&self) -> (u64, u64) {
        let python = std::env::var_os("AUDITSHIP_TEST_KAFKA_PYTHON")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("target/kafka-venv/bin/python3")
            });
        let script = "import sys\nfrom kafka import KafkaConsumer, TopicPartition\nc = KafkaConsumer(bootstrap_servers=sys.argv[1], enable_auto_commit=False)\nps = [TopicPartition('audit', p) for p in c.partitions_for_topic('audit')]\nc.assign(ps)\nc.seek_to_beginning(*ps)\nn, ids = 0, set()\nwhile True:\n    got = c.poll(timeout_ms=3000, max_records=10000)\n    if not got:\n        break\n    for ms in got.values():\n        for m in ms:\n            n += 1\n            ids.add(dict(m.headers)['auditship.id'])\nprint(n, len(ids))";
        let out = Command::new(python)
            .args(["-c", script, &self.bootstrap])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut w = text.split_whitespace().map(|v| v.parse::<u64>().unwrap());
        (w.next().unwrap(), w.next().unwrap())
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type IdCounts = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<[u8; 64], u32>>>;

/// A TLS syslog receiver that only splits octet-counted frames and counts each
/// message's `_auditship.id`: cheap, so the figure is the daemon's.
struct SyslogCounter {
    addr: String,
    ca_file: std::path::PathBuf,
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ids: IdCounts,
}

impl SyslogCounter {
    fn start(dir: &std::path::Path) -> SyslogCounter {
        use std::io::Read;
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};
        let pki = pki::Pki::generate(dir);
        let config = Arc::new(pki.server_config(false));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let count = Arc::new(AtomicU64::new(0));
        let ids: IdCounts = Default::default();
        let (c, i) = (count.clone(), ids.clone());
        std::thread::spawn(move || {
            for sock in listener.incoming() {
                let Ok(sock) = sock else { continue };
                let (config, count, ids) = (config.clone(), c.clone(), i.clone());
                std::thread::spawn(move || {
                    let conn = rustls::ServerConnection::new(config).unwrap();
                    let mut tls = rustls::StreamOwned::new(conn, sock);
                    const KEY: &[u8] = b"\"_auditship\":{\"v\":1,\"id\":\"";
                    let finder = memchr::memmem::FinderRev::new(KEY);
                    let mut buf: Vec<u8> = Vec::with_capacity(4 << 20);
                    let mut chunk = vec![0u8; 256 << 10];
                    loop {
                        let n = match tls.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        buf.extend_from_slice(&chunk[..n]);
                        let mut at = 0;
                        let mut seen = 0u64;
                        let mut ids = ids.lock().unwrap();
                        while let Some(sp) = memchr::memchr(b' ', &buf[at..]) {
                            let len: usize = std::str::from_utf8(&buf[at..at + sp])
                                .unwrap()
                                .parse()
                                .unwrap();
                            let start = at + sp + 1;
                            if buf.len() < start + len {
                                break;
                            }
                            let msg = &buf[start..start + len];
                            let k = finder.rfind(msg).expect("message has an id") + KEY.len();
                            let id: [u8; 64] = msg[k..k + 64].try_into().unwrap();
                            *ids.entry(id).or_insert(0) += 1;
                            seen += 1;
                            at = start + len;
                        }
                        drop(ids);
                        buf.drain(..at);
                        count.fetch_add(seen, Ordering::SeqCst);
                    }
                });
            }
        });
        SyslogCounter {
            addr,
            ca_file: pki.ca_file,
            count,
            ids,
        }
    }
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !filter.is_empty() && !filter.iter().any(|f| "e2e".contains(f.as_str())) {
        return;
    }
    let events: u64 = std::env::var("E2E_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let streams: u32 = std::env::var("E2E_STREAMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("audit");
    let mut bytes = 0u64;
    let mut expected = Vec::with_capacity(events as usize);
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
            bytes += line.len() as u64;
            let hash_at = line.windows(8).rposition(|w| w == b"\"hash\":\"").unwrap() + 8;
            expected.push(String::from_utf8_lossy(&line[hash_at..hash_at + 64]).into_owned());
            w.write_all(&line).unwrap();
        }
    }
    let kind = std::env::var("E2E_SINK").unwrap_or_else(|_| "http".into());
    let (receiver, endpoint, table) = match kind.as_str() {
        "http" | "elasticsearch" | "otlp" | "splunk_hec" => {
            let s = sink::TestSink::counting();
            let addr = s.addr.clone();
            let table = if kind == "splunk_hec" {
                "token_env = \"PATH\"\n".to_string()
            } else {
                String::new()
            };
            (Receiver::Http(s), addr, table)
        }
        "syslog" => {
            let s = SyslogCounter::start(dir.path());
            let endpoint = format!("tls://{}", s.addr);
            let table = format!("tls = {{ ca_file = \"{}\" }}\n", s.ca_file.display());
            (Receiver::Syslog(s), endpoint, table)
        }
        "kafka" => {
            let k = KafkaBroker::start(dir.path().join("state"));
            let table = format!("brokers = [\"{}\"]\ntopic = \"audit\"\n", k.bootstrap);
            (Receiver::Kafka(k), String::new(), table)
        }
        other => panic!("E2E_SINK: no benchmark for {other:?}"),
    };
    let endpoint = if endpoint.is_empty() {
        endpoint
    } else {
        format!("endpoint = \"{endpoint}\"\n")
    };
    // The kafka run counts what the daemon says was acknowledged.
    let metrics = if kind == "kafka" {
        "\n[metrics]\nlisten = \"127.0.0.1:0\"\n"
    } else {
        ""
    };
    let cfg = dir.path().join("auditship.toml");
    std::fs::write(
        &cfg,
        format!(
            "[agent]\nstate_dir = \"{}\"\nhost = \"bench\"\nheartbeat_interval = \"0s\"\n[[source]]\nname = \"bench\"\npaths = [\"{}/*\"]\n[[sink]]\nname = \"{kind}\"\ntype = \"{kind}\"\n{endpoint}{table}batch = {{ max_events = 2000, max_bytes = 2097152, max_wait = \"100ms\" }}\n{}{metrics}",
            dir.path().join("state").display(),
            root.display(),
            std::env::var("E2E_EXTRA").unwrap_or_default().replace("\\n", "\n")
        ),
    )
    .unwrap();
    let start = Instant::now();
    // E2E_WRAP runs the daemon under a profiler, e.g. `heaptrack -o /tmp/ht`.
    let wrap = std::env::var("E2E_WRAP").unwrap_or_default();
    let mut words = wrap.split_whitespace();
    let mut child = match words.next() {
        Some(program) => {
            let mut c = Command::new(program);
            c.args(words).arg(env!("CARGO_BIN_EXE_auditship"));
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_auditship")),
    };
    let mut child = child
        .arg("run")
        .arg("--config")
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id();
    let limit = Duration::from_secs(600);
    while receiver.accepted() < events && start.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(10));
    }
    let seconds = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid);
    let rss_kb = proc_field(pid, "status", "VmHWM:").unwrap_or(0);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = child.wait();
    let (lost, duplicates) = match &receiver {
        Receiver::Kafka(k) => {
            let (n, distinct) = k.records();
            (events.saturating_sub(distinct), n - distinct)
        }
        _ => {
            let ids = receiver.ids();
            let lost = expected.iter().filter(|h| !ids.contains_key(*h)).count() as u64;
            let dups: u64 = ids.values().map(|&n| u64::from(n.saturating_sub(1))).sum();
            (lost, dups)
        }
    };
    println!(
        "{{\"sink\":\"{kind}\",\"events\":{events},\"streams\":{streams},\"seconds\":{seconds:.2},\"events_per_s\":{:.0},\"mb_per_s\":{:.1},\"cpu_s\":{cpu:.2},\"cpu_s_per_million\":{:.2},\"peak_rss_mb\":{:.1},\"lost\":{lost},\"duplicates\":{duplicates}}}",
        events as f64 / seconds,
        bytes as f64 / 1e6 / seconds,
        cpu * 1e6 / events as f64,
        rss_kb as f64 / 1024.0
    );
}
