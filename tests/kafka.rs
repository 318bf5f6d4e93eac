//! The `kafka` sink against a real Kafka-protocol broker written elsewhere (tansu, in
//! memory), read back by an independent client (kafka-python): a broker down at
//! first and a kill -9 while events are still unshipped, compression, a record over
//! `message_max_bytes`, a broker restart, and config errors. SASL and TLS are in
//! `kafka_auth.rs`, which uses the broker and the reader from here.
//!
//! tests/run.sh installs both: tansu with `cargo install` into a cache it reuses
//! (found through AUDITSHIP_TEST_TANSU), kafka-python into target/kafka-venv (or
//! AUDITSHIP_TEST_KAFKA_PYTHON). A missing one fails these tests, saying so.

use crate::siem_sinks::dead_letters;
use crate::util::*;
use auditship::audit::ZERO_HASH;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The tansu binary: AUDITSHIP_TEST_TANSU, else the cache tests/run.sh installs into.
pub(crate) fn tansu() -> PathBuf {
    let path = std::env::var_os("AUDITSHIP_TEST_TANSU")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/auditship-test/tansu/bin/tansu"))
        })
        .expect("AUDITSHIP_TEST_TANSU or HOME");
    assert!(
        path.is_file(),
        "the Kafka tests need the tansu broker at {} (tests/run.sh installs it; or set AUDITSHIP_TEST_TANSU)",
        path.display()
    );
    path
}

/// A Python with kafka-python (and lz4, zstandard for compressed batches).
pub(crate) fn kafka_python() -> PathBuf {
    let path = std::env::var_os("AUDITSHIP_TEST_KAFKA_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("target/kafka-venv/bin/python3")
        });
    let ok = Command::new(&path)
        .args(["-c", "import kafka, lz4, zstandard"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the Kafka tests need kafka-python, lz4 and zstandard in {} (tests/run.sh installs them; or set AUDITSHIP_TEST_KAFKA_PYTHON)",
        path.display()
    );
    path
}

/// A tansu broker on 127.0.0.1, its data in memory.
pub(crate) struct Broker {
    port: u16,
    child: Option<Child>,
    extra: Vec<String>,
}

impl Broker {
    pub(crate) fn on(port: u16, extra: &[&str]) -> Broker {
        let mut b = Broker {
            port,
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        b.start();
        b
    }

    pub(crate) fn start(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(tansu())
            .arg("broker")
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "tansu did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub(crate) fn create_topic(&self, topic: &str, partitions: u32) {
        let out = Command::new(tansu())
            .args(["topic", "create", topic, "--broker"])
            .arg(format!("tcp://127.0.0.1:{}", self.port))
            .args(["--partitions", &partitions.to_string()])
            .output()
            .unwrap();
        assert!(out.status.success(), "tansu topic create: {out:?}");
    }

    pub(crate) fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Every record of `topic` (partition, then offset order), read by kafka-python
    /// until the ids of `want` are all there or `limit` has passed.
    pub(crate) fn read_until(
        &self,
        topic: &str,
        want: &HashSet<String>,
        limit: Duration,
    ) -> Vec<Value> {
        let t0 = Instant::now();
        loop {
            let got = self.read(topic, want.len());
            let ids: HashSet<String> = got.iter().map(id_of).collect();
            if want.is_subset(&ids) || t0.elapsed() > limit {
                return got;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Waits until `topic` holds at least one record.
    fn wait_for_records(&self, topic: &str, limit: Duration) {
        let t0 = Instant::now();
        while self.read(topic, 1).is_empty() {
            assert!(t0.elapsed() < limit, "no record in {topic} after {limit:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Every record of `topic`, read by kafka-python until `expect` were read (0:
    /// until the topic stays idle for 3 s).
    pub(crate) fn read(&self, topic: &str, expect: usize) -> Vec<Value> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/kafka_consume.py");
        let out = Command::new(kafka_python())
            .arg(script)
            .args([&self.bootstrap(), topic, &expect.to_string(), "20"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kafka_consume.py: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A record's `_auditship.id`, read from its value; asserts the header agrees.
pub(crate) fn id_of(r: &Value) -> String {
    let id = r["value"]["_auditship"]["id"]
        .as_str()
        .expect("_auditship.id in the value")
        .to_string();
    assert_eq!(r["headers"]["auditship.id"].as_str(), Some(id.as_str()));
    id
}

/// A daemon config with one source over `streams/*` and a kafka sink.
pub(crate) fn kafka_config(dir: &Path, brokers: &str, topic: &str, extra: &str) -> PathBuf {
    write_config(
        dir,
        &format!(
            "[agent]\nstate_dir = \"{state}\"\nhost = \"test-host\"\nrescan_interval = \"200ms\"\nshutdown_timeout = \"5s\"\nheartbeat_interval = \"0s\"\n\n[[source]]\nname = \"k\"\npaths = [\"{streams}/*\"]\n\n[[sink]]\nname = \"kafka\"\ntype = \"kafka\"\nbrokers = [\"{brokers}\"]\ntopic = \"{topic}\"\nbatch = {{ max_events = 500, max_wait = \"50ms\" }}\nretry = {{ initial = \"50ms\", max_delay = \"500ms\" }}\n{extra}\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
            state = dir.join("state").display(),
            streams = dir.join("streams").display(),
        ),
    )
}

/// Writes `n` more chained events to each of `streams` streams; returns their ids.
/// Each stream's events are sealed aside first and then appended in one write, so
/// the last stream's land only an instant before this returns.
pub(crate) fn write_streams(
    dir: &Path,
    prev: &mut [String],
    first_seq: u64,
    n: u64,
) -> Vec<String> {
    use std::io::Write;
    let aside = dir.join("aside");
    std::fs::create_dir_all(&aside).unwrap();
    let mut ids = Vec::new();
    let mut appends = Vec::new();
    for (s, p) in prev.iter_mut().enumerate() {
        let file = aside.join(format!("s{s}.jsonl"));
        let _ = std::fs::remove_file(&file);
        *p = write_chain(&file, s as u32, first_seq, n, p);
        ids.extend(sealed_ids(&file));
        appends.push((s, std::fs::read(&file).unwrap()));
    }
    for (s, bytes) in appends {
        let d = dir.join("streams").join(format!("s{s}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("audit-2026-11-26.jsonl"))
            .and_then(|mut f| f.write_all(&bytes))
            .unwrap();
    }
    ids
}

pub(crate) fn new_chains(streams: usize) -> Vec<String> {
    vec![ZERO_HASH.to_string(); streams]
}

/// Every id of `want` was read back.
pub(crate) fn assert_all_present(got: &[Value], want: &HashSet<String>) {
    let ids: HashSet<String> = got.iter().map(id_of).collect();
    let missing: Vec<&String> = want.difference(&ids).collect();
    assert!(
        missing.is_empty(),
        "{} of {} ids missing from the topic (read {} records), e.g. {:?}",
        missing.len(),
        want.len(),
        got.len(),
        missing.first()
    );
}

/// Each stream's records sit in one partition, keyed by the stream, and read in
/// offset order (the first copy of each id) they are the chain in order.
pub(crate) fn assert_chain_order(got: &[Value], streams: usize, per_stream: u64) {
    let mut partition_of: HashMap<String, i64> = HashMap::new();
    let mut seqs: HashMap<String, Vec<u64>> = HashMap::new();
    let mut seen = HashSet::new();
    for r in got {
        let key = r["key"].as_str().expect("a key").to_string();
        let stream = r["value"]["_auditship"]["stream"].as_str().unwrap();
        assert_eq!(key, stream, "the key is the stream");
        let p = r["partition"].as_i64().unwrap();
        assert_eq!(
            *partition_of.entry(key.clone()).or_insert(p),
            p,
            "stream {key} in more than one partition"
        );
        if seen.insert(id_of(r)) {
            seqs.entry(key)
                .or_default()
                .push(r["value"]["seq"].as_u64().unwrap());
        }
    }
    assert_eq!(seqs.len(), streams, "streams read back");
    for (key, s) in seqs {
        let want: Vec<u64> = (0..per_stream).collect();
        assert!(s == want, "stream {key}: not its chain in order: {s:?}");
    }
}

pub(crate) fn duplicates(got: &[Value]) -> usize {
    let ids: HashSet<String> = got.iter().map(id_of).collect();
    got.len() - ids.len()
}

/// What the broker held when the daemon was killed: some of the ids written by then,
/// not all, so the kill landed while events were still on their way.
fn assert_killed_mid_flight(at_kill: &[Value], written: &HashSet<String>) {
    let shipped: HashSet<String> = at_kill.iter().map(id_of).collect();
    assert!(
        shipped.is_subset(written),
        "the topic holds ids never written"
    );
    assert!(!shipped.is_empty(), "nothing had been shipped at the kill");
    assert!(
        shipped.len() < written.len(),
        "all {} events had been shipped before the kill: it did not land mid-flight",
        written.len()
    );
}

// ---------------------------------------------------------------------------------

const STREAMS: usize = 4;
const ROUNDS: u64 = 6;
const PER_ROUND: u64 = 1500;

#[test]
fn broker_down_at_first_and_a_kill_9_mid_run_lose_nothing_and_keep_each_chain_in_order() {
    let t = tempdir();
    let port = free_port();
    let bootstrap = format!("127.0.0.1:{port}");
    let cfg = kafka_config(t.path(), &bootstrap, "audit", "");
    let mut prev = new_chains(STREAMS);
    let mut want: HashSet<String> = write_streams(t.path(), &mut prev, 0, PER_ROUND)
        .into_iter()
        .collect();
    // The daemon starts first; the broker comes seconds later.
    let mut d = Daemon::start(t.path(), &cfg);
    std::thread::sleep(Duration::from_secs(2));
    let broker = Broker::on(port, &[]);
    broker.create_topic("audit", 3);
    // Events keep coming while the daemon ships; it is killed mid-run: once the
    // broker holds some records, right after a round was written.
    for round in 1..ROUNDS {
        if round == ROUNDS / 2 {
            broker.wait_for_records("audit", Duration::from_secs(60));
        }
        want.extend(write_streams(
            t.path(),
            &mut prev,
            round * PER_ROUND,
            PER_ROUND,
        ));
        if round == ROUNDS / 2 {
            d.signal(libc::SIGKILL);
            let _ = d.child.wait();
            assert_killed_mid_flight(&broker.read("audit", 0), &want);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    drop(d);
    let d = Daemon::start(t.path(), &cfg);
    let got = broker.read_until("audit", &want, Duration::from_secs(90));
    let log = d.stderr();
    assert_all_present(&got, &want);
    assert_chain_order(&got, STREAMS, ROUNDS * PER_ROUND);
    // Duplicates only of what was in flight at the kill: at most the request out and
    // the one whose acknowledgement was being stored (500 events each).
    let dups = duplicates(&got);
    assert!(dups <= 2 * 500, "{dups} duplicates after one kill");
    let (code, stderr) = d.stop(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{log}{stderr}");
}

#[test]
fn gzip_lz4_and_zstd_batches_are_read_back_by_another_client() {
    let broker = Broker::on(free_port(), &[]);
    for codec in ["gzip", "lz4", "zstd", "none"] {
        let t = tempdir();
        let topic = format!("audit-{codec}");
        broker.create_topic(&topic, 2);
        let cfg = kafka_config(
            t.path(),
            &broker.bootstrap(),
            &topic,
            &format!("compression = \"{codec}\""),
        );
        let mut prev = new_chains(2);
        let want: HashSet<String> = write_streams(t.path(), &mut prev, 0, 300)
            .into_iter()
            .collect();
        let d = Daemon::start(t.path(), &cfg);
        let got = broker.read_until(&topic, &want, Duration::from_secs(60));
        assert_all_present(&got, &want);
        assert_chain_order(&got, 2, 300);
        assert_eq!(duplicates(&got), 0, "{codec}: no kill, no duplicate");
        let (code, stderr) = d.stop(Duration::from_secs(10));
        assert_eq!(code, Some(0), "{codec}: {stderr}");
    }
}

#[test]
fn a_record_over_message_max_bytes_is_dead_lettered_with_its_size_and_the_rest_ships() {
    let t = tempdir();
    let broker = Broker::on(free_port(), &[]);
    broker.create_topic("audit", 1);
    let cfg = kafka_config(
        t.path(),
        &broker.bootstrap(),
        "audit",
        "message_max_bytes = 4096",
    );
    let mut prev = new_chains(1);
    let mut want: HashSet<String> = write_streams(t.path(), &mut prev, 0, 20)
        .into_iter()
        .collect();
    // One event of ~8 KiB: over message_max_bytes however it is framed.
    let big = t.path().join("streams/s0/audit-2026-11-26.jsonl");
    let e = format!(
        r#"{{"v":1,"id":"e-big","seq":20,"timestamp":"2026-11-26T07:06:42.000Z","user_id":"dev0@example.com","session_id":"s-0","host":"devbox","action":"tool_execution","resource":"/home/dev/{}","outcome":"success","prev_hash":"{}"}}"#,
        "x".repeat(8000),
        prev[0]
    );
    let sealed = auditship::audit::seal(&e, None).unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&big)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &sealed.line))
        .unwrap();
    prev[0] = sealed.hash.clone();
    want.extend(write_streams(t.path(), &mut prev, 21, 20));
    let d = Daemon::start(t.path(), &cfg);
    let got = broker.read_until("audit", &want, Duration::from_secs(60));
    assert_all_present(&got, &want);
    assert!(
        !got.iter().any(|r| id_of(r) == sealed.hash),
        "the large record was not sent"
    );
    // The records after it were acknowledged, so it was settled before them; the
    // queue is read once the daemon let go of it.
    let (code, stderr) = d.stop(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{stderr}");
    let letters = dead_letters(t.path(), &cfg);
    assert_eq!(letters.len(), 1, "{letters:?}");
    let reason = letters[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("exceeds message_max_bytes (4096)"),
        "reason: {reason}"
    );
}

#[test]
fn a_broker_restart_loses_nothing_written_while_it_was_down() {
    let t = tempdir();
    let mut broker = Broker::on(free_port(), &[]);
    broker.create_topic("audit", 2);
    let cfg = kafka_config(t.path(), &broker.bootstrap(), "audit", "");
    let mut prev = new_chains(2);
    let first: HashSet<String> = write_streams(t.path(), &mut prev, 0, 200)
        .into_iter()
        .collect();
    let d = Daemon::start(t.path(), &cfg);
    assert_all_present(
        &broker.read_until("audit", &first, Duration::from_secs(60)),
        &first,
    );
    // The broker goes away (its memory with it: this one keeps no data across a
    // restart) while events keep coming; it comes back on the same port.
    broker.kill();
    let second: HashSet<String> = write_streams(t.path(), &mut prev, 200, 200)
        .into_iter()
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    broker.start();
    broker.create_topic("audit", 2);
    let got = broker.read_until("audit", &second, Duration::from_secs(60));
    assert_all_present(&got, &second);
    let (code, stderr) = d.stop(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn check_config_reports_every_kafka_error_at_once() {
    let t = tempdir();
    let cfg = kafka_config(
        t.path(),
        "kafka.example.com:9092\", \"nohost",
        "bad topic",
        "compression = \"snappy\"\nacks = \"0\"\nkey = \"user\"\nmessage_max_bytes = 10\nsasl = { mechanism = \"SCRAM-SHA-1\", username = \"u\" }",
    );
    let out = cmd(t.path())
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for want in [
        "brokers",
        "nohost",
        "plain TCP to kafka.example.com",
        ".topic",
        ".compression",
        ".acks",
        ".key",
        ".message_max_bytes",
        ".sasl.mechanism",
        ".sasl.password_file",
    ] {
        assert!(err.contains(want), "no {want:?} in:\n{err}");
    }
}
