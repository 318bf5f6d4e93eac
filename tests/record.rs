//! `auditship record` as Claude Code runs it: one process per hook call.

use crate::util::*;
use serde_json::{Value, json};
use std::path::Path;

const AWS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
const GH_TOKEN: &str = "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789";
const GL_TOKEN: &str = "glpat-xY7aB9cD1eF3gH5iJ7kL";
const SLACK_TOKEN: &str = "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx";
const BEARER: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJkZXYifQ.c2lnbmF0dXJl";
const URL_PASSWORD: &str = "hunter2isMyPass";
const ASSIGNED_PASSWORD: &str = "S3cr3t-Passw0rd!";
const PEM_BODY: &str = "MIIEowIBAAKCAQEA7bq9Vxn3bGz0abcdefghijklmnopqrstuv";

fn record(home: &Path, config: Option<&Path>, payload: &Value) -> std::process::Output {
    let mut c = cmd(home);
    c.arg("record");
    if let Some(p) = config {
        c.arg("--config").arg(p);
    }
    run_with_stdin(c, payload.to_string().as_bytes())
}

/// A realistic session: every row of FORMAT.md's table, an unknown event, unicode,
/// a 1 MB tool input, and secrets in commands, URLs, errors and extra fields.
fn session() -> Vec<(Value, &'static str, &'static str)> {
    let s = "7f3c2a1e-0000-4000-8000-000000000001";
    let common = |event: &str| {
        json!({"session_id": s, "transcript_path": "/home/dev/.claude/projects/x/t.jsonl", "cwd": "/home/dev/src/app",
               "hook_event_name": event, "permission_mode": "default", "prompt_id": "p-1"})
    };
    let with = |event: &str, extra: Value| {
        let mut v = common(event);
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    let pem = format!("-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----");
    let big = "x".repeat(1 << 20);
    vec![
        (
            with(
                "SessionStart",
                json!({"source": "startup", "model": "claude-sonnet"}),
            ),
            "session_start",
            "success",
        ),
        (with("Setup", json!({})), "session_start", "success"),
        (
            with(
                "UserPromptSubmit",
                json!({"prompt": format!("Grüße 👋 — deploy with password={ASSIGNED_PASSWORD}")}),
            ),
            "user_prompt",
            "success",
        ),
        (
            with("UserPromptExpansion", json!({"prompt": "/review"})),
            "user_prompt",
            "success",
        ),
        (
            with(
                "PreToolUse",
                json!({"tool_name": "Bash", "tool_use_id": "t1",
                       "tool_input": {"command": format!("curl -H 'Authorization: Bearer {BEARER}' https://deploy:{URL_PASSWORD}@git.example.com/x && export AWS_ACCESS_KEY_ID={AWS_KEY}")}}),
            ),
            "tool_execution",
            "attempted",
        ),
        (
            with(
                "PostToolUse",
                json!({"tool_name": "Read", "tool_use_id": "t2", "tool_input": {"file_path": "/home/dev/src/app/patients/record.rs"},
                                       "tool_response": {"content": pem}, "duration_ms": 12}),
            ),
            "file_read",
            "success",
        ),
        (
            with(
                "PostToolUse",
                json!({"tool_name": "Write", "tool_use_id": "t3",
                                       "tool_input": {"file_path": "/home/dev/src/app/big.txt", "content": big}}),
            ),
            "file_write",
            "success",
        ),
        (
            with(
                "PostToolUseFailure",
                json!({"tool_name": "Edit", "tool_input": {"file_path": "/etc/hosts"},
                                              "error": format!("git push https://oauth2:{GL_TOKEN}@gitlab.example.com failed")}),
            ),
            "file_write",
            "failure",
        ),
        (
            with(
                "PermissionDenied",
                json!({"tool_name": "WebFetch", "tool_input": {"url": "https://example.com/api?x=1"}}),
            ),
            "api_call",
            "denied",
        ),
        (
            with(
                "PostToolUse",
                json!({"tool_name": "WebSearch", "tool_input": {"query": "rust sled"}}),
            ),
            "api_call",
            "success",
        ),
        (
            with(
                "PostToolUse",
                json!({"tool_name": "Grep", "tool_input": {"pattern": "TODO", "path": "/home/dev/src"}}),
            ),
            "file_read",
            "success",
        ),
        (
            with(
                "PreToolUse",
                json!({"tool_name": "mcp__github__create_issue", "tool_input": {"title": "x", "token": GH_TOKEN}}),
            ),
            "tool_execution",
            "attempted",
        ),
        (
            with(
                "PermissionRequest",
                json!({"tool_name": "Bash", "tool_input": {"command": "rm -rf build"}}),
            ),
            "permission_change",
            "attempted",
        ),
        (
            with(
                "ConfigChange",
                json!({"source": "user_settings", "file_path": "/home/dev/.claude/settings.json"}),
            ),
            "config_change",
            "success",
        ),
        (
            with(
                "Notification",
                json!({"message": format!("slack says {SLACK_TOKEN}")}),
            ),
            "agent_event",
            "success",
        ),
        (
            with(
                "SomeFutureEvent",
                json!({"new_field": {"nested": [1, 2.5, "três"]}, "huge_id": 18446744073709551615u64}),
            ),
            "agent_event",
            "success",
        ),
        (
            with("SessionEnd", json!({"reason": "logout"})),
            "session_end",
            "success",
        ),
    ]
}

#[test]
fn a_realistic_session_maps_verifies_and_leaks_no_secret() {
    let t = tempdir();
    let cfg = write_config(
        t.path(),
        &format!(
            "[record]\ndir = \"{}\"\nuser_id = \"dev@example.com\"\nkeep_prompts = true\nkeep_tool_input = true\nkeep_tool_response = true\nmax_kept_bytes = 2000000\n[record.identity]\ndepartment = \"platform\"\nmfa_verified = true\n",
            t.path().join("audit").display()
        ),
    );
    let cases = session();
    for (payload, _, _) in &cases {
        let out = record(t.path(), Some(&cfg), payload);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dir = t.path().join("audit");
    let events = read_stream(&dir);
    assert_eq!(events.len(), cases.len());
    for (i, ((payload, action, outcome), e)) in cases.iter().zip(&events).enumerate() {
        assert_eq!(e["seq"], i as u64);
        assert_eq!(e["action"], *action, "{payload}");
        assert_eq!(e["outcome"], *outcome, "{payload}");
        assert_eq!(e["user_id"], "dev@example.com");
        assert_eq!(e["identity"]["department"], "platform");
        assert_eq!(e["metadata"]["source_event"], payload["hook_event_name"]);
        assert_eq!(e["metadata"]["transcript_path"], payload["transcript_path"]);
    }
    // Resources by preference: path, URL, query, command, tool.
    assert_eq!(
        events[5]["resource"],
        "/home/dev/src/app/patients/record.rs"
    );
    assert_eq!(events[8]["resource"], "https://example.com/api?x=1");
    assert_eq!(events[9]["resource"], "rust sled");
    assert_eq!(events[11]["resource"], "mcp__github__create_issue");
    // Large inputs are digested; the 1 MB input's size is recorded exactly.
    assert!(events[6]["metadata"]["input_bytes"].as_u64().unwrap() > 1 << 20);
    assert_eq!(
        events[6]["metadata"]["input_sha256"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    assert!(events[5]["metadata"]["response_sha256"].is_string());
    // Unknown events and fields are kept; integers JSON canonical form cannot carry become text.
    assert_eq!(
        events[15]["metadata"]["extra"]["new_field"]["nested"][2],
        "três"
    );
    assert_eq!(
        events[15]["metadata"]["extra"]["huge_id"],
        "18446744073709551615"
    );
    assert!(
        events[2]["metadata"]["prompt"]
            .as_str()
            .unwrap()
            .starts_with("Grüße 👋")
    );

    let text = std::fs::read_to_string(
        std::fs::read_dir(&dir)
            .unwrap()
            .find_map(|e| {
                let p = e.unwrap().path();
                (p.extension().is_some_and(|x| x == "jsonl")).then_some(p)
            })
            .unwrap(),
    )
    .unwrap();
    for secret in [
        AWS_KEY,
        GH_TOKEN,
        GL_TOKEN,
        SLACK_TOKEN,
        BEARER,
        URL_PASSWORD,
        ASSIGNED_PASSWORD,
        PEM_BODY,
    ] {
        assert!(
            !text.contains(secret),
            "secret {secret} survived in the audit file"
        );
    }
    assert!(text.contains("[REDACTED:"), "redaction markers are visible");
    let redacted_paths: Vec<&Value> = events
        .iter()
        .filter_map(|e| e["metadata"].get("redacted"))
        .collect();
    assert!(redacted_paths.len() >= 5, "{redacted_paths:?}");

    let (code, doc) = verify_json(&[dir.as_os_str()]);
    assert_eq!((code, triples(&doc)), (0, vec![]));
    let indep = independent_verify(&dir, &[]);
    assert_eq!(indep["events"], cases.len());
}

#[test]
fn compliance_tags_follow_the_resource() {
    let t = tempdir();
    let payload = json!({"hook_event_name": "PostToolUse", "session_id": "s", "tool_name": "Read",
                         "tool_input": {"file_path": "/srv/clinic/patients/chart.json"}});
    let out = record(t.path(), None, &payload);
    assert!(out.status.success());
    let e = &read_stream(&t.path().join(".claude/audit"))[0];
    let tags: Vec<&str> = e["compliance_tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        tags.contains(&"SOC2") && tags.contains(&"HIPAA"),
        "{tags:?}"
    );
}

#[test]
fn concurrent_writers_make_one_chain() {
    let t = tempdir();
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let home = t.path().to_path_buf();
            std::thread::spawn(move || {
                for i in 0..250 {
                    let p = json!({"hook_event_name": "PostToolUse", "session_id": format!("w{w}"), "tool_name": "Bash",
                                   "tool_input": {"command": format!("echo {w} {i}")}});
                    let out = record(&home, None, &p);
                    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let dir = t.path().join(".claude/audit");
    let events = read_stream(&dir);
    assert_eq!(events.len(), 2000);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], i as u64);
    }
    let (code, doc) = verify_json(&[dir.as_os_str()]);
    assert_eq!((code, triples(&doc)), (0, vec![]));
}

#[test]
fn a_partial_line_from_a_killed_writer_is_isolated() {
    let t = tempdir();
    let p = |i: u32| json!({"hook_event_name": "PostToolUse", "session_id": "s", "tool_name": "Bash", "tool_input": {"command": format!("step {i}")}});
    for i in 0..3 {
        assert!(record(t.path(), None, &p(i)).status.success());
    }
    let dir = t.path().join(".claude/audit");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .unwrap();
    // What a writer killed in the middle of its write leaves: part of a line.
    let whole = std::fs::read_to_string(&file).unwrap();
    let last = whole.lines().last().unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap();
    std::io::Write::write_all(&mut f, &last.as_bytes()[..last.len() / 2]).unwrap();
    drop(f);
    for i in 3..5 {
        assert!(record(t.path(), None, &p(i)).status.success());
    }
    let (code, doc) = verify_json(&[dir.as_os_str()]);
    assert_eq!(code, 1);
    let name = file.file_name().unwrap().to_string_lossy().to_string();
    assert_eq!(triples(&doc), [(name, 4, "invalid_json".to_string())]);
    let text = std::fs::read_to_string(&file).unwrap();
    let seqs: Vec<u64> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| v["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        [0, 1, 2, 3, 4],
        "the chain continued across the broken line"
    );
}

#[test]
fn the_head_is_found_across_files_and_past_garbage() {
    let t = tempdir();
    let dir = t.path().join(".claude/audit");
    let p = json!({"hook_event_name": "Stop", "session_id": "s"});
    for _ in 0..3 {
        assert!(record(t.path(), None, &p).status.success());
    }
    // Move today's file to a later name (a clock that was ahead), and add a newer
    // file holding only garbage and an empty one.
    let today = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .unwrap();
    std::fs::rename(&today, dir.join("audit-2999-01-01.jsonl")).unwrap();
    std::fs::write(dir.join("audit-2999-01-02.jsonl"), "not json\n{\"v\":1}\n").unwrap();
    std::fs::write(dir.join("audit-2999-01-03.jsonl"), "").unwrap();
    assert!(record(t.path(), None, &p).status.success());
    let last = std::fs::read_to_string(dir.join("audit-2999-01-03.jsonl")).unwrap();
    let e: Value =
        serde_json::from_str(last.lines().next().expect("appended to the newest file")).unwrap();
    assert_eq!(e["seq"], 3);
    let (code, doc) = verify_json(&[dir.as_os_str()]);
    assert_eq!(code, 1);
    let codes: Vec<String> = triples(&doc).into_iter().map(|p| p.2).collect();
    assert_eq!(
        codes,
        ["invalid_json", "schema"],
        "only the garbage is flagged"
    );
}

#[test]
fn hmac_signing_with_a_key_file() {
    let t = tempdir();
    let hex = "7971089fabf914db4a53a339a1a04b1a68583f8bc92089a7f491da6764b15efd";
    let kf = key_file(t.path(), "fleet", hex);
    let cfg = write_config(
        t.path(),
        &format!(
            "[record]\nhmac_kid = \"fleet-2026\"\nhmac_key_file = \"{}\"\n",
            kf.display()
        ),
    );
    for i in 0..5 {
        let p = json!({"hook_event_name": "PostToolUse", "session_id": "s", "tool_name": "Read", "tool_input": {"file_path": format!("/f{i}")}});
        let out = record(t.path(), Some(&cfg), &p);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dir = t.path().join(".claude/audit");
    let events = read_stream(&dir);
    assert!(
        events
            .iter()
            .all(|e| e["kid"] == "fleet-2026" && e["hmac"].as_str().unwrap().len() == 64)
    );
    let arg = format!("fleet-2026={}", kf.display());
    let (code, doc) = verify_json(&[
        std::ffi::OsStr::new("--key"),
        std::ffi::OsStr::new(&arg),
        dir.as_os_str(),
    ]);
    assert_eq!((code, triples(&doc)), (0, vec![]));
    independent_verify(&dir, &[("fleet-2026", hex)]);
    let wrong = key_file(t.path(), "wrong", &"ab".repeat(32));
    let arg = format!("fleet-2026={}", wrong.display());
    let (code, doc) = verify_json(&[
        std::ffi::OsStr::new("--key"),
        std::ffi::OsStr::new(&arg),
        dir.as_os_str(),
    ]);
    assert_eq!(code, 1);
    assert_eq!(triples(&doc).len(), 5);
    assert!(triples(&doc).iter().all(|p| p.2 == "hmac_mismatch"));
}

#[test]
fn files_and_directory_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempdir();
    assert!(
        record(
            t.path(),
            None,
            &json!({"hook_event_name": "Stop", "session_id": "s"})
        )
        .status
        .success()
    );
    let dir = t.path().join(".claude/audit");
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600,
            "{}",
            p.display()
        );
    }
}

#[test]
fn failures_never_block_by_default_and_block_when_configured() {
    let t = tempdir();
    // The audit directory cannot be created: a file stands in its way.
    std::fs::write(t.path().join("blocker"), "").unwrap();
    let fallback = t.path().join("fallback.log");
    let base = format!(
        "[record]\ndir = \"{}/blocker/audit\"\nfallback_file = \"{}\"\n",
        t.path().display(),
        fallback.display()
    );
    let pre = json!({"hook_event_name": "PreToolUse", "session_id": "s", "tool_name": "Bash", "tool_input": {"command": format!("echo {AWS_KEY}")}});
    let post = json!({"hook_event_name": "PostToolUse", "session_id": "s", "tool_name": "Bash"});

    let allow = write_config(t.path(), &base);
    let out = record(t.path(), Some(&allow), &pre);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("auditship record:"));
    let saved = std::fs::read_to_string(&fallback).unwrap();
    let line: Value = serde_json::from_str(saved.lines().next().unwrap()).unwrap();
    assert_eq!(
        line["event"]["metadata"]["source_event"], "PreToolUse",
        "the event is kept"
    );
    assert!(!saved.contains(AWS_KEY), "and redacted");

    let block = write_config(t.path(), &format!("{base}on_error = \"block\"\n"));
    assert_eq!(record(t.path(), Some(&block), &pre).status.code(), Some(2));
    assert_eq!(record(t.path(), Some(&block), &post).status.code(), Some(1));
    assert_eq!(
        std::fs::read_to_string(&fallback).unwrap().lines().count(),
        3
    );

    // Bad input is reported, not fatal.
    let allow = write_config(t.path(), &base);
    let out = run_with_stdin(
        {
            let mut c = cmd(t.path());
            c.arg("record").arg("--config").arg(&allow);
            c
        },
        b"not json",
    );
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn a_broken_config_is_reported_and_never_blocks() {
    let t = tempdir();
    let cfg = write_config(t.path(), "[record]\nbogus = 1\n");
    let out = record(
        t.path(),
        Some(&cfg),
        &json!({"hook_event_name": "PreToolUse", "session_id": "s"}),
    );
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bogus") && err.contains("line 2"), "{err}");
}

#[test]
fn decisions_are_recorded() {
    let t = tempdir();
    let out = cmd(t.path())
        .args([
            "record",
            "--decision",
            "use PostgreSQL",
            "--factor",
            "latency",
            "--factor",
            "ops cost",
            "--confidence",
            "0.75",
            "--alternative",
            "SQLite",
            "--resource",
            "db/schema.sql",
            "--session-id",
            "s9",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let e = &read_stream(&t.path().join(".claude/audit"))[0];
    assert_eq!(e["action"], "ai_decision");
    assert_eq!(e["session_id"], "s9");
    assert_eq!(e["resource"], "db/schema.sql");
    assert_eq!(e["decision"]["decision"], "use PostgreSQL");
    assert_eq!(
        e["decision"]["factors_considered"],
        json!(["latency", "ops cost"])
    );
    assert_eq!(e["decision"]["confidence"], 0.75);
    assert_eq!(e["decision"]["alternative_options"], json!(["SQLite"]));
    let out = cmd(t.path())
        .args(["record", "--decision", "x", "--confidence", "7"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("confidence"));
}
