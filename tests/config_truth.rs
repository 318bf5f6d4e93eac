//! What `check-config` and the configuration tell the operator is true: every
//! section that takes effect is shown, a misspelt identity key is an error, the hash
//! does not change when defaults are written out, a record directory nobody ships is
//! warned about, the per-user file is found, and messages read as sentences.

use crate::util::*;
use serde_json::json;
use std::path::Path;
use std::process::{Command, Output};

fn check_config(c: Command, cfg: &Path) -> Output {
    let mut c = c;
    c.args(["check-config", "--config"])
        .arg(cfg)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn hash_of(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("# config hash: "))
        .unwrap_or_else(|| panic!("no hash line in:\n{out}"))
        .to_string()
}

/// The text of one `[table]` of check-config's output, up to the next header.
fn table<'a>(out: &'a str, header: &str) -> &'a str {
    let start = out
        .find(&format!("\n{header}\n"))
        .unwrap_or_else(|| panic!("no {header} in:\n{out}"));
    let rest = &out[start + header.len() + 2..];
    let end = rest.find("\n[").map_or(rest.len(), |e| e + 1);
    &rest[..end]
}

#[test]
fn check_config_shows_redact_and_compliance() {
    let t = tempdir();
    let cfg = write_config(
        t.path(),
        "[redact]\npatterns = [{ name = \"ticket\", regex = \"TKT-[0-9a-f]{32}\" }]\n\n[compliance]\nalways = [\"SOC2\"]\n\n[[compliance.rule]]\nresource = [\"/srv/payroll/**\"]\ntags = [\"SOX\"]\n",
    );
    let out = check_config(cmd(t.path()), &cfg);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let redact = table(&text, "[redact]");
    assert!(redact.contains("\"aws_access_key_id\""), "{redact}");
    let patterns = table(&text, "[[redact.patterns]]");
    assert!(patterns.contains("name = \"ticket\""), "{patterns}");
    assert!(
        patterns.contains("regex = \"TKT-[0-9a-f]{32}\""),
        "{patterns}"
    );
    let compliance = table(&text, "[compliance]");
    assert!(compliance.contains("always = [\"SOC2\"]"), "{compliance}");
    assert!(compliance.contains("builtin = true"), "{compliance}");
    assert!(compliance.contains("HIPAA"), "{compliance}");
    let rule = table(&text, "[[compliance.rule]]");
    assert!(rule.contains("resource = [\"/srv/payroll/**\"]"), "{rule}");
    assert!(rule.contains("tags = [\"SOX\"]"), "{rule}");

    // Without the built-ins: said so, and none listed.
    let cfg = write_config(t.path(), "[compliance]\nbuiltin = false\n");
    let text = stdout(&check_config(cmd(t.path()), &cfg));
    let compliance = table(&text, "[compliance]");
    assert!(compliance.contains("builtin = false"), "{compliance}");
    assert!(compliance.contains("builtin_rules = []"), "{compliance}");
    assert!(
        compliance.contains("always = [\"SOC2\", \"ISO27001\"]"),
        "{compliance}"
    );
}

#[test]
fn an_unknown_identity_key_is_an_error_with_its_place() {
    let t = tempdir();
    let cfg = write_config(
        t.path(),
        "[record]\nkeep_prompts = false\n\n[record.identity]\nemail = \"ann@example.com\"\n  departmnet = \"platform\"\n",
    );
    let out = check_config(cmd(t.path()), &cfg);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "{}: line 6, column 3: record.identity.departmnet: unknown field `departmnet`",
            cfg.display()
        )),
        "{err}"
    );
    // `record` refuses it too: nothing is sealed with the typo.
    let out = run_with_stdin(
        {
            let mut c = cmd(t.path());
            c.args(["record", "--config"]).arg(&cfg);
            c
        },
        json!({"session_id": "s", "hook_event_name": "SessionStart", "cwd": "/tmp"})
            .to_string()
            .as_bytes(),
    );
    assert!(stderr(&out).contains("departmnet"), "{}", stderr(&out));
    assert!(!t.path().join(".claude/audit").exists());

    // A wrong type is placed the same way.
    let cfg = write_config(t.path(), "[record.identity]\nmfa_verified = \"yes\"\n");
    let err = stderr(&check_config(cmd(t.path()), &cfg));
    assert!(
        err.contains("line 2, column 16: record.identity.mfa_verified: invalid type"),
        "{err}"
    );
    // An extra field may not shadow a known one.
    let cfg = write_config(
        t.path(),
        "[record.identity]\nemail = \"a@example.com\"\n[record.identity.extra]\nemail = \"b@example.com\"\n",
    );
    let err = stderr(&check_config(cmd(t.path()), &cfg));
    assert!(
        err.contains("line 4, column 1: record.identity.extra.email:"),
        "{err}"
    );
}

#[test]
fn known_and_extra_identity_fields_reach_the_event() {
    let t = tempdir();
    let dir = t.path().join("audit");
    let cfg = write_config(
        t.path(),
        &format!(
            "[record]\ndir = \"{}\"\n[record.identity]\nemail = \"ann@example.com\"\nroles = [\"developer\"]\nmfa_verified = true\n[record.identity.extra]\ncost_center = \"cc-42\"\nbadge = 7\n",
            dir.display()
        ),
    );
    let mut c = cmd(t.path());
    c.args(["record", "--config"]).arg(&cfg);
    let out = run_with_stdin(
        c,
        json!({"session_id": "s", "hook_event_name": "SessionStart", "cwd": "/tmp"})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let events = read_stream(&dir);
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0]["identity"],
        json!({"email": "ann@example.com", "roles": ["developer"], "mfa_verified": true, "cost_center": "cc-42", "badge": 7})
    );
}

/// Every default of the sections a fleet file usually leaves out, written out as
/// config.example.toml documents them (durations spelt differently on purpose).
const DEFAULTS: &str = r#"
[record]
dir = "~/.claude/audit"
on_error = "allow"
fallback_file = "~/.claude/audit-errors/record-errors.jsonl"
keep_prompts = false
keep_tool_input = false
keep_tool_response = false
keep_messages = false
max_kept_bytes = 4096
fsync = true
lock_timeout_ms = 3000

[record.identity]

[redact]
patterns = []

[compliance]
builtin = true
always = ["SOC2", "ISO27001"]

[agent]
state_dir = "~/.local/state/auditship"
rescan_interval = "10s"
shutdown_timeout = "10000ms"
log_format = "plain"
heartbeat_interval = "5m"

[agent.fields]

[queue]
max_bytes = 16777216
cache_capacity = 8388608

[archive]
after_days = 30
level = 6
interval = "1h"
dir = "~/.local/state/auditship/archive"

[metrics]
enabled = true
listen = "127.0.0.1:9877"
unhealthy_after = "5m"
"#;

const SINK: &str =
    "[[sink]]\nname = \"siem\"\ntype = \"http\"\nendpoint = \"https://siem.example.com/ingest\"\n";

const SINK_DEFAULTS: &str = "[[sink]]\nname = \"siem\"\ntype = \"http\"\nendpoint = \"https://siem.example.com/ingest\"\nformat = \"ndjson\"\ncompression = \"none\"\nconnect_timeout = \"10s\"\nrequest_timeout = \"30s\"\nbatch = { max_events = 1000, max_bytes = 1048576, max_wait = \"1s\" }\nretry = { initial = \"500ms\", max_delay = \"1m\" }\n";

#[test]
fn writing_the_defaults_out_does_not_change_the_hash() {
    let t = tempdir();
    let minimal = t.path().join("minimal.toml");
    let full = t.path().join("full.toml");
    std::fs::write(&minimal, SINK).unwrap();
    std::fs::write(&full, format!("{DEFAULTS}\n{SINK_DEFAULTS}")).unwrap();
    let a = check_config(cmd(t.path()), &minimal);
    let b = check_config(cmd(t.path()), &full);
    assert_eq!(a.status.code(), Some(0), "{}", stderr(&a));
    assert_eq!(b.status.code(), Some(0), "{}", stderr(&b));
    assert_eq!(hash_of(&stdout(&a)), hash_of(&stdout(&b)));
    // The same for another user, in another home.
    let u = tempdir();
    let c = check_config(cmd(u.path()), &full);
    assert_eq!(hash_of(&stdout(&c)), hash_of(&stdout(&a)));
    // An empty file is the built-in defaults.
    let empty = t.path().join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    let defaults_only = t.path().join("defaults.toml");
    std::fs::write(&defaults_only, DEFAULTS).unwrap();
    assert_eq!(
        hash_of(&stdout(&check_config(cmd(t.path()), &empty))),
        hash_of(&stdout(&check_config(cmd(t.path()), &defaults_only)))
    );
    // A value that differs from its default does change it.
    std::fs::write(
        &full,
        format!("{DEFAULTS}\n{SINK_DEFAULTS}").replace("level = 6", "level = 7"),
    )
    .unwrap();
    let d = check_config(cmd(t.path()), &full);
    assert_ne!(hash_of(&stdout(&d)), hash_of(&stdout(&a)));
}

#[test]
fn a_record_dir_no_source_covers_is_warned_about() {
    let t = tempdir();
    let elsewhere = t.path().join("elsewhere");
    let cfg = write_config(
        t.path(),
        &format!("[record]\ndir = \"{}\"\n", elsewhere.display()),
    );
    let out = check_config(cmd(t.path()), &cfg);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let want = format!(
        "warning: record.dir: {} is covered by no [[source]]",
        elsewhere.display()
    );
    assert!(stderr(&out).contains(&want), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("# {want}")),
        "{}",
        stdout(&out)
    );

    // The daemon says it too when it starts.
    let state = t.path().join("state");
    let cfg = write_config(
        t.path(),
        &format!(
            "[record]\ndir = \"{}\"\n[agent]\nstate_dir = \"{}\"\nheartbeat_interval = \"0s\"\n[metrics]\nenabled = false\n",
            elsewhere.display(),
            state.display()
        ),
    );
    let mut c = cmd(t.path());
    c.args(["run", "--config"]).arg(&cfg);
    let daemon = Daemon::spawn(c);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !daemon.stderr().contains("covered by no [[source]]")
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let log = daemon.stderr();
    daemon.kill();
    assert!(log.contains(&want.replace("warning: ", "")), "{log}");

    // Covered by a glob over every home, as a fleet writes it: no warning.
    let cfg = write_config(
        t.path(),
        "[[source]]\nname = \"fleet\"\npaths = [\"/home/*/.claude/audit\"]\n",
    );
    let out = check_config(cmd(t.path()), &cfg);
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    // A glob over the right directories but not the files record writes: warned.
    let cfg = write_config(
        t.path(),
        "[[source]]\nname = \"fleet\"\npaths = [\"/home/*/.claude/audit\"]\nfiles = \"*.json\"\n",
    );
    let out = check_config(cmd(t.path()), &cfg);
    assert!(
        stderr(&out).contains("covered by no [[source]]"),
        "{}",
        stderr(&out)
    );
}

/// A command as a user runs it: no `AUDITSHIP_CONFIG`, the home directory `home`.
fn as_user(home: &Path) -> Command {
    let mut c = cmd(home);
    c.env_remove("AUDITSHIP_CONFIG");
    c
}

#[test]
fn the_per_user_file_is_found_by_every_command() {
    let t = tempdir();
    let file = t.path().join(".config/auditship/auditship.toml");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let dir = t.path().join("my-audit");
    std::fs::write(
        &file,
        format!(
            "[record]\ndir = \"{}\"\n[[source]]\nname = \"mine\"\npaths = [\"{}\"]\n",
            dir.display(),
            dir.display()
        ),
    )
    .unwrap();
    // check-config, without --config.
    let out = as_user(t.path()).arg("check-config").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("# configuration: {}\n", file.display())),
        "{}",
        stdout(&out)
    );
    // record writes where that file says.
    let mut c = as_user(t.path());
    c.arg("record");
    let out = run_with_stdin(
        c,
        json!({"session_id": "s", "hook_event_name": "SessionStart", "cwd": "/tmp"})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(read_stream(&dir).len(), 1);

    // $XDG_CONFIG_HOME moves it, as it moves the user unit's %E.
    let xdg = t.path().join("xdg");
    std::fs::create_dir_all(xdg.join("auditship")).unwrap();
    std::fs::write(
        xdg.join("auditship/auditship.toml"),
        "[record]\nkeep_prompts = true\n",
    )
    .unwrap();
    let out = as_user(t.path())
        .env("XDG_CONFIG_HOME", &xdg)
        .arg("check-config")
        .output()
        .unwrap();
    assert!(
        stdout(&out).contains(&format!(
            "# configuration: {}\n",
            xdg.join("auditship/auditship.toml").display()
        )),
        "{}",
        stdout(&out)
    );
    // $AUDITSHIP_CONFIG still comes first.
    let other = write_config(t.path(), "");
    let out = as_user(t.path())
        .env("AUDITSHIP_CONFIG", &other)
        .arg("check-config")
        .output()
        .unwrap();
    assert!(
        stdout(&out).contains(&format!("# configuration: {}\n", other.display())),
        "{}",
        stdout(&out)
    );
}

#[test]
fn the_user_unit_reads_the_file_the_commands_find() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/auditship-user.service"),
    )
    .unwrap();
    // %E is $XDG_CONFIG_HOME, else ~/.config: the same as the commands' lookup.
    assert!(unit.contains("%E/auditship/auditship.toml"), "{unit}");
}

#[test]
fn completions_leave_out_the_hidden_man_command() {
    let t = tempdir();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = cmd(t.path()).args(["completions", shell]).output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        let script = stdout(&out);
        assert!(script.contains("check-config"), "{shell}: {script}");
        let words: Vec<&str> = script
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .collect();
        assert!(!words.contains(&"man"), "{shell} offers `man`:\n{script}");
    }
}

#[test]
fn errors_of_broken_configs_show_no_debug_formatting() {
    let t = tempdir();
    let cases = [
        "[record]\nhmac_kid = \"k\"\nhmac_key_file = \"/nonexistent/key\"\n",
        "[[source]]\nname = \"a\"\npaths = [\"/x\"]\nhmac_keys = { k = \"/nonexistent\" }\n",
        "[[sink]]\nname = \"a\"\ntype = \"file\"\n",
        "[[sink]]\nname = \"a\"\ntype = \"http\"\nendpoint = \"https://x\"\ntoken_file = \"/nonexistent/token\"\n",
        "[record]\non_error = 3\n",
        "[archive]\nlevel = 12\n",
        "[record.identity]\nroles = \"admin\"\n",
        "not toml at all [\n",
    ];
    for text in cases {
        let cfg = write_config(t.path(), text);
        let out = check_config(cmd(t.path()), &cfg);
        assert_eq!(out.status.code(), Some(1), "{text}");
        let err = stderr(&out);
        for debug in ["Some(", "None", " { ", "Os {", "kind:", "code:"] {
            assert!(
                !err.contains(debug),
                "{debug:?} in the message for {text:?}:\n{err}"
            );
        }
    }
}

#[test]
fn counts_agree_in_number() {
    let t = tempdir();
    let cfg = write_config(t.path(), "[record]\non_error = \"maybe\"\n");
    let err = stderr(&check_config(cmd(t.path()), &cfg));
    assert!(err.contains("check-config: 1 error:\n"), "{err}");
    let cfg = write_config(
        t.path(),
        "[record]\non_error = \"maybe\"\nmax_kept_bytes = 0\n",
    );
    let err = stderr(&check_config(cmd(t.path()), &cfg));
    assert!(err.contains("check-config: 2 errors:\n"), "{err}");
    // One drop-in, then two.
    let cfg = write_config(t.path(), "");
    std::fs::create_dir_all(t.path().join("conf.d")).unwrap();
    std::fs::write(t.path().join("conf.d/10-a.toml"), "").unwrap();
    let out = stdout(&check_config(cmd(t.path()), &cfg));
    assert!(out.contains(" and 1 drop-in\n"), "{out}");
    std::fs::write(t.path().join("conf.d/20-b.toml"), "").unwrap();
    let out = stdout(&check_config(cmd(t.path()), &cfg));
    assert!(out.contains(" and 2 drop-ins\n"), "{out}");
    assert!(!out.contains("(s)"), "{out}");
}
