//! Operating the daemon: `/metrics`, `/health`, `/status`, `auditship status`, and
//! the lifecycle records (start, heartbeat, stop) it ships.

use crate::sink::{Reply, TestSink};
use crate::util::*;
use auditship::audit::ZERO_HASH;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// GET `path` from the daemon whose state dir is `state`: (status, body).
pub(crate) fn get(state: &Path, path: &str) -> (u16, String) {
    let addr = std::fs::read_to_string(state.join("metrics.addr")).unwrap();
    let mut s = std::net::TcpStream::connect(addr.trim()).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

pub(crate) fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Parses Prometheus text exposition: every sample line is `name{labels} value`,
/// every family has HELP and TYPE before its samples. Returns samples by series.
pub(crate) fn parse_prometheus(text: &str) -> std::collections::HashMap<String, f64> {
    let mut samples = std::collections::HashMap::new();
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut p = rest.split_whitespace();
            let name = p.next().unwrap();
            let kind = p.next().unwrap();
            assert!(["counter", "gauge"].contains(&kind), "{line}");
            typed.insert(name.to_string());
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "metric name {name}"
        );
        assert!(typed.contains(name), "no TYPE before {line}");
        if let Some(labels) = series.strip_prefix(name) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "{line}"
            );
        }
        let v: f64 = value.parse().unwrap_or_else(|_| panic!("value in {line}"));
        samples.insert(series.to_string(), v);
    }
    samples
}

#[test]
fn metrics_health_and_status_follow_a_sink_outage() {
    let t = tempdir();
    let dir = t.path().join("audit");
    std::fs::create_dir_all(&dir).unwrap();
    write_chain(&dir.join("audit-1.jsonl"), 1, 0, 20, ZERO_HASH);
    let down = Arc::new(AtomicBool::new(true));
    let sink = TestSink::with({
        let down = down.clone();
        move |_, _| {
            if down.load(Ordering::SeqCst) {
                Reply::Status(503, None)
            } else {
                Reply::Ok
            }
        }
    });
    let cfg = daemon_config(
        t.path(),
        &source_toml(&dir),
        &sink.addr,
        "[metrics]\nlisten = \"127.0.0.1:0\"\nunhealthy_after = \"1s\"\n",
    );
    let state = t.path().join("state");
    let status = |json: bool| {
        let mut c = cmd(t.path());
        c.args(["status", "--config"]).arg(&cfg);
        if json {
            c.arg("--json");
        }
        c.output().unwrap()
    };
    let not_running = status(false);
    assert_eq!(not_running.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&not_running.stderr).contains("not running"));

    let d = Daemon::start(t.path(), &cfg);
    wait_until(Duration::from_secs(30), "listening", || {
        state.join("metrics.addr").exists()
    });
    // The sink has failed for over a second: unhealthy, with the reason.
    wait_until(Duration::from_secs(30), "health flips to 503", || {
        get(&state, "/health").0 == 503
    });
    let (_, why) = get(&state, "/health");
    assert!(why.contains("sink http failing"), "{why}");
    let out = status(false);
    assert_eq!(out.status.code(), Some(1), "unhealthy: exit 1");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("UNHEALTHY") && text.contains("sink http (http): FAILING"),
        "{text}"
    );

    let (code, body) = get(&state, "/metrics");
    assert_eq!(code, 200);
    let m = parse_prometheus(&body);
    assert_eq!(m["auditship_events_read_total"], 20.0, "{body}");
    assert_eq!(
        m["auditship_source_events_read_total{source=\"a\"}"], 20.0,
        "{body}"
    );
    assert_eq!(m["auditship_up"], 0.0);
    assert!(m["auditship_sink_retries_total{sink=\"http\",type=\"http\"}"] >= 1.0);
    assert!(m["auditship_sink_lag_batches{sink=\"http\",type=\"http\"}"] >= 1.0);
    assert!(m["auditship_sink_failing_seconds{sink=\"http\",type=\"http\"}"] >= 1.0);
    assert!(m["auditship_queue_batches"] >= 1.0);
    assert!(
        m.keys()
            .any(|k| k.starts_with("auditship_build_info{version=")),
        "{body}"
    );

    // The sink recovers: everything ships, healthy again, nothing behind.
    down.store(false, Ordering::SeqCst);
    sink.wait_for(20, Duration::from_secs(30));
    wait_until(Duration::from_secs(30), "health back to 200", || {
        get(&state, "/health").0 == 200
    });
    let out = status(true);
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["healthy"], true);
    assert_eq!(doc["sinks"][0]["events"], 20);
    assert_eq!(doc["sinks"][0]["lag_batches"], 0);
    assert_eq!(doc["reader"]["files"], 1);
    assert_eq!(doc["config_hash"].as_str().map(str::len), Some(64));
    let m = parse_prometheus(&get(&state, "/metrics").1);
    assert_eq!(m["auditship_up"], 1.0);
    assert_eq!(
        m["auditship_sink_events_total{sink=\"http\",type=\"http\"}"],
        20.0
    );
    assert_eq!(get(&state, "/nope").0, 404);
    let (code, _) = d.stop(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    assert!(
        !state.join("metrics.addr").exists(),
        "address withdrawn at stop"
    );
}

#[test]
fn lifecycle_records_name_the_config_and_every_stream_head() {
    let t = tempdir();
    let dir = t.path().join("audit");
    std::fs::create_dir_all(&dir).unwrap();
    let last = write_chain(&dir.join("audit-1.jsonl"), 1, 0, 5, ZERO_HASH);
    let sink = TestSink::start();
    let cfg = write_config(
        t.path(),
        &format!(
            "[agent]\nstate_dir = \"{}\"\nhost = \"test-host\"\nrescan_interval = \"200ms\"\nheartbeat_interval = \"1s\"\n\n{}\n[[sink]]\nname = \"http\"\ntype = \"http\"\nendpoint = \"{}\"\nbatch = {{ max_wait = \"50ms\" }}\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
            t.path().join("state").display(),
            source_toml(&dir),
            sink.addr
        ),
    );
    let d = Daemon::start(t.path(), &cfg);
    let events = |what: &str| -> Vec<serde_json::Value> {
        sink.records()
            .into_iter()
            .filter(|r| r["action"] == "agent_event" && r["metadata"]["source_event"] == what)
            .collect()
    };
    wait_until(Duration::from_secs(30), "two heartbeats", || {
        events("heartbeat").len() >= 2
    });
    let (code, _) = d.stop(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    let start = events("agent_start");
    let stop = events("agent_stop");
    assert_eq!((start.len(), stop.len()), (1, 1), "one start, one stop");
    let beat = events("heartbeat").pop().unwrap();
    for r in [&start[0], &beat, &stop[0]] {
        assert_eq!(r["host"], "test-host");
        assert_eq!(
            r["metadata"]["config_hash"].as_str().map(str::len),
            Some(64)
        );
        assert_eq!(r["metadata"]["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(r["_auditship"]["integrity"]["ok"], true, "{r}");
        assert_eq!(r["session_id"], start[0]["session_id"], "one run");
    }
    let streams = beat["metadata"]["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 1, "{beat}");
    assert_eq!(streams[0]["seq"], 4);
    assert_eq!(streams[0]["hash"].as_str(), Some(last.as_str()));
    assert_eq!(
        sink.records()
            .iter()
            .filter(|r| r["action"] != "agent_event")
            .count(),
        5
    );
}

#[test]
fn sighup_applies_a_valid_config_and_refuses_a_broken_one_without_losing_events() {
    let t = tempdir();
    let (dir_a, dir_b) = (t.path().join("audit-a"), t.path().join("audit-b"));
    std::fs::create_dir_all(&dir_a).unwrap();
    std::fs::create_dir_all(&dir_b).unwrap();
    let (first, second) = (TestSink::start(), TestSink::start());
    let state = t.path().join("state");
    let config = |sinks: &[&TestSink], dirs: &[&Path]| {
        let mut text = format!(
            "[agent]\nstate_dir = \"{}\"\nhost = \"test-host\"\nrescan_interval = \"200ms\"\nheartbeat_interval = \"0s\"\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
            state.display()
        );
        for (i, d) in dirs.iter().enumerate() {
            text += &format!(
                "\n[[source]]\nname = \"s{i}\"\npaths = [\"{}\"]\n",
                d.display()
            );
        }
        for (i, s) in sinks.iter().enumerate() {
            text += &format!(
                "\n[[sink]]\nname = \"k{i}\"\ntype = \"http\"\nendpoint = \"{}\"\nbatch = {{ max_events = 100, max_wait = \"50ms\" }}\nretry = {{ initial = \"50ms\", max_delay = \"300ms\" }}\n",
                s.addr
            );
        }
        text
    };
    let cfg = write_config(t.path(), &config(&[&first], &[&dir_a, &dir_b]));
    let d = Daemon::start(t.path(), &cfg);
    // Load: both streams grow all along.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, a, b) = (
            stop.clone(),
            dir_a.join("audit-1.jsonl"),
            dir_b.join("audit-1.jsonl"),
        );
        std::thread::spawn(move || {
            let (mut pa, mut pb) = (ZERO_HASH.to_string(), ZERO_HASH.to_string());
            let mut seq = 0;
            while !stop.load(Ordering::SeqCst) {
                pa = write_chain(&a, 1, seq, 20, &pa);
                pb = write_chain(&b, 2, seq, 20, &pb);
                seq += 20;
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    wait_until(Duration::from_secs(30), "shipping", || {
        first.accepted() >= 200
    });

    // A broken file: refused, said, counted; the daemon runs on.
    std::fs::write(&cfg, "[agent\nnot toml").unwrap();
    d.signal(libc::SIGHUP);
    wait_until(Duration::from_secs(30), "refusal counted", || {
        state.join("metrics.addr").exists()
            && get(&state, "/metrics")
                .1
                .contains("auditship_config_reload_failures_total 1")
    });
    let before = first.accepted();
    wait_until(Duration::from_secs(30), "still shipping", || {
        first.accepted() > before + 100
    });
    assert!(
        d.stderr().contains("configuration refused"),
        "{}",
        d.stderr()
    );

    // A valid change: a sink added, the second source removed.
    std::fs::write(&cfg, config(&[&first, &second], &[&dir_a])).unwrap();
    d.signal(libc::SIGHUP);
    wait_until(Duration::from_secs(30), "the added sink ships", || {
        second.accepted() > 0
    });
    let after_reload = first.accepted();
    wait_until(Duration::from_secs(30), "shipping after the reload", || {
        first.accepted() > after_reload + 100
    });
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    // Everything of the kept stream arrives at the first sink, at least once.
    let want = sealed_ids(&dir_a.join("audit-1.jsonl"));
    wait_until(
        Duration::from_secs(30),
        "the kept stream fully shipped",
        || {
            let got = first.ids();
            want.iter().all(|id| got.contains_key(id))
        },
    );
    let (code, log) = d.stop(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{log}");
    assert!(!log.contains("daemon failed"), "{log}");
    // The added sink gets everything read after the reload.
    let got = second.ids();
    let last = want.last().unwrap();
    assert!(
        got.contains_key(last),
        "the newest event reached the added sink"
    );
}

#[test]
fn logs_are_json_lines_when_configured() {
    let t = tempdir();
    let cfg = write_config(
        t.path(),
        &format!(
            "[agent]\nstate_dir = \"{}\"\nlog_format = \"json\"\nheartbeat_interval = \"0s\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
            t.path().join("state").display()
        ),
    );
    let mut c = cmd(t.path());
    c.args(["run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "info");
    let d = Daemon::spawn(c);
    wait_until(Duration::from_secs(30), "started", || {
        d.stderr().contains("auditship started")
    });
    let (code, log) = d.stop(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.len() >= 3, "{log}");
    assert!(
        lines
            .iter()
            .all(|l| l["level"].is_string() && l["timestamp"].is_string())
    );
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "auditship stopped")
    );
}
