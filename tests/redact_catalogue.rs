//! The redaction catalogue (`tests/redact/catalogue.json`, also the redactor's unit
//! tests) through the real binary: every secret is absent from the chained file that
//! `auditship record` writes, and from what the daemon ships for a foreign JSON line.

use crate::util::*;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

struct Case {
    input: String,
    gone: Vec<String>,
    kept: Vec<String>,
}

fn cases(kind: &str) -> Vec<Case> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/redact/catalogue.json");
    let doc: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    doc[kind]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            input: c["in"].as_str().unwrap().to_owned(),
            gone: strings(&c["gone"]),
            kept: strings(&c["kept"]),
        })
        .collect()
}

/// Every secret of `cases` is absent from `text`; says which case leaked.
fn assert_gone(text: &str, cases: &[Case], where_: &str) {
    for c in cases {
        for g in &c.gone {
            assert!(
                !text.contains(g.as_str()),
                "{where_}: {g:?} of {:?} survived",
                c.input
            );
        }
    }
}

/// `event` as JSON text without the clock readings auditship adds (`timestamp`,
/// `_auditship.received_at`).
fn without_clock(event: &Value) -> String {
    let mut e = event.clone();
    if let Some(o) = e.as_object_mut() {
        o.remove("timestamp");
        if let Some(meta) = o.get_mut("_auditship").and_then(Value::as_object_mut) {
            meta.remove("received_at");
        }
    }
    e.to_string()
}

/// Records every case of the catalogue with the real `record` into `<t>/audit`:
/// commands as Claude Code sends them (the command becomes the event's resource),
/// JSON values as a payload field Claude Code may add (kept under metadata.extra).
fn record_catalogue(t: &Path, text: &[Case], json_cases: &[Case]) -> std::path::PathBuf {
    let dir = t.join("audit");
    let cfg = write_config(
        t,
        &format!(
            "[record]\ndir = \"{}\"\nuser_id = \"dev@example.com\"\n",
            dir.display()
        ),
    );
    let run = |payload: Value| {
        let mut c = cmd(t);
        c.arg("record").arg("--config").arg(&cfg);
        let out = run_with_stdin(c, payload.to_string().as_bytes());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    for c in text {
        run(json!({
            "session_id": "s-1",
            "hook_event_name": "PreToolUse",
            "tool_name": "Bash",
            "tool_input": {"command": c.input, "description": "catalogue"},
            "cwd": "/home/dev/src",
        }));
    }
    for c in json_cases {
        let value: Value = serde_json::from_str(&c.input).unwrap();
        run(json!({
            "session_id": "s-1",
            "hook_event_name": "Notification",
            "details": value,
        }));
    }
    dir
}

/// Runs the daemon over `sources` (TOML) with a file sink until `expected` records
/// arrived; returns them.
fn ship(t: &Path, sources: &str, expected: usize) -> Vec<Value> {
    let shipped = t.join("shipped.jsonl");
    let cfg = write_config(
        t,
        &format!(
            "[agent]\nstate_dir = \"{state}\"\nhost = \"test-host\"\nrescan_interval = \"200ms\"\nshutdown_timeout = \"5s\"\nheartbeat_interval = \"0s\"\n\n{sources}\n[[sink]]\nname = \"out\"\ntype = \"file\"\npath = \"{out}\"\nbatch = {{ max_events = 500, max_wait = \"50ms\" }}\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
            state = t.join("state").display(),
            out = shipped.display(),
        ),
    );
    let daemon = Daemon::start(t, &cfg);
    let deadline = Instant::now() + Duration::from_secs(30);
    let records = loop {
        let got: Vec<Value> = written_records(&shipped);
        if got.len() >= expected || Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (code, stderr) = daemon.stop(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(records.len(), expected, "{stderr}");
    records
}

#[test]
fn record_writes_no_secret_of_the_catalogue() {
    let t = tempdir();
    let text = cases("text");
    let json_cases = cases("json");
    let dir = record_catalogue(t.path(), &text, &json_cases);

    // Every member but the clock: a timestamp such as "…:03.254Z" would hold a
    // secret such as "3.25" by chance.
    let events = read_stream(&dir);
    let file_text: String = events.iter().map(without_clock).collect();
    assert_gone(&file_text, &text, "record, resource");
    assert_gone(&file_text, &json_cases, "record, metadata.extra");
    // Not vacuous: one event per call, with what must stay and the paths redacted.
    assert_eq!(events.len(), text.len() + json_cases.len());
    for (e, c) in events.iter().zip(&text) {
        let resource = e["resource"].as_str().unwrap();
        for k in &c.kept {
            assert!(resource.contains(k.as_str()), "{k:?} lost in {resource}");
        }
        assert!(
            e["metadata"]["redacted"]
                .as_array()
                .is_some_and(|p| p.contains(&json!("resource"))),
            "{e}"
        );
    }
    let (code, report) = verify_json(&[dir.as_os_str()]);
    assert_eq!(code, 0, "{report}");

    // What record wrote is final: the daemon verifies it clean and finds nothing more
    // to redact (its digests, hashes and markers are left alone).
    let shipped = ship(
        t.path(),
        &format!(
            "[[source]]\nname = \"claude\"\npaths = [\"{}\"]\n",
            dir.display()
        ),
        events.len(),
    );
    for r in &shipped {
        assert_eq!(r["_auditship"]["integrity"]["ok"], true, "{r}");
        assert_eq!(r["_auditship"]["redacted"], json!([]), "{r}");
        assert_eq!(r["_auditship"]["id"], r["hash"], "{r}");
    }
}

#[test]
fn the_daemon_redacts_foreign_lines_by_key_context() {
    let t = tempdir();
    let src = t.path().join("foreign");
    std::fs::create_dir_all(&src).unwrap();
    // Foreign lines: the JSON cases as they are, and each command under a plain key.
    let json_cases = cases("json");
    let text = cases("text");
    let mut lines = String::new();
    for c in &json_cases {
        lines.push_str(&c.input);
        lines.push('\n');
    }
    for c in &text {
        lines.push_str(&json!({ "msg": c.input }).to_string());
        lines.push('\n');
    }
    std::fs::write(src.join("app.jsonl"), &lines).unwrap();
    let records = ship(
        t.path(),
        &format!(
            "[[source]]\nname = \"foreign\"\npaths = [\"{}\"]\nformat = \"json\"\n",
            src.display()
        ),
        json_cases.len() + text.len(),
    );

    // A foreign line has no timestamp of its own: only the daemon's clock is left out.
    let shipped_text: String = records.iter().map(without_clock).collect();
    assert_gone(&shipped_text, &json_cases, "daemon, foreign JSON");
    assert_gone(&shipped_text, &text, "daemon, foreign text");
    // Each line that held a secret says which of its values were redacted.
    for (r, c) in records.iter().zip(json_cases.iter().chain(&text)) {
        let paths = r["_auditship"]["redacted"].as_array().unwrap();
        assert_eq!(paths.is_empty(), c.gone.is_empty(), "{r}");
    }
}
