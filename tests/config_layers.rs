//! The configuration as a fleet writes it: a main file, drop-ins in conf.d next to it,
//! `${VAR}` references, errors placed at file, line and column, and the hash.

use crate::util::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Writes `auditship.toml` and `conf.d/<name>` files into `dir`; returns the main path.
fn layout(dir: &Path, main: &str, drop_ins: &[(&str, &str)]) -> PathBuf {
    let cfg = write_config(dir, main);
    std::fs::create_dir_all(dir.join("conf.d")).unwrap();
    for (name, text) in drop_ins {
        std::fs::write(dir.join("conf.d").join(name), text).unwrap();
    }
    cfg
}

/// `check-config --config cfg`: (exit code, stdout, stderr).
fn check(mut c: Command, cfg: &Path) -> (Option<i32>, String, String) {
    let out = c
        .args(["check-config", "--config"])
        .arg(cfg)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn valid(c: Command, cfg: &Path) -> String {
    let (code, out, err) = check(c, cfg);
    assert_eq!(code, Some(0), "{err}");
    out
}

fn invalid(c: Command, cfg: &Path) -> String {
    let (code, out, err) = check(c, cfg);
    assert_eq!(code, Some(1), "{out}");
    err
}

fn hash_of(out: &str) -> String {
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("# config hash: "))
        .unwrap_or_else(|| panic!("no hash line in:\n{out}"));
    assert_eq!(line.len(), 64, "{line}");
    assert!(line.bytes().all(|b| b.is_ascii_hexdigit()), "{line}");
    line.to_string()
}

/// The rendered `[[sink]]` tables, by name, as (name, the table's text).
fn sinks(out: &str) -> Vec<(String, String)> {
    out.split("[[sink]]")
        .skip(1)
        .map(|t| {
            let t = t.split("[[source]]").next().unwrap().to_string();
            let name = t
                .lines()
                .find_map(|l| l.strip_prefix("name = \""))
                .unwrap()
                .trim_end_matches('"')
                .to_string();
            (name, t)
        })
        .collect()
}

const FLEET: &str = r#"[agent]
host = "fleet-default"

[agent.fields]
fleet = "engineering"

[[sink]]
name = "siem"
type = "http"
endpoint = "https://siem.example.com/ingest"
compression = "gzip"

[[sink]]
name = "local"
type = "file"
path = "/var/tmp/auditship-shipped.jsonl"
"#;

#[test]
fn drop_ins_override_by_name_add_entries_and_apply_in_name_order() {
    let t = tempdir();
    let cfg = layout(
        t.path(),
        FLEET,
        &[
            (
                "20-site.toml",
                "[agent]\nhost = \"devbox-20\"\n[agent.fields]\nsite = \"london\"\n",
            ),
            (
                "10-siem.toml",
                "agent.host = \"devbox-10\"\n\n[[sink]]\nname = \"siem\"\nendpoint = \"https://siem-eu.example.com/ingest\"\n\n[[sink]]\nname = \"extra\"\ntype = \"file\"\npath = \"/var/tmp/extra.jsonl\"\n",
            ),
            // Not drop-ins: another suffix, a hidden file, a directory.
            ("30-off.toml.disabled", "this is [not toml"),
            (".40-hidden.toml", "this is [not toml"),
        ],
    );
    std::fs::create_dir(t.path().join("conf.d/50-dir.toml")).unwrap();
    let out = valid(cmd(t.path()), &cfg);

    // 20 applies after 10: its host wins; tables merge key by key.
    assert!(out.contains("host = \"devbox-20\""), "{out}");
    assert!(
        out.contains("fleet = \"engineering\"\nsite = \"london\""),
        "{out}"
    );
    let sinks = sinks(&out);
    let names: Vec<&str> = sinks.iter().map(|(n, _)| n.as_str()).collect();
    // Existing entries keep their place; a new name is appended.
    assert_eq!(names, ["siem", "local", "extra"], "{out}");
    let siem = &sinks[0].1;
    // The drop-in's endpoint, the main file's other keys.
    assert!(
        siem.contains("endpoint = \"https://siem-eu.example.com/ingest\""),
        "{siem}"
    );
    assert!(siem.contains("compression = \"gzip\""), "{siem}");
    assert!(!out.contains("https://siem.example.com/ingest"), "{out}");
    assert!(
        sinks[2].1.contains("path = \"/var/tmp/extra.jsonl\""),
        "{out}"
    );

    let files: Vec<&str> = out
        .lines()
        .skip_while(|l| *l != "# files read, in order:")
        .skip(1)
        .collect();
    let d = t.path().display();
    assert_eq!(
        files,
        [
            format!("#   {d}/auditship.toml"),
            format!("#   {d}/conf.d/10-siem.toml"),
            format!("#   {d}/conf.d/20-site.toml"),
        ],
        "{out}"
    );
    assert!(
        out.starts_with(&format!(
            "# configuration: {d}/auditship.toml and 2 drop-ins\n"
        )),
        "{out}"
    );
}

#[test]
fn enabled_false_in_a_drop_in_removes_an_entry() {
    let t = tempdir();
    let cfg = layout(
        t.path(),
        FLEET,
        &[(
            "10-off.toml",
            "[[sink]]\nname = \"siem\"\nenabled = false\n",
        )],
    );
    let out = valid(cmd(t.path()), &cfg);
    let names: Vec<String> = sinks(&out).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["local"], "{out}");
    // The entry's own `enabled = false` is gone (the receiver, off, says so itself).
    let off_receiver = "[telemetry]\nenabled = false\n";
    assert!(
        !out.replace(off_receiver, "").contains("enabled = false"),
        "{out}"
    );

    // `enabled` means something only in an entry with a name.
    std::fs::write(
        t.path().join("conf.d/10-off.toml"),
        "[agent]\nenabled = false\n",
    )
    .unwrap();
    let err = invalid(cmd(t.path()), &cfg);
    assert!(
        err.contains(&format!(
            "{}/conf.d/10-off.toml: line 2, column 1: agent.enabled: unknown field `enabled`",
            t.path().display()
        )),
        "{err}"
    );
}

#[test]
fn variables_expand_with_defaults_and_an_escape() {
    let t = tempdir();
    let cfg = layout(
        t.path(),
        FLEET,
        &[(
            "10-env.toml",
            r#"[agent]
host = "${AUDITSHIP_TEST_HOST}"
[agent.fields]
region = "${AUDITSHIP_TEST_REGION:-eu-west-1}"
empty = "${AUDITSHIP_TEST_EMPTY:-fallback}"
literal = "$${AUDITSHIP_TEST_HOST} costs $5"
[[sink]]
name = "siem"
endpoint = "https://${AUDITSHIP_TEST_SIEM}:8088/in"
"#,
        )],
    );
    let mut c = cmd(t.path());
    c.env("AUDITSHIP_TEST_HOST", "devbox-7")
        .env("AUDITSHIP_TEST_SIEM", "siem.internal")
        .env("AUDITSHIP_TEST_EMPTY", "");
    let out = valid(c, &cfg);
    // Values from the environment may be secrets: check-config shows them as
    // written. A literal `$${` is not a reference and is shown expanded.
    for want in [
        "host = \"${AUDITSHIP_TEST_HOST}\"",
        "region = \"${AUDITSHIP_TEST_REGION:-eu-west-1}\"",
        "empty = \"${AUDITSHIP_TEST_EMPTY:-fallback}\"",
        "literal = \"${AUDITSHIP_TEST_HOST} costs $5\"",
        "endpoint = \"https://${AUDITSHIP_TEST_SIEM}:8088/in\"",
    ] {
        assert!(out.contains(want), "{want} missing from:\n{out}");
    }
    for expanded in ["devbox-7", "siem.internal"] {
        assert!(!out.contains(expanded), "{expanded} printed:\n{out}");
    }
    // The expansion itself shows where the value is used: a plain http:// endpoint
    // names the host the variable gave it.
    std::fs::write(
        t.path().join("conf.d/20-plain.toml"),
        "[[sink]]\nname = \"siem\"\nendpoint = \"http://${AUDITSHIP_TEST_SIEM}:8088/in\"\n",
    )
    .unwrap();
    let mut c = cmd(t.path());
    c.env("AUDITSHIP_TEST_HOST", "devbox-7")
        .env("AUDITSHIP_TEST_SIEM", "siem.internal");
    let err = invalid(c, &cfg);
    assert!(err.contains("plain http:// to siem.internal"), "{err}");
}

#[test]
fn an_unset_variable_is_an_error_at_its_place() {
    let t = tempdir();
    let cfg = layout(
        t.path(),
        FLEET,
        &[(
            "10-siem.toml",
            "[[sink]]\nname = \"siem\"\nendpoint = \"https://${AUDITSHIP_TEST_UNSET}/in\"\n",
        )],
    );
    let err = invalid(cmd(t.path()), &cfg);
    assert!(err.contains("1 error:"), "{err}");
    assert!(
        err.contains(&format!(
            "{}/conf.d/10-siem.toml: line 3, column 21: sink[0] (\"siem\").endpoint: environment variable AUDITSHIP_TEST_UNSET is not set",
            t.path().display()
        )),
        "{err}"
    );
}

#[test]
fn every_kind_of_error_names_file_line_and_column() {
    let t = tempdir();
    let d = t.path().display().to_string();
    let cfg = layout(
        t.path(),
        "[agent]\nhost = \"h\"\nstate_dri = \"/x\"\n\n[[sink]]\nname = \"siem\"\ntype = \"http\"\nendpoint = \"https://siem.example.com\"\n",
        &[(
            "10-local.toml",
            "[[sink]]\nname = \"siem\"\nrequest_timeout = \"30 seconds\"\nbatch = { max_events = \"lots\" }\n",
        )],
    );
    let err = invalid(cmd(t.path()), &cfg);
    assert!(err.contains("3 errors:"), "{err}");
    let lines: Vec<&str> = err.lines().skip(1).collect();
    assert_eq!(
        lines,
        [
            format!(
                "{d}/auditship.toml: line 3, column 1: agent.state_dri: unknown field `state_dri`, expected one of `state_dir`, `host`, `fields`, `rescan_interval`, `shutdown_timeout`, `heartbeat_interval`, `log_format`"
            ),
            format!(
                "{d}/conf.d/10-local.toml: line 3, column 1: sink[0] (\"siem\").request_timeout: expected a duration unit ms, s, m, h or d in \"30 seconds\""
            ),
            format!(
                "{d}/conf.d/10-local.toml: line 4, column 24: sink[0] (\"siem\").batch.max_events: invalid type: string \"lots\", expected a non-negative integer"
            ),
        ],
        "{err}"
    );
}

#[test]
fn validation_errors_point_where_the_key_was_written() {
    let t = tempdir();
    let d = t.path().display().to_string();
    let cfg = layout(
        t.path(),
        "[record]\non_error = \"maybe\"\n\n[[sink]]\nname = \"hec\"\ntype = \"splunk_hec\"\nendpoint = \"https://splunk.example.com:8088\"\n",
        &[(
            "10-hec.toml",
            "[[sink]]\nname = \"hec\"\nindex = \"audit\"\n  token_file = \"/nonexistent/hec.token\"\n",
        )],
    );
    let err = invalid(cmd(t.path()), &cfg);
    assert!(
        err.contains(&format!(
            "{d}/auditship.toml: line 2, column 1: record.on_error: expected \"allow\" or \"block\", found \"maybe\""
        )),
        "{err}"
    );
    // The problem is the token file, written in the drop-in on line 4.
    assert!(
        err.contains(&format!(
            "{d}/conf.d/10-hec.toml: line 4, column 3: sink[0] (\"hec\").token_file: \"/nonexistent/hec.token\": No such file"
        )),
        "{err}"
    );
    assert!(err.contains("2 errors:"), "{err}");
}

#[test]
fn syntax_errors_in_several_files_are_all_reported() {
    let t = tempdir();
    let d = t.path().display().to_string();
    let cfg = layout(
        t.path(),
        "[agent]\nhost = \"h\n",
        &[
            (
                "10-a.toml",
                "[record]\ndir = \"/x\"\n\n[[sink]\nname = \"a\"\n",
            ),
            ("20-b.toml", "[queue]\nmax_bytes = 1_\n"),
        ],
    );
    let err = invalid(cmd(t.path()), &cfg);
    assert!(err.contains("3 errors:"), "{err}");
    for want in [
        format!("{d}/auditship.toml: line 2, column "),
        format!("{d}/conf.d/10-a.toml: line 4, column "),
        format!("{d}/conf.d/20-b.toml: line 2, column "),
    ] {
        assert!(err.contains(&want), "{want} missing from:\n{err}");
    }
    assert!(err.contains("TOML syntax: "), "{err}");
}

#[test]
fn a_name_used_twice_in_one_file_is_an_error() {
    let t = tempdir();
    let cfg = layout(
        t.path(),
        "[[sink]]\nname = \"a\"\ntype = \"file\"\npath = \"/tmp/a\"\n\n[[sink]]\nname = \"a\"\ntype = \"file\"\npath = \"/tmp/b\"\n",
        &[],
    );
    let err = invalid(cmd(t.path()), &cfg);
    assert!(err.contains("1 error:"), "{err}");
    assert!(
        err.contains(&format!(
            "{}/auditship.toml: line 6, column 1: sink: name \"a\" is used twice in this file (first at line 1)",
            t.path().display()
        )),
        "{err}"
    );
}

#[test]
fn the_hash_follows_the_settings_not_the_files_or_the_environment() {
    let drop_in = "[agent]\nhost = \"${AUDITSHIP_TEST_HOST:-h}\"\n[[sink]]\nname = \"siem\"\nendpoint = \"https://siem-eu.example.com\"\n";
    let a = tempdir();
    let cfg_a = layout(a.path(), FLEET, &[("10-x.toml", drop_in)]);
    let out_a = valid(cmd(a.path()), &cfg_a);
    let hash = hash_of(&out_a);
    // Same files, another host: another directory, another environment.
    let b = tempdir();
    let cfg_b = layout(b.path(), FLEET, &[("10-x.toml", drop_in)]);
    let mut c = cmd(b.path());
    c.env("AUDITSHIP_TEST_HOST", "elsewhere");
    let out_b = valid(c, &cfg_b);
    assert_eq!(hash_of(&out_b), hash);
    assert!(
        out_b.contains("host = \"${AUDITSHIP_TEST_HOST:-h}\""),
        "{out_b}"
    );
    assert!(!out_b.contains("elsewhere"), "{out_b}");
    // The same settings in one file, differently laid out.
    let merged = FLEET
        .replace("fleet-default", "${AUDITSHIP_TEST_HOST:-h}")
        .replace(
            "https://siem.example.com/ingest",
            "https://siem-eu.example.com",
        );
    let c_dir = tempdir();
    let cfg_c = layout(c_dir.path(), &format!("# one file\n{merged}"), &[]);
    assert_eq!(hash_of(&valid(cmd(c_dir.path()), &cfg_c)), hash);
    // One value changed: another hash.
    std::fs::write(
        a.path().join("conf.d/10-x.toml"),
        drop_in.replace("siem-eu", "siem-us"),
    )
    .unwrap();
    assert_ne!(hash_of(&valid(cmd(a.path()), &cfg_a)), hash);
}

#[test]
fn record_applies_drop_ins_and_ignores_the_daemons_variables() {
    let t = tempdir();
    let main_dir = t.path().join("main");
    let dropped = t.path().join("dropped");
    let cfg = layout(
        t.path(),
        &format!(
            "[record]\ndir = \"{}\"\n\n[[sink]]\nname = \"siem\"\ntype = \"http\"\nendpoint = \"${{AUDITSHIP_TEST_DAEMON_ONLY}}\"\n",
            main_dir.display()
        ),
        &[(
            "10-record.toml",
            "[record]\ndir = \"${AUDITSHIP_TEST_BASE}/dropped\"\nuser_id = \"${AUDITSHIP_TEST_USER:-nobody@example.com}\"\n",
        )],
    );
    let mut c = cmd(t.path());
    c.arg("record")
        .arg("--config")
        .arg(&cfg)
        .env("AUDITSHIP_TEST_BASE", t.path());
    let out = run_with_stdin(
        c,
        json!({"hook_event_name": "UserPromptSubmit", "session_id": "s1", "prompt": "hi"})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = read_stream(&dropped);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["user_id"], "nobody@example.com");
    assert!(!main_dir.exists());

    // The daemon does need that variable.
    let err = invalid(cmd(t.path()), &cfg);
    assert!(
        err.contains("AUDITSHIP_TEST_DAEMON_ONLY is not set"),
        "{err}"
    );
}

#[test]
fn record_reports_a_broken_drop_in_with_its_place() {
    let t = tempdir();
    let cfg = layout(
        t.path(),
        "[record]\non_error = \"allow\"\n",
        &[("10-x.toml", "[record]\nkeep_prompts = \"yes\"\n")],
    );
    let mut c = cmd(t.path());
    c.arg("record").arg("--config").arg(&cfg);
    let out = run_with_stdin(
        c,
        json!({"hook_event_name": "PreToolUse", "session_id": "s"})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}/conf.d/10-x.toml: line 2, column 16: record.keep_prompts: invalid type: string \"yes\", expected a boolean",
            t.path().display()
        )),
        "{err}"
    );
}
