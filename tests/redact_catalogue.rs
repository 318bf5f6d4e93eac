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

#[test]
fn record_writes_no_secret_of_the_catalogue() {
    let t = tempdir();
    let dir = t.path().join("audit");
    let cfg = write_config(
        t.path(),
        &format!(
            "[record]\ndir = \"{}\"\nuser_id = \"dev@example.com\"\n",
            dir.display()
        ),
    );
    let text = cases("text");
    let json_cases = cases("json");
    let run = |payload: Value| {
        let mut c = cmd(t.path());
        c.arg("record").arg("--config").arg(&cfg);
        let out = run_with_stdin(c, payload.to_string().as_bytes());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // Commands as Claude Code sends them: the command becomes the event's resource.
    for c in &text {
        run(json!({
            "session_id": "s-1",
            "hook_event_name": "PreToolUse",
            "tool_name": "Bash",
            "tool_input": {"command": c.input, "description": "catalogue"},
            "cwd": "/home/dev/src",
        }));
    }
    // JSON values as a payload field Claude Code may add: kept under metadata.extra.
    for c in &json_cases {
        let value: Value = serde_json::from_str(&c.input).unwrap();
        run(json!({
            "session_id": "s-1",
            "hook_event_name": "Notification",
            "details": value,
        }));
    }

    let file_text: String = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert_gone(&file_text, &text, "record, resource");
    assert_gone(&file_text, &json_cases, "record, metadata.extra");
    // Not vacuous: one event per call, with what must stay and the paths redacted.
    let events = read_stream(&dir);
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
}

#[test]
fn the_daemon_redacts_foreign_lines_by_key_context() {
    let t = tempdir();
    let src = t.path().join("foreign");
    std::fs::create_dir_all(&src).unwrap();
    let shipped = t.path().join("shipped.jsonl");
    let cfg = write_config(
        t.path(),
        &format!(
            "[agent]\nstate_dir = \"{state}\"\nhost = \"test-host\"\nrescan_interval = \"200ms\"\nshutdown_timeout = \"5s\"\nheartbeat_interval = \"0s\"\n\n[[source]]\nname = \"foreign\"\npaths = [\"{src}\"]\nformat = \"json\"\n\n[[sink]]\nname = \"out\"\ntype = \"file\"\npath = \"{out}\"\nbatch = {{ max_events = 500, max_wait = \"50ms\" }}\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
            state = t.path().join("state").display(),
            src = src.display(),
            out = shipped.display(),
        ),
    );
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
    let expected = json_cases.len() + text.len();

    let daemon = Daemon::start(t.path(), &cfg);
    let deadline = Instant::now() + Duration::from_secs(30);
    let records = loop {
        let got: Vec<Value> = std::fs::read_to_string(&shipped)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if got.len() >= expected || Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (code, stderr) = daemon.stop(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(records.len(), expected, "{stderr}");

    let shipped_text = std::fs::read_to_string(&shipped).unwrap();
    assert_gone(&shipped_text, &json_cases, "daemon, foreign JSON");
    assert_gone(&shipped_text, &text, "daemon, foreign text");
    // Each line that held a secret says which of its values were redacted.
    for (r, c) in records.iter().zip(json_cases.iter().chain(&text)) {
        let paths = r["_auditship"]["redacted"].as_array().unwrap();
        assert_eq!(paths.is_empty(), c.gone.is_empty(), "{r}");
    }
}
