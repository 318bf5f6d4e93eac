//! `record` at the edges: payloads serde refuses, payloads that are not JSON,
//! configuration errors under `on_error = "block"`, disk limits mid-write, and the
//! fallback file that carries failures to the SIEM.

use crate::util::*;
use auditship::audit::sha256_hex;
use serde_json::{Value, json};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// `record` with `config` (if any) and raw `stdin`.
fn record_raw(home: &Path, config: Option<&Path>, stdin: &[u8]) -> Output {
    let mut c = cmd(home);
    c.arg("record");
    if let Some(p) = config {
        c.arg("--config").arg(p);
    }
    run_with_stdin(c, stdin)
}

/// A config whose stream is `<t>/audit` and whose fallback is `<t>/fallback.jsonl`.
fn config(t: &Path, extra: &str) -> PathBuf {
    write_config(
        t,
        &format!(
            "[record]\ndir = \"{}/audit\"\nfallback_file = \"{}/fallback.jsonl\"\nfsync = false\n{extra}",
            t.display(),
            t.display()
        ),
    )
}

/// Both verifiers find the stream intact, with `events` events.
fn verifies_clean(dir: &Path, events: usize) {
    let (code, doc) = verify_json(&[dir.as_os_str()]);
    assert_eq!(code, 0, "auditship verify: {doc}");
    assert_eq!(doc["events"], events, "{doc}");
    let indep = independent_verify(dir, &[]);
    assert_eq!(indep["problems"], json!([]), "{indep}");
    assert_eq!(indep["events"], events, "{indep}");
}

fn fallback_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn lone_surrogates_are_stored_as_replacement_characters_and_verify() {
    let t = tempdir();
    let cfg = config(t.path(), "");
    // What JSON.stringify writes for strings cut inside a UTF-16 pair.
    let payloads: [&[u8]; 3] = [
        br#"{"hook_event_name":"UserPromptSubmit","session_id":"s1","cwd":"/src/\ud83d","prompt":"half an emoji \ud83d"}"#,
        br#"{"hook_event_name":"PostToolUse","session_id":"s1","tool_name":"mcp__x__y","tool_input":{"q":"\udc00 low first"},"note":"\ud800\u0041"}"#,
        b"{\"hook_event_name\":\"Notification\",\"session_id\":\"s1\",\"message_kind\":\"bad\xffbyte\"}",
    ];
    for p in payloads {
        let out = record_raw(t.path(), Some(&cfg), p);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(out.stderr.is_empty(), "{}", stderr(&out));
    }
    let dir = t.path().join("audit");
    let events = read_stream(&dir);
    assert_eq!(events.len(), 3);
    for e in &events {
        assert_eq!(e["metadata"]["replaced_invalid_unicode"], true, "{e}");
    }
    assert_eq!(events[0]["metadata"]["cwd"], "/src/\u{FFFD}");
    assert_eq!(events[0]["action"], "user_prompt");
    assert_eq!(events[1]["metadata"]["extra"]["note"], "\u{FFFD}A");
    assert_eq!(
        events[2]["metadata"]["extra"]["message_kind"],
        "bad\u{FFFD}byte"
    );
    // The prompt is digested as the text that was stored.
    assert_eq!(
        events[0]["metadata"]["input_sha256"],
        sha256_hex("half an emoji \u{FFFD}".as_bytes())
    );
    assert!(!t.path().join("fallback.jsonl").exists(), "nothing failed");
    verifies_clean(&dir, 3);
}

fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

#[test]
fn deep_payloads_are_recorded() {
    let t = tempdir();
    let cfg = config(t.path(), "");
    // Deeper than serde_json's 128, within the reader's 256: the digest covers it all.
    let input = nested(200);
    let p200 = format!(
        r#"{{"hook_event_name":"PreToolUse","session_id":"s","tool_name":"mcp__db__q","tool_input":{input},"extra_tree":{input}}}"#
    );
    // Far beyond the reader's limit.
    let p10k = format!(
        r#"{{"hook_event_name":"PostToolUse","session_id":"s","tool_name":"mcp__db__q","tool_input":{},"tool_response":"ok"}}"#,
        nested(10_000)
    );
    for p in [&p200, &p10k] {
        let out = record_raw(t.path(), Some(&cfg), p.as_bytes());
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let dir = t.path().join("audit");
    let events = read_stream(&dir);
    assert_eq!(events.len(), 2);
    let (e200, e10k) = (&events[0], &events[1]);
    assert_eq!(e200["action"], "tool_execution");
    assert_eq!(
        e200["metadata"]["input_sha256"],
        sha256_hex(input.as_bytes()),
        "the digest is of the whole input (its canonical form is its text)"
    );
    assert_eq!(e200["metadata"]["input_bytes"], input.len());
    // What is stored is bounded in depth: the stored tree ends in a digest.
    let mut v = &e200["metadata"]["extra"]["extra_tree"];
    let mut levels = 0;
    while let Value::Array(a) = v {
        v = &a[0];
        levels += 1;
    }
    assert!(levels < 64, "{levels}");
    assert_eq!(v["nested_sha256"].as_str().map(str::len), Some(64), "{v}");
    assert_eq!(e200["metadata"]["nesting_cut"], 1);

    assert_eq!(e10k["metadata"]["source_event"], "PostToolUse");
    assert_eq!(e10k["metadata"]["nesting_cut"], 1, "{}", e10k["metadata"]);
    assert_eq!(
        e10k["metadata"]["input_sha256"].as_str().map(str::len),
        Some(64)
    );
    assert_eq!(
        e10k["metadata"]["response_sha256"],
        sha256_hex(b"ok"),
        "members after the deep one are read"
    );
    verifies_clean(&dir, 2);
}

#[test]
fn a_payload_that_is_not_json_still_becomes_a_chained_event() {
    let t = tempdir();
    let cfg = config(t.path(), "");
    let truncated: &[u8] = br#"{"session_id":"s-77","hook_event_name":"UserPromptSubmit","cwd":"/home/dev/app","prompt":"SENTINEL-PROMPT-4711 and more"#;
    let garbage: &[u8] = b"\x00\xff not json at all";
    for p in [truncated, garbage, b"".as_slice()] {
        let out = record_raw(t.path(), Some(&cfg), p);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(out.stderr.is_empty(), "{}", stderr(&out));
    }
    let dir = t.path().join("audit");
    let events = read_stream(&dir);
    assert_eq!(events.len(), 3);
    for (e, p) in events.iter().zip([truncated, garbage, b"".as_slice()]) {
        assert_eq!(e["action"], "agent_event", "{e}");
        let m = &e["metadata"];
        assert_eq!(m["payload_sha256"], sha256_hex(p));
        assert_eq!(m["payload_bytes"], p.len());
        assert!(
            m["parse_error"].as_str().is_some_and(|s| !s.is_empty()),
            "{e}"
        );
    }
    let m = &events[0]["metadata"];
    assert_eq!(events[0]["session_id"], "s-77");
    assert_eq!(m["source_event"], "UserPromptSubmit");
    assert_eq!(m["cwd"], "/home/dev/app");
    assert_eq!(events[1]["metadata"]["source_event"], "unknown");
    assert_eq!(events[1]["session_id"], "unknown");
    let text = std::fs::read_to_string(stream_file(&dir)).unwrap();
    assert!(!text.contains("SENTINEL-PROMPT-4711"), "no prompt text");
    assert!(!t.path().join("fallback.jsonl").exists());
    verifies_clean(&dir, 3);
}

fn stream_file(dir: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    files.pop().expect("a stream file")
}

/// The broken configurations: each with `on_error` as given.
fn broken_configs(t: &Path, on_error: &str) -> Vec<(&'static str, PathBuf)> {
    let dir = t.join(on_error);
    std::fs::create_dir_all(&dir).unwrap();
    let base = format!(
        "[record]\non_error = \"{on_error}\"\ndir = \"{}/audit\"\n",
        dir.display()
    );
    let cases = [
        (
            "unset hmac_key_env",
            format!("{base}hmac_kid = \"k\"\nhmac_key_env = \"AUDITSHIP_TEST_NO_SUCH_KEY\"\n"),
        ),
        (
            "missing hmac_key_file",
            format!(
                "{base}hmac_kid = \"k\"\nhmac_key_file = \"{}/no-such.key\"\n",
                dir.display()
            ),
        ),
        (
            "key file that is a directory",
            format!(
                "{base}hmac_kid = \"k\"\nhmac_key_file = \"{}\"\n",
                dir.display()
            ),
        ),
        (
            "unset ${VAR}",
            format!("{base}user_id = \"${{AUDITSHIP_TEST_NO_SUCH_VAR}}\"\n"),
        ),
        (
            "broken TOML",
            format!("{base}keep_prompts = maybe\n[redact\npatterns = [\n"),
        ),
        ("unknown key", format!("{base}bogus = 1\n")),
    ];
    cases
        .into_iter()
        .enumerate()
        .map(|(i, (name, text))| {
            let p = dir.join(format!("{i}.toml"));
            std::fs::write(&p, text).unwrap();
            (name, p)
        })
        .collect()
}

#[test]
fn configuration_errors_fail_closed_by_each_events_mechanism() {
    let t = tempdir();
    let pre = br#"{"hook_event_name":"PreToolUse","session_id":"s","tool_name":"Bash","tool_input":{"command":"rm -rf build"}}"#;
    let perm = br#"{"session_id":"s","hook_event_name":"PermissionRequest","tool_name":"Bash","tool_input":{"command":"curl x"}}"#;
    let prompt = br#"{"hook_event_name":"UserPromptSubmit","session_id":"s","prompt":"SENTINEL-CONFIG-PROMPT"}"#;
    let post = br#"{"hook_event_name":"PostToolUse","session_id":"s","tool_name":"Bash"}"#;
    // Not JSON, but its event can still be read from the bytes.
    let broken_perm = br#"{"hook_event_name":"PermissionRequest","tool_input":{"command":"#;
    let fallback = t.path().join(".claude/audit-errors/record-errors.jsonl");
    for (name, cfg) in broken_configs(t.path(), "block") {
        let out = record_raw(t.path(), Some(&cfg), pre);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{name}");
        assert!(
            stderr(&out).contains("configuration"),
            "{name}: {}",
            stderr(&out)
        );

        assert_eq!(
            record_raw(t.path(), Some(&cfg), prompt).status.code(),
            Some(2),
            "{name}"
        );
        assert_eq!(
            record_raw(t.path(), Some(&cfg), post).status.code(),
            Some(1),
            "{name}"
        );

        for p in [perm.as_slice(), broken_perm.as_slice()] {
            let out = record_raw(t.path(), Some(&cfg), p);
            assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
            let answer: Value = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("{name}: no JSON decision on stdout ({e})"));
            let o = &answer["hookSpecificOutput"];
            assert_eq!(o["hookEventName"], "PermissionRequest", "{name}");
            assert_eq!(o["decision"]["behavior"], "deny", "{name}");
            assert!(
                o["decision"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty())
            );
        }
        assert!(
            !t.path().join("block/audit").exists(),
            "{name}: nothing recorded"
        );
    }
    for (name, cfg) in broken_configs(t.path(), "allow") {
        for p in [pre.as_slice(), perm, prompt, post, broken_perm] {
            let out = record_raw(t.path(), Some(&cfg), p);
            assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
            assert!(out.stdout.is_empty(), "{name}: allow prints no decision");
        }
    }
    // Every failure went to the default fallback, as the event the defaults make.
    let lines = fallback_lines(&fallback);
    assert_eq!(lines.len(), 6 * 5 + 6 * 5);
    let text = std::fs::read_to_string(&fallback).unwrap();
    assert!(
        !text.contains("SENTINEL-CONFIG-PROMPT"),
        "prompts are digested"
    );
    let prompt_line = lines
        .iter()
        .find(|l| l["event"]["metadata"]["source_event"] == "UserPromptSubmit")
        .unwrap();
    assert_eq!(
        prompt_line["event"]["metadata"]["input_sha256"],
        sha256_hex(b"SENTINEL-CONFIG-PROMPT")
    );
    assert!(
        prompt_line["error"]
            .as_str()
            .unwrap()
            .contains("configuration")
    );
}

#[test]
fn the_config_flag_wins_over_the_environment() {
    let t = tempdir();
    let a = t.path().join("a");
    let b = t.path().join("b");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let cfg_a = config(&a, "");
    let cfg_b = config(&b, "");
    let payload = br#"{"hook_event_name":"PreToolUse","session_id":"s","tool_name":"Bash","tool_input":{"command":"ls"}}"#;
    let mut c = cmd(t.path());
    c.env("AUDITSHIP_CONFIG", &cfg_a)
        .arg("record")
        .arg("--config")
        .arg(&cfg_b);
    assert_eq!(run_with_stdin(c, payload).status.code(), Some(0));
    assert!(!a.join("audit").exists(), "AUDITSHIP_CONFIG was not used");
    assert_eq!(read_stream(&b.join("audit")).len(), 1);

    // The managed hook command, run as Claude Code runs it (through a shell, with
    // the user's environment), records where its --config says.
    let out = cmd(t.path())
        .args([
            "install-hooks",
            "--scope",
            "managed",
            "--dry-run",
            "--claude-version",
            "2.1.197",
        ])
        .arg("--path")
        .arg(t.path().join("managed-settings.json"))
        .arg("--config")
        .arg(&cfg_b)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let settings: Value = serde_json::from_str(&text[..text.rfind("}\n").unwrap() + 1]).unwrap();
    let command = settings["hooks"]["PreToolUse"][0]["hooks"][0]["command"]
        .as_str()
        .unwrap()
        .to_string();
    let mut c = Command::new("sh");
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", t.path())
        .env("AUDITSHIP_CONFIG", &cfg_a)
        .arg("-c")
        .arg(&command);
    assert_eq!(
        run_with_stdin(c, payload).status.code(),
        Some(0),
        "{command}"
    );
    assert!(!a.join("audit").exists());
    assert_eq!(read_stream(&b.join("audit")).len(), 2);
}

#[test]
fn managed_hooks_name_their_configuration() {
    let t = tempdir();
    let install = |extra: &[&str]| -> Value {
        let path = t.path().join("settings.json");
        let out = cmd(t.path())
            .args([
                "install-hooks",
                "--dry-run",
                "--claude-version",
                "2.1.197",
                "--path",
            ])
            .arg(&path)
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        serde_json::from_str(&text[..text.rfind("}\n").unwrap() + 1]).unwrap()
    };
    let entry = |s: &Value, event: &str| s["hooks"][event][0]["hooks"][0].clone();

    let managed = install(&[
        "--scope",
        "managed",
        "--command",
        "/usr/bin/auditship record",
    ]);
    for event in [
        "PreToolUse",
        "PermissionRequest",
        "UserPromptSubmit",
        "SessionEnd",
    ] {
        let e = entry(&managed, event);
        assert_eq!(
            e["command"], "/usr/bin/auditship record --config /etc/auditship/auditship.toml",
            "{event}"
        );
        assert_eq!(e["timeout"], 5);
        assert_eq!(e["type"], "command");
    }
    let named = install(&["--scope", "managed", "--config", "/opt/audit cfg/a.toml"]);
    let command = entry(&named, "PreToolUse")["command"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        command.ends_with(" record --config '/opt/audit cfg/a.toml'"),
        "{command}"
    );
    let already = install(&[
        "--scope",
        "managed",
        "--command",
        "/usr/bin/auditship record --config /srv/x.toml",
    ]);
    assert_eq!(
        entry(&already, "Stop")["command"],
        "/usr/bin/auditship record --config /srv/x.toml"
    );
    let user = install(&["--command", "/usr/bin/auditship record"]);
    assert_eq!(
        entry(&user, "PreToolUse")["command"],
        "/usr/bin/auditship record"
    );

    // A lock timeout the hook timeout does not leave room for is pointed out.
    let slow = config(t.path(), "lock_timeout_ms = 10000\n");
    let out = cmd(t.path())
        .args([
            "install-hooks",
            "--dry-run",
            "--claude-version",
            "2.1.197",
            "--scope",
            "managed",
        ])
        .arg("--path")
        .arg(t.path().join("settings.json"))
        .arg("--config")
        .arg(&slow)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "warning: record.lock_timeout_ms (10000 ms) is not below the hook timeout (5 s)"
        ),
        "{text}"
    );
}

#[test]
fn check_config_refuses_a_lock_timeout_not_below_the_hook_timeout() {
    let t = tempdir();
    let check = |cfg: &Path| {
        let out = cmd(t.path())
            .arg("check-config")
            .arg("--config")
            .arg(cfg)
            .output()
            .unwrap();
        (
            out.status.code(),
            stderr(&out),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, err, out) = check(&config(t.path(), ""));
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("lock_timeout_ms = 3000"),
        "the default is below 5 s: {out}"
    );

    for ms in [5000, 10_000] {
        let (code, err, _) = check(&config(t.path(), &format!("lock_timeout_ms = {ms}\n")));
        assert_eq!(code, Some(1), "{ms}");
        assert!(
            err.contains("record.lock_timeout_ms") && err.contains("5 s"),
            "{err}"
        );
    }
    assert_eq!(
        check(&config(t.path(), "lock_timeout_ms = 4000\n")).0,
        Some(0)
    );

    // An installed hook with a shorter timeout is what counts.
    let settings = t.path().join(".claude/settings.json");
    std::fs::create_dir_all(settings.parent().unwrap()).unwrap();
    let hooks = json!({"hooks": {"PreToolUse": [{"matcher": "*", "hooks": [
        {"type": "command", "command": format!("{} record", bin().display()), "timeout": 2}
    ]}]}});
    std::fs::write(&settings, hooks.to_string()).unwrap();
    let (code, err, _) = check(&config(t.path(), ""));
    assert_eq!(code, Some(1));
    assert!(err.contains(&settings.display().to_string()), "{err}");
    assert_eq!(
        check(&config(t.path(), "lock_timeout_ms = 1500\n")).0,
        Some(0)
    );
}

/// `record` in a child whose file size limit is `limit` bytes, SIGXFSZ ignored, so
/// a write across the limit comes back short and then fails with EFBIG.
fn record_with_size_limit(home: &Path, cfg: &Path, payload: &[u8], limit: u64) -> Output {
    let mut c = cmd(home);
    c.arg("record").arg("--config").arg(cfg);
    // SAFETY: between fork and exec we only call async-signal-safe functions
    // (signal, setrlimit) on values owned by this closure.
    unsafe {
        c.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let lim = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    run_with_stdin(c, payload)
}

#[test]
fn a_short_write_is_cut_back_and_never_leaves_a_torn_line() {
    let t = tempdir();
    let payload = |i: usize| {
        json!({"hook_event_name": "PreToolUse", "session_id": "s", "tool_name": "Bash",
               "tool_input": {"command": format!("make step-{i}")}, "padding": "p".repeat(400)})
        .to_string()
    };
    let allow = config(t.path(), "");
    for i in 0..10 {
        assert_eq!(
            record_raw(t.path(), Some(&allow), payload(i).as_bytes())
                .status
                .code(),
            Some(0)
        );
    }
    let dir = t.path().join("audit");
    let file = stream_file(&dir);
    let before = std::fs::read(&file).unwrap();
    assert!(before.len() > 5000);

    // Room for 100 more bytes: the event's line (~1 KB) is cut short by the limit.
    let limit = before.len() as u64 + 100;
    let out = record_with_size_limit(t.path(), &allow, payload(10).as_bytes(), limit);
    assert_eq!(
        out.status.code(),
        Some(0),
        "allow never blocks: {}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("auditship record:"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        before,
        "the partial line was cut back"
    );

    let block = config(t.path(), "on_error = \"block\"\n");
    let out = record_with_size_limit(t.path(), &block, payload(11).as_bytes(), limit);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(std::fs::read(&file).unwrap(), before);

    // Both failures are in the fallback file, as events.
    let lines = fallback_lines(&t.path().join("fallback.jsonl"));
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0]["error"].as_str().unwrap().contains("large"),
        "{}",
        lines[0]
    );
    assert_eq!(lines[1]["event"]["metadata"]["source_event"], "PreToolUse");

    // The next event continues the chain as if nothing happened.
    assert_eq!(
        record_raw(t.path(), Some(&allow), payload(12).as_bytes())
            .status
            .code(),
        Some(0)
    );
    let events = read_stream(&dir);
    assert_eq!(events.len(), 11);
    assert_eq!(events[10]["seq"], 10);
    verifies_clean(&dir, 11);
}

#[test]
fn the_fallback_holds_the_event_is_bounded_and_is_shipped_by_the_default_daemon() {
    let t = tempdir();
    // The embedded defaults, except for a metrics port of this test's own.
    let cfg = write_config(t.path(), "[metrics]\nlisten = \"127.0.0.1:0\"\n");
    // ~/.claude/audit cannot be created: a file stands in its way.
    std::fs::create_dir_all(t.path().join(".claude")).unwrap();
    std::fs::write(t.path().join(".claude/audit"), "").unwrap();
    let fallback = t.path().join(".claude/audit-errors/record-errors.jsonl");
    let secret = "AKIAIOSFODNN7EXAMPLE";
    let prompt = json!({"hook_event_name": "UserPromptSubmit", "session_id": "s-fb",
        "prompt": "SENTINEL-FALLBACK-PROMPT please", "cwd": format!("/tmp/{secret}")});
    let out = record_raw(t.path(), Some(&cfg), prompt.to_string().as_bytes());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = std::fs::read_to_string(&fallback).unwrap();
    assert!(!text.contains("SENTINEL-FALLBACK-PROMPT"), "{text}");
    assert!(!text.contains(secret), "{text}");
    let line: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(line["kind"], "record_failure");
    assert_eq!(line["event"]["action"], "user_prompt");
    assert_eq!(line["event"]["session_id"], "s-fb");
    assert_eq!(
        line["event"]["metadata"]["input_sha256"],
        sha256_hex(b"SENTINEL-FALLBACK-PROMPT please")
    );
    assert!(line["event"]["metadata"]["redacted"].is_array(), "{line}");

    // The daemon with the embedded default ships it.
    let mut c = cmd(t.path());
    c.env("XDG_STATE_HOME", t.path().join("xdg"))
        .env("RUST_LOG", "warn")
        .arg("run")
        .arg("--config")
        .arg(&cfg);
    let d = Daemon::spawn(c);
    let shipped = t.path().join("xdg/auditship/shipped.jsonl");
    let start = Instant::now();
    let record = loop {
        let found = written_records(&shipped)
            .into_iter()
            .find(|r| r["kind"] == "record_failure");
        if let Some(r) = found {
            break r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the fallback was not shipped: {}",
            d.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let (code, _) = d.stop(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    assert_eq!(record["event"]["session_id"], "s-fb");
    assert_eq!(record["_auditship"]["source"], "record-errors", "{record}");

    // Bounded: big events (kept tool responses) fill it to 1 MiB, later failures are
    // counted.
    let keeping = write_config(
        t.path(),
        "[metrics]\nlisten = \"127.0.0.1:0\"\n[record]\nkeep_tool_response = true\nmax_kept_bytes = 60000\n",
    );
    let big = json!({"hook_event_name": "PostToolUse", "session_id": "s-fb",
        "tool_name": "Bash", "tool_response": "d".repeat(60_000)})
    .to_string();
    for _ in 0..24 {
        let out = record_raw(t.path(), Some(&keeping), big.as_bytes());
        assert_eq!(out.status.code(), Some(0));
    }
    let len = std::fs::metadata(&fallback).unwrap().len();
    assert!(len <= (1 << 20) + 4096, "{len}");
    let counted: u64 =
        std::fs::read_to_string(fallback.with_file_name("record-errors.jsonl.dropped"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
    let lines = fallback_lines(&fallback);
    let kept = lines
        .iter()
        .filter(|l| l["kind"] == "record_failure")
        .count() as u64;
    assert_eq!(kept + counted, 25, "every failure is kept or counted");
    assert!(counted >= 5, "{counted}");
    let notes: Vec<u64> = lines
        .iter()
        .filter(|l| l["kind"] == "fallback_full")
        .map(|l| l["dropped"].as_u64().unwrap())
        .collect();
    assert_eq!(notes[..3], [1, 2, 4], "{notes:?}");
}

#[test]
fn a_configuration_that_does_not_load_still_reports_to_its_own_fallback_file() {
    let t = tempdir();
    // Loading fails on the unset variable; the file still names its fallback.
    let cfg = config(
        t.path(),
        "hmac_kid = \"k1\"\nhmac_key_env = \"AUDITSHIP_TEST_UNSET_KEY_VAR\"\n",
    );
    let payload = br#"{"hook_event_name":"PreToolUse","session_id":"s-cfg","tool_name":"Bash","tool_input":{"command":"ls"}}"#;
    let out = record_raw(t.path(), Some(&cfg), payload);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines = fallback_lines(&t.path().join("fallback.jsonl"));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["kind"], "record_failure");
    assert_eq!(lines[0]["event"]["session_id"], "s-cfg");
    assert!(
        !t.path()
            .join(".claude/audit-errors/record-errors.jsonl")
            .exists(),
        "the default fallback was used instead of the configured one"
    );
}
