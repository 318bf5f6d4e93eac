//! What `auditship record` keeps of content: every content-bearing field of the
//! payloads Claude Code sends (shapes from its hook input schemas) is stored as
//! SHA-256 and length by default, kept as a redacted, cut copy only when a `keep_*`
//! setting asks; `resource` is bounded; `--decision` finds its session in
//! `$CLAUDE_CODE_SESSION_ID`.

use crate::util::*;
use auditship::audit::sha256_hex;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

const SESSION: &str = "0a4c2f6e-1b7d-4e38-9c51-2d8f3a6b7e90";

/// The members every hook payload has.
fn common(event: &str) -> Value {
    json!({
        "session_id": SESSION,
        "transcript_path": "/home/dev/.claude/projects/-home-dev-app/0a4c2f6e.jsonl",
        "cwd": "/home/dev/app",
        "prompt_id": "5e7d0c1a-9f2b-4a63-8d14-7b0e6c2a9f31",
        "permission_mode": "default",
        "effort": {"level": "high"},
        "hook_event_name": event,
    })
}

fn with(event: &str, members: Value) -> Value {
    let mut p = common(event);
    for (k, v) in members.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

/// Text that must not reach the audit file in clear; unique per field.
fn sentinel(field: &str) -> String {
    format!("SENTINEL {field}: what the user, the model or a tool wrote")
}

/// SHA-256 of a value as FORMAT.md defines it: the text of a string, else its
/// canonical JSON (serde's sorted, compact form is canonical for these ASCII values).
fn digest(v: &Value) -> (String, u64) {
    let bytes = match v {
        Value::String(s) => s.clone().into_bytes(),
        other => serde_json::to_vec(other).unwrap(),
    };
    (sha256_hex(&bytes), bytes.len() as u64)
}

/// A payload with a sentinel in one content field: the payload, where that value
/// is in it, where its digest must be in the event, and which setting keeps it.
struct Shape {
    payload: Value,
    value_at: &'static str,
    sha_at: &'static str,
    keep: &'static str,
}

fn shapes() -> Vec<Shape> {
    let s = sentinel;
    let shape = |payload, value_at, sha_at, keep| Shape {
        payload,
        value_at,
        sha_at,
        keep,
    };
    vec![
        shape(
            with(
                "PostToolBatch",
                json!({"tool_calls": [
                {"tool_name": "Read", "tool_use_id": "toolu_01", "tool_input": {"file_path": "/home/dev/app/.env"},
                 "tool_response": {"type": "text", "file": {"filePath": "/home/dev/app/.env", "content": s("tool_calls.tool_response"), "numLines": 1}}},
                {"tool_name": "Bash", "tool_use_id": "toolu_02", "tool_input": {"command": "ls", "description": "List files"}}]}),
            ),
            "/tool_calls/0/tool_response",
            "/metadata/tool_calls/0/response_sha256",
            "keep_tool_response",
        ),
        shape(
            with(
                "PostToolBatch",
                json!({"tool_calls": [
                {"tool_name": "Write", "tool_use_id": "toolu_03", "tool_input": {"file_path": "/home/dev/app/a.txt", "content": s("tool_calls.tool_input")}}]}),
            ),
            "/tool_calls/0/tool_input",
            "/metadata/tool_calls/0/input_sha256",
            "keep_tool_input",
        ),
        shape(
            with(
                "PostToolUseFailure",
                json!({"tool_name": "Bash", "tool_use_id": "toolu_04",
                "tool_input": {"command": "make test"}, "error": s("error"), "is_interrupt": false, "duration_ms": 812}),
            ),
            "/error",
            "/metadata/error_sha256",
            "keep_tool_response",
        ),
        shape(
            with(
                "StopFailure",
                json!({"error": "server_error", "error_details": s("error_details")}),
            ),
            "/error_details",
            "/metadata/error_details_sha256",
            "keep_tool_response",
        ),
        shape(
            with(
                "Stop",
                json!({"stop_hook_active": false, "last_assistant_message": s("Stop.last_assistant_message"),
                "background_tasks": [], "session_crons": []}),
            ),
            "/last_assistant_message",
            "/metadata/last_assistant_message_sha256",
            "keep_messages",
        ),
        shape(
            with(
                "SubagentStop",
                json!({"stop_hook_active": false, "agent_id": "agent-7", "agent_type": "code-reviewer",
                "agent_transcript_path": "/home/dev/.claude/projects/x/agent-7.jsonl",
                "last_assistant_message": s("SubagentStop.last_assistant_message")}),
            ),
            "/last_assistant_message",
            "/metadata/last_assistant_message_sha256",
            "keep_messages",
        ),
        shape(
            with(
                "StopFailure",
                json!({"error": "rate_limit", "last_assistant_message": s("StopFailure.last_assistant_message")}),
            ),
            "/last_assistant_message",
            "/metadata/last_assistant_message_sha256",
            "keep_messages",
        ),
        shape(
            with(
                "PostCompact",
                json!({"trigger": "auto", "compact_summary": s("compact_summary")}),
            ),
            "/compact_summary",
            "/metadata/compact_summary_sha256",
            "keep_messages",
        ),
        shape(
            with(
                "PreCompact",
                json!({"trigger": "manual", "custom_instructions": s("custom_instructions")}),
            ),
            "/custom_instructions",
            "/metadata/custom_instructions_sha256",
            "keep_prompts",
        ),
        shape(
            with(
                "UserPromptExpansion",
                json!({"expansion_type": "slash_command", "command_name": "review",
                "command_args": s("command_args"), "command_source": "project", "prompt": "/review"}),
            ),
            "/command_args",
            "/metadata/command_args_sha256",
            "keep_prompts",
        ),
        shape(
            with(
                "UserPromptSubmit",
                json!({"prompt": s("prompt"), "source": "user"}),
            ),
            "/prompt",
            "/metadata/input_sha256",
            "keep_prompts",
        ),
        shape(
            with(
                "Elicitation",
                json!({"mcp_server_name": "crm", "mode": "form", "elicitation_id": "e-1",
                "message": s("Elicitation.message")}),
            ),
            "/message",
            "/metadata/message_sha256",
            "keep_messages",
        ),
        shape(
            with(
                "Elicitation",
                json!({"mcp_server_name": "crm", "message": "Account details",
                "requested_schema": {"type": "object", "properties": {"account": {"type": "string", "description": s("requested_schema")}}}}),
            ),
            "/requested_schema",
            "/metadata/requested_schema_sha256",
            "keep_messages",
        ),
        shape(
            with(
                "ElicitationResult",
                json!({"mcp_server_name": "crm", "elicitation_id": "e-1", "mode": "form", "action": "accept",
                "content": {"account": s("ElicitationResult.content")}}),
            ),
            "/content",
            "/metadata/content_sha256",
            "keep_prompts",
        ),
        shape(
            with(
                "Notification",
                json!({"notification_type": "permission_prompt", "title": "Permission needed",
                "message": s("Notification.message")}),
            ),
            "/message",
            "/metadata/message_sha256",
            "keep_messages",
        ),
        shape(
            with(
                "TaskCreated",
                json!({"task_id": "3", "task_subject": s("task_subject"), "teammate_name": "bob"}),
            ),
            "/task_subject",
            "/metadata/task_subject_sha256",
            "keep_messages",
        ),
        shape(
            with(
                "TaskCompleted",
                json!({"task_id": "3", "task_subject": "Fix the login bug",
                "task_description": s("task_description")}),
            ),
            "/task_description",
            "/metadata/task_description_sha256",
            "keep_messages",
        ),
        shape(
            with(
                "Stop",
                json!({"stop_hook_active": false, "background_tasks": [
                {"id": "bash_1", "type": "shell", "status": "running", "description": "Dev server",
                 "command": s("background_tasks.command")}]}),
            ),
            "/background_tasks/0/command",
            "/metadata/background_tasks/0/command_sha256",
            "keep_tool_input",
        ),
        shape(
            with(
                "SubagentStop",
                json!({"stop_hook_active": false, "agent_id": "a", "agent_type": "t", "agent_transcript_path": "/t",
                "session_crons": [{"id": "cron_1", "schedule": "0 9 * * 1-5", "recurring": true,
                                   "prompt": s("session_crons.prompt")}]}),
            ),
            "/session_crons/0/prompt",
            "/metadata/session_crons/0/prompt_sha256",
            "keep_prompts",
        ),
        shape(
            with(
                "MessageDisplay",
                json!({"turn_id": "t-1", "message_id": "m-1", "index": 0, "final": true,
                "delta": s("MessageDisplay.delta")}),
            ),
            "/delta",
            "/metadata/delta_sha256",
            "keep_messages",
        ),
        shape(
            with(
                "SomeFutureEvent",
                json!({"future_note": s("unknown field"), "future_id": "abc-123"}),
            ),
            "/future_note",
            "/metadata/extra/future_note_sha256",
            "",
        ),
    ]
}

fn config(home: &Path, record: &str) -> PathBuf {
    write_config(
        home,
        &format!(
            "[record]\ndir = \"{}\"\n{record}",
            home.join("audit").display()
        ),
    )
}

fn record(home: &Path, config: &Path, payload: &[u8]) {
    let mut c = cmd(home);
    c.arg("record").arg("--config").arg(config);
    let out = run_with_stdin(c, payload);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every byte of the stream's files, as text.
fn stream_text(dir: &Path) -> String {
    let mut text = String::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "jsonl") {
            text.push_str(&std::fs::read_to_string(p).unwrap());
        }
    }
    text
}

/// A JSON pointer as the dotted path `metadata.redacted` lists (`a.b[0].c`).
fn dotted(pointer: &str) -> String {
    let mut out = String::new();
    for part in pointer.split('/').skip(1) {
        if part.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

fn assert_verifies(dir: &Path) {
    let (code, doc) = verify_json(&[dir.as_os_str()]);
    assert_eq!((code, triples(&doc)), (0, vec![]), "{doc}");
}

#[test]
fn every_content_field_is_stored_as_its_digest_by_default() {
    let t = tempdir();
    let cfg = config(t.path(), "");
    let shapes = shapes();
    for s in &shapes {
        record(t.path(), &cfg, s.payload.to_string().as_bytes());
    }
    let dir = t.path().join("audit");
    let text = stream_text(&dir);
    assert!(
        !text.contains("SENTINEL"),
        "content in clear in the audit file:\n{text}"
    );
    let events = read_stream(&dir);
    assert_eq!(events.len(), shapes.len());
    for (s, e) in shapes.iter().zip(&events) {
        let (sha, bytes) = digest(s.payload.pointer(s.value_at).unwrap());
        assert_eq!(e.pointer(s.sha_at), Some(&Value::from(sha)), "{e}");
        let bytes_at = s.sha_at.replace("_sha256", "_bytes");
        assert_eq!(e.pointer(&bytes_at), Some(&Value::from(bytes)), "{e}");
    }
    // What is not content stays readable.
    assert_eq!(events[0]["metadata"]["tool_calls"][1]["tool_name"], "Bash");
    assert_eq!(events[6]["metadata"]["error"], "rate_limit");
    assert_eq!(events[20]["metadata"]["extra"]["future_id"], "abc-123");
    assert_eq!(events[20]["metadata"]["extra"]["effort"]["level"], "high");
    assert_verifies(&dir);
}

#[test]
fn keep_settings_keep_redacted_cut_copies_of_their_own_fields() {
    const PASSWORD: &str = "S3cr3t-Passw0rd!";
    for keep in [
        "keep_prompts",
        "keep_tool_input",
        "keep_tool_response",
        "keep_messages",
    ] {
        let t = tempdir();
        let cfg = config(t.path(), &format!("{keep} = true\nmax_kept_bytes = 300\n"));
        let shapes = shapes();
        for s in &shapes {
            // A secret in the field, and enough text after it to be cut.
            let mut p = s.payload.clone();
            let v = p.pointer_mut(s.value_at).unwrap();
            let secret = format!("password={PASSWORD} {}", "filler ".repeat(60));
            match v {
                Value::String(text) => text.push_str(&format!(" {secret}")),
                Value::Object(m) => {
                    m.insert("zz_more".into(), Value::String(secret));
                }
                _ => unreachable!(),
            }
            record(t.path(), &cfg, p.to_string().as_bytes());
        }
        let dir = t.path().join("audit");
        let text = stream_text(&dir);
        assert!(!text.contains(PASSWORD), "{keep}: secret kept:\n{text}");
        let events = read_stream(&dir);
        for (s, e) in shapes.iter().zip(&events) {
            let line = e.to_string();
            if s.keep != keep {
                assert!(
                    !line.contains("SENTINEL"),
                    "{keep} kept another field: {line}"
                );
                continue;
            }
            let copy_at = match s.sha_at {
                "/metadata/input_sha256" => "/metadata/prompt".to_string(),
                other => other.trim_end_matches("_sha256").to_string(),
            };
            let copy = e
                .pointer(&copy_at)
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("{keep}: no copy at {copy_at}: {line}"));
            assert!(copy.contains("SENTINEL"), "{copy}");
            assert!(copy.contains("[REDACTED:"), "{copy}");
            assert!(copy.ends_with("…[truncated]"), "{copy}");
            assert!(copy.len() <= 300 + "…[truncated]".len(), "{copy}");
            let path = dotted(&copy_at);
            let redacted = e["metadata"]["redacted"].as_array().unwrap();
            assert!(
                redacted
                    .iter()
                    .any(|r| r.as_str().unwrap().starts_with(&path)),
                "{path} not in {redacted:?}"
            );
            assert!(e.pointer(s.sha_at).is_some(), "the digest stays: {line}");
        }
        assert_verifies(&dir);
    }
}

#[test]
fn a_huge_heredoc_command_makes_a_small_event() {
    let t = tempdir();
    let cfg = config(t.path(), "keep_tool_input = true\n");
    let body = "INSERT INTO t VALUES ('SENTINEL row of data');\n".repeat(52_000);
    let command = format!("psql <<'SQL'\n{body}SQL");
    assert!(command.len() > 2_400_000);
    let payload = with(
        "PreToolUse",
        json!({"tool_name": "Bash", "tool_use_id": "toolu_09",
               "tool_input": {"command": command, "description": "Load rows"}}),
    );
    record(t.path(), &cfg, payload.to_string().as_bytes());
    let dir = t.path().join("audit");
    let text = stream_text(&dir);
    assert!(text.len() < 16 * 1024, "event of {} bytes", text.len());
    let e = &read_stream(&dir)[0];
    let resource = e["resource"].as_str().unwrap();
    assert!(
        resource.len() <= 1024,
        "resource of {} bytes",
        resource.len()
    );
    assert!(
        resource.starts_with("psql <<'SQL'\nINSERT INTO t"),
        "{resource}"
    );
    assert!(resource.ends_with("…[truncated]"));
    let (sha, bytes) = digest(&Value::String(command));
    assert_eq!(e["metadata"]["resource_sha256"], sha);
    assert_eq!(e["metadata"]["resource_bytes"], bytes);
    assert!(e["metadata"]["input_sha256"].is_string());
    assert!(e["metadata"]["input"].as_str().unwrap().len() <= 4096 + 20);
    assert_verifies(&dir);
}

#[test]
fn decision_takes_the_session_from_claude_code() {
    let t = tempdir();
    let cfg = config(t.path(), "");
    let decide = |session_flag: Option<&str>| {
        let mut c = cmd(t.path());
        c.env("CLAUDE_CODE_SESSION_ID", SESSION)
            .arg("record")
            .arg("--config")
            .arg(&cfg)
            .args(["--decision", "use PostgreSQL", "--confidence", "0.7"]);
        if let Some(s) = session_flag {
            c.args(["--session-id", s]);
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    decide(None);
    decide(Some("given-on-the-command-line"));
    // A hook runs with the variable set and no --decision: still an ordinary hook call.
    record(
        t.path(),
        &cfg,
        with("SessionEnd", json!({"reason": "logout"}))
            .to_string()
            .as_bytes(),
    );
    let dir = t.path().join("audit");
    let events = read_stream(&dir);
    assert_eq!(events[0]["action"], "ai_decision");
    assert_eq!(events[0]["session_id"], SESSION);
    assert_eq!(events[1]["session_id"], "given-on-the-command-line");
    assert_eq!(events[2]["action"], "session_end");
    assert_eq!(events[2]["metadata"]["reason"], "logout");
    assert_verifies(&dir);
}
