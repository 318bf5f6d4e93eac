//! `auditship install-hooks` through the real binary.

use crate::util::*;
use serde_json::Value;

fn install(home: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let mut c = cmd(home);
    c.args([
        "install-hooks",
        "--claude-version",
        "2.1.120",
        "--command",
        "/usr/bin/auditship record",
    ])
    .args(extra);
    c.output().unwrap()
}

#[test]
fn installs_every_event_idempotently_and_keeps_other_settings() {
    let t = tempdir();
    let settings = t.path().join(".claude/settings.json");
    std::fs::create_dir_all(settings.parent().unwrap()).unwrap();
    let before = r#"{"model":"opus","env":{"X":"1"},"hooks":{"PreToolUse":[{"matcher":"Bash","hooks":[{"type":"command","command":"/opt/guard.sh"}]}]},"futureKey":[1,2]}"#;
    std::fs::write(&settings, before).unwrap();

    let out = install(t.path(), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after: Value = serde_json::from_str(&std::fs::read_to_string(&settings).unwrap()).unwrap();
    assert_eq!(after["model"], "opus");
    assert_eq!(after["futureKey"], serde_json::json!([1, 2]));
    let hooks = after["hooks"].as_object().unwrap();
    for event in [
        "PreToolUse",
        "PostToolUse",
        "PostToolUseFailure",
        "UserPromptSubmit",
        "SessionStart",
        "SessionEnd",
        "PermissionRequest",
        "PermissionDenied",
        "Stop",
        "Notification",
        "ConfigChange",
        "Setup",
    ] {
        let commands: Vec<&str> = hooks[event]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["hooks"].as_array().unwrap())
            .map(|h| h["command"].as_str().unwrap())
            .collect();
        assert_eq!(
            commands
                .iter()
                .filter(|c| **c == "/usr/bin/auditship record")
                .count(),
            1,
            "{event}: {commands:?}"
        );
    }
    assert!(
        hooks["PreToolUse"].to_string().contains("/opt/guard.sh"),
        "other hooks are kept"
    );
    let backups: Vec<_> = std::fs::read_dir(settings.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("auditship-backup"))
        .collect();
    assert_eq!(backups.len(), 1);
    assert_eq!(std::fs::read_to_string(&backups[0]).unwrap(), before);

    // Second run: nothing changes, no new backup.
    let text = std::fs::read_to_string(&settings).unwrap();
    let out = install(t.path(), &[]);
    assert!(out.status.success());
    assert_eq!(std::fs::read_to_string(&settings).unwrap(), text);
    let n = std::fs::read_dir(settings.parent().unwrap())
        .unwrap()
        .count();
    assert_eq!(n, 2, "settings and one backup");
}

#[test]
fn dry_run_writes_nothing_and_bad_json_is_refused() {
    let t = tempdir();
    let out = install(t.path(), &["--dry-run"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("/usr/bin/auditship record"));
    assert!(!t.path().join(".claude/settings.json").exists());

    let settings = t.path().join(".claude/settings.json");
    std::fs::create_dir_all(settings.parent().unwrap()).unwrap();
    std::fs::write(&settings, "{ not json").unwrap();
    let out = install(t.path(), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(std::fs::read_to_string(&settings).unwrap(), "{ not json");
}

#[test]
fn an_older_claude_code_gets_only_events_it_knows() {
    let t = tempdir();
    let path = t.path().join("managed.json");
    let mut c = cmd(t.path());
    c.args(["install-hooks", "--scope", "managed", "--path"])
        .arg(&path)
        .args([
            "--claude-version",
            "1.0.90",
            "--command",
            "/usr/bin/auditship record",
        ]);
    assert!(c.output().unwrap().status.success());
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let hooks = v["hooks"].as_object().unwrap();
    assert!(hooks.contains_key("SessionEnd") && hooks.contains_key("PreToolUse"));
    assert!(!hooks.contains_key("ConfigChange") && !hooks.contains_key("PermissionDenied"));
}
