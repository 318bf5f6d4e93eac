//! `auditship run` end to end: the real binary, real files, a real HTTP sink.

use crate::sink::{Reply, TestSink};
use crate::util::*;
use std::collections::HashMap;
use std::time::Duration;

#[test]
fn every_vector_line_arrives_with_exactly_its_problems() {
    let t = tempdir();
    let (plain, keyed) = (t.path().join("plain"), t.path().join("keyed"));
    let mut expected_lines = 0u64;
    let mut cases: HashMap<String, serde_json::Value> = HashMap::new();
    for e in std::fs::read_dir(vectors_dir()).unwrap() {
        let case = e.unwrap().path();
        if !case.is_dir() {
            continue;
        }
        let exp: serde_json::Value =
            serde_json::from_slice(&std::fs::read(case.join("expected.json")).unwrap()).unwrap();
        let parent = if exp["keys"].as_object().unwrap().is_empty() {
            &plain
        } else {
            &keyed
        };
        let dst = parent.join(case.file_name().unwrap());
        std::fs::create_dir_all(&dst).unwrap();
        for f in std::fs::read_dir(&case).unwrap() {
            let f = f.unwrap().path();
            if f.extension().is_some_and(|x| x == "jsonl") {
                let data = std::fs::read(&f).unwrap();
                expected_lines += data
                    .split(|&b| b == b'\n')
                    .filter(|l| !l.trim_ascii().is_empty())
                    .count() as u64;
                std::fs::write(dst.join(f.file_name().unwrap()), data).unwrap();
            }
        }
        cases.insert(dst.display().to_string(), exp);
    }
    let key = key_file(
        t.path(),
        "fleet",
        "7971089fabf914db4a53a339a1a04b1a68583f8bc92089a7f491da6764b15efd",
    );
    let sources = format!(
        "[[source]]\nname = \"plain\"\npaths = [\"{}/*\"]\n\n[[source]]\nname = \"keyed\"\npaths = [\"{}/*\"]\nhmac_keys = {{ \"fleet-2026\" = \"{}\" }}\n",
        plain.display(),
        keyed.display(),
        key.display()
    );
    let sink = TestSink::start();
    let cfg = daemon_config(t.path(), &sources, &sink.addr, "");
    let d = Daemon::start(t.path(), &cfg);
    sink.wait_for(expected_lines, Duration::from_secs(30));
    let (code, _) = d.stop(Duration::from_secs(10));
    assert_eq!(code, Some(0));

    let mut got: HashMap<(String, String, u64), Vec<String>> = HashMap::new();
    for r in sink.records() {
        let m = &r["_auditship"];
        let codes: Vec<String> = m["integrity"]["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["code"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(m["integrity"]["ok"], codes.is_empty());
        assert_eq!(m["host"], "test-host");
        let k = (
            m["stream"].as_str().unwrap().to_string(),
            m["file"].as_str().unwrap().to_string(),
            m["line"].as_u64().unwrap(),
        );
        assert!(
            got.insert(k, codes).is_none(),
            "each line arrives once here"
        );
    }
    assert_eq!(got.len() as u64, expected_lines);
    for (stream, exp) in &cases {
        let mut want: HashMap<(String, u64), Vec<String>> = HashMap::new();
        for p in exp["problems"].as_array().unwrap() {
            want.entry((
                p["file"].as_str().unwrap().into(),
                p["line"].as_u64().unwrap(),
            ))
            .or_default()
            .push(p["code"].as_str().unwrap().into());
        }
        for ((s, file, line), codes) in &got {
            if s == stream {
                let w = want.remove(&(file.clone(), *line)).unwrap_or_default();
                assert_eq!(codes, &w, "{stream}/{file}:{line}");
            }
        }
        assert!(
            want.is_empty(),
            "{stream}: expected problems on lines never shipped: {want:?}"
        );
    }
}

#[test]
fn embedded_default_ships_the_user_audit_dir_to_a_local_file() {
    let t = tempdir();
    let p = serde_json::json!({"hook_event_name": "PostToolUse", "session_id": "s", "tool_name": "Bash", "tool_input": {"command": "ls"}});
    for _ in 0..3 {
        let mut c = cmd(t.path());
        c.arg("record");
        assert!(run_with_stdin(c, p.to_string().as_bytes()).status.success());
    }
    let mut c = cmd(t.path());
    c.env_remove("AUDITSHIP_CONFIG")
        .env("AUDITSHIP_CONFIG", "")
        .env("XDG_STATE_HOME", t.path().join("xdg"))
        .arg("run");
    let d = Daemon::spawn(c);
    let out = t.path().join("xdg/auditship/shipped.jsonl");
    let start = std::time::Instant::now();
    // Besides the events, the daemon ships its own start (and, later, stop) records.
    let events = |text: &str| {
        text.lines()
            .filter(|l| !l.contains("\"action\":\"agent_event\""))
            .count()
    };
    while std::fs::read_to_string(&out)
        .map(|s| events(&s))
        .unwrap_or(0)
        < 3
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "nothing shipped to {}: {}",
            out.display(),
            d.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, _) = d.stop(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (lifecycle, lines): (Vec<serde_json::Value>, Vec<serde_json::Value>) = lines
        .into_iter()
        .partition(|r| r["action"] == "agent_event");
    assert_eq!(lines.len(), 3);
    assert!(
        lines
            .iter()
            .chain(&lifecycle)
            .all(|r| r["_auditship"]["integrity"]["ok"] == true)
    );
    assert_eq!(lines[2]["seq"], 2);
    let what: Vec<&str> = lifecycle
        .iter()
        .map(|r| r["metadata"]["source_event"].as_str().unwrap())
        .collect();
    assert_eq!(
        what,
        ["agent_start", "agent_stop"],
        "lifecycle records by default"
    );
}

#[test]
fn a_permanent_rejection_is_dead_lettered_and_later_batches_ship() {
    let t = tempdir();
    let dir = t.path().join("audit");
    std::fs::create_dir_all(&dir).unwrap();
    let prev = write_chain(
        &dir.join("audit-1.jsonl"),
        1,
        0,
        10,
        auditship::audit::ZERO_HASH,
    );
    // The first request is rejected for good; everything after is accepted.
    let sink = TestSink::with(|n, _| {
        if n == 0 {
            Reply::Status(400, None)
        } else {
            Reply::Ok
        }
    });
    let cfg = daemon_config(t.path(), &source_toml(&dir), &sink.addr, "");
    let d = Daemon::start(t.path(), &cfg);
    std::thread::sleep(Duration::from_millis(800));
    write_chain(&dir.join("audit-1.jsonl"), 1, 10, 5, &prev);
    sink.wait_for(5, Duration::from_secs(20));
    let (code, _) = d.stop(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    let seqs: Vec<u64> = sink
        .records()
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        [10, 11, 12, 13, 14],
        "the rejected batch is not retried, later ones ship"
    );
    // The rejected batch is kept, with the sink's reason, for operators.
    let list = cmd(t.path())
        .args(["dead-letter", "list", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success(), "{list:?}");
    assert!(
        text.contains("http batch 1 part 0: 10 events") && text.contains("400"),
        "{text}"
    );
    assert!(text.ends_with("1 dead letter, 10 events\n"), "{text}");
    let records = cmd(t.path())
        .args(["dead-letter", "list", "--records", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let seqs: Vec<u64> = String::from_utf8_lossy(&records.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(
        seqs,
        (0..10).collect::<Vec<u64>>(),
        "the rejected records themselves"
    );
    // While the daemon runs, the queue is locked: said plainly, exit 2.
    let d = Daemon::start(t.path(), &cfg);
    let started = std::time::Instant::now();
    let busy = loop {
        // Until the daemon has opened its queue, the listing still succeeds.
        let out = cmd(t.path())
            .args(["dead-letter", "list", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        if out.status.code() != Some(0) || started.elapsed() > Duration::from_secs(10) {
            break out;
        }
        // Spaced out: each listing holds the lock the daemon is waiting for.
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(busy.status.code(), Some(2), "daemon: {}", d.stderr());
    assert!(
        String::from_utf8_lossy(&busy.stderr).contains("is the daemon running?"),
        "{busy:?}"
    );
    assert_eq!(d.stop(Duration::from_secs(10)).0, Some(0));
}

#[test]
fn retryable_failures_lose_nothing() {
    let t = tempdir();
    let dir = t.path().join("audit");
    std::fs::create_dir_all(&dir).unwrap();
    write_chain(
        &dir.join("audit-1.jsonl"),
        1,
        0,
        3000,
        auditship::audit::ZERO_HASH,
    );
    // 503 with Retry-After, 500, resets and 429 for the first requests.
    let sink = TestSink::with(|n, _| match n {
        0 => Reply::Status(503, Some(1)),
        1 => Reply::Status(500, None),
        2 => Reply::Reset,
        3 => Reply::Status(429, Some(0)),
        n if n % 3 == 0 => Reply::Status(502, None),
        _ => Reply::Ok,
    });
    let cfg = daemon_config(t.path(), &source_toml(&dir), &sink.addr, "");
    let d = Daemon::start(t.path(), &cfg);
    sink.wait_for(3000, Duration::from_secs(60));
    let (code, _) = d.stop(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    let ids = sink.ids();
    assert_eq!(ids.len(), 3000);
    assert!(
        ids.values().all(|&n| n == 1),
        "no duplicates without a crash"
    );
}

/// utime + stime of a process in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn an_idle_daemon_does_nothing() {
    let t = tempdir();
    let dir = t.path().join("audit");
    std::fs::create_dir_all(&dir).unwrap();
    write_chain(
        &dir.join("audit-1.jsonl"),
        1,
        0,
        10,
        auditship::audit::ZERO_HASH,
    );
    let sink = TestSink::start();
    let cfg = daemon_config(t.path(), &source_toml(&dir), &sink.addr, "");
    let d = Daemon::start(t.path(), &cfg);
    sink.wait_for(10, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(500));
    let before = cpu_ticks(d.child.id());
    // 3 s idle with a 200 ms rescan: 15 rescans of one small directory. A busy loop
    // (e.g. waking on its own reads) burns hundreds of ticks here.
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu_ticks(d.child.id()) - before;
    assert!(used < 30, "idle daemon used {used} CPU ticks in 3 s");
    let requests = sink.requests();
    assert_eq!(d.stop(Duration::from_secs(10)).0, Some(0));
    assert_eq!(sink.requests(), requests, "nothing was sent while idle");
}

#[test]
fn a_redirect_is_never_taken_for_delivery() {
    let t = tempdir();
    let dir = t.path().join("audit");
    std::fs::create_dir_all(&dir).unwrap();
    write_chain(
        &dir.join("audit-1.jsonl"),
        1,
        0,
        20,
        auditship::audit::ZERO_HASH,
    );
    // A login page in front of the collector: POSTs are redirected for a while, and
    // a GET of the login page answers 200. Following the redirect would count as
    // delivery and lose the batch.
    let sink = TestSink::with(|n, records| {
        if records.is_empty() {
            Reply::Ok
        } else if n < 3 {
            Reply::Status(302, Some(0))
        } else {
            Reply::Ok
        }
    });
    let cfg = daemon_config(t.path(), &source_toml(&dir), &sink.addr, "");
    let d = Daemon::start(t.path(), &cfg);
    sink.wait_for(20, Duration::from_secs(30));
    let (code, _) = d.stop(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    assert_eq!(sink.ids().len(), 20);
}
