//! What the package installs as /etc/auditship/auditship.toml: valid, aimed at every
//! user's audit directory for the service, and harmless to `record`, which every
//! user's hooks run with the same file.

use crate::util::*;
use std::path::Path;

fn packaged_config() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/auditship.toml")
}

#[test]
fn the_packaged_config_is_valid_and_system_wide() {
    let t = tempdir();
    let out = cmd(t.path())
        .args(["check-config", "--config"])
        .arg(packaged_config())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "state_dir = \"/var/lib/auditship\"",
        "\"/home/*/.claude/audit\"",
        "path = \"/var/lib/auditship/shipped.jsonl\"",
        // `record` keeps the per-user default, whoever runs it.
        &format!("dir = \"{}/.claude/audit\"", t.path().display()),
    ] {
        assert!(text.contains(expected), "{expected} missing:\n{text}");
    }
}

#[test]
fn record_with_the_packaged_config_writes_to_the_users_home() {
    let t = tempdir();
    let mut c = cmd(t.path());
    c.env("AUDITSHIP_CONFIG", packaged_config()).arg("record");
    let out = run_with_stdin(
        c,
        br#"{"hook_event_name":"PreToolUse","session_id":"s1","tool_name":"Bash","tool_input":{"command":"ls"}}"#,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = read_stream(&t.path().join(".claude/audit"));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["session_id"], "s1");
}
