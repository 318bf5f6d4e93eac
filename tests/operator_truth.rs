//! What operators and scripts are told is true: `dead-letter` and `archive --now`
//! never report "nothing" for what they could not read and refuse another user's
//! state directory; `status` asks only the daemon of its own state directory and
//! shows refused reloads, even with a broken configuration file; a reload is one
//! `agent_reload` record; `record --decision` fails loudly on bad input; numbers no
//! 64-bit integer or double holds are kept as written.

use crate::sink::TestSink;
use crate::util::*;
use auditship::audit::ZERO_HASH;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

const NOBODY: u32 = 65534;

fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chown(p: &Path, uid: u32) {
    std::os::unix::fs::chown(p, Some(uid), Some(uid)).unwrap();
}

/// `auditship ARGS --config CFG`, as uid `as_uid` when given.
fn run_as(home: &Path, as_uid: Option<u32>, args: &[&str], cfg: &Path) -> Output {
    let mut c = cmd(home);
    c.args(args).arg("--config").arg(cfg);
    if let Some(uid) = as_uid {
        c.uid(uid).gid(uid);
    }
    c.output().unwrap()
}

/// A directory every user can enter (the test's temporary root is 0700), with a
/// config whose state directory is `<root>/state`, created with `mode`.
fn shared_setup(mode: u32) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let t = tempdir();
    chmod(t.path(), 0o755);
    let sink = "http://127.0.0.1:9/";
    let dir = t.path().join("audit");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = daemon_config(t.path(), &source_toml(&dir), sink, "");
    chmod(&cfg, 0o644);
    let state = t.path().join("state");
    std::fs::create_dir_all(state.join("queue")).unwrap();
    chmod(&state, mode);
    (t, cfg, state)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn dead_letter_and_archive_refuse_a_state_directory_of_another_user() {
    assert!(
        is_root(),
        "this test stages other users' directories: run as root"
    );
    let (t, cfg, state) = shared_setup(0o700);
    chown(&state, NOBODY);
    chown(&state.join("queue"), NOBODY);
    for args in [
        &["dead-letter", "list"][..],
        &["dead-letter", "purge", "--before", "2030-01-01"],
        &["dead-letter", "replay"],
        &["archive", "--now"],
    ] {
        let out = run_as(t.path(), None, args, &cfg);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("belongs to nobody") && err.contains("sudo -u nobody auditship"),
            "{args:?}: {err}"
        );
        assert!(
            err.contains(&args.join(" ")),
            "{args:?}: the command to run again: {err}"
        );
        assert!(!text(&out.stdout).contains("0 dead letters"), "{args:?}");
    }
    // Nothing was left behind for the service to trip over.
    let left: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, [std::ffi::OsString::from("queue")]);
    assert_eq!(std::fs::read_dir(state.join("queue")).unwrap().count(), 0);

    // As the owner it works (here: an empty queue, truthfully none).
    let out = run_as(t.path(), Some(NOBODY), &["dead-letter", "list"], &cfg);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("0 dead letters"));
}

#[test]
fn dead_letter_and_archive_without_read_access_fail_instead_of_reporting_nothing() {
    assert!(
        is_root(),
        "this test runs the binary as another user: run as root"
    );
    // A root-owned 0700 state directory with a queue in it, seen by nobody.
    let (t, cfg, state) = shared_setup(0o700);
    std::fs::write(state.join("queue/db"), b"").unwrap();
    for args in [&["dead-letter", "list"][..], &["archive", "--now"]] {
        let out = run_as(t.path(), Some(NOBODY), args, &cfg);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("sudo -u root"), "{args:?}: {err}");
        assert!(!text(&out.stdout).contains("dead letters"), "{args:?}");
    }
    // Not even the directory can be looked at: said so, exit 2.
    let hidden = t.path().join("hidden");
    std::fs::create_dir(&hidden).unwrap();
    chmod(&hidden, 0o700);
    let cfg2 = write_config(
        t.path(),
        &std::fs::read_to_string(&cfg).unwrap().replace(
            &format!("state_dir = \"{}\"", state.display()),
            &format!("state_dir = \"{}\"", hidden.join("state").display()),
        ),
    );
    let out = run_as(t.path(), Some(NOBODY), &["dead-letter", "list"], &cfg2);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot read the state directory"), "{err}");
    assert!(text(&out.stdout).is_empty());
    // The owner's queue that cannot be read: an error, never none.
    let (t, cfg, state) = shared_setup(0o755);
    chown(&state, NOBODY);
    chmod(&state.join("queue"), 0o700);
    std::fs::write(state.join("queue/db"), b"").unwrap();
    let out = run_as(t.path(), Some(NOBODY), &["dead-letter", "list"], &cfg);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot read the queue"), "{err}");
}

fn status(home: &Path, args: &[&std::ffi::OsStr]) -> Output {
    cmd(home).arg("status").args(args).output().unwrap()
}

#[test]
fn status_asks_only_the_daemon_of_its_own_state_directory() {
    let port = free_port();
    let metrics = format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n");
    let (ta, tb) = (tempdir(), tempdir());
    let (sa, sb) = (TestSink::start(), TestSink::start());
    let mut daemons = Vec::new();
    let mut cfgs = Vec::new();
    for (t, sink) in [(&ta, &sa), (&tb, &sb)] {
        let dir = t.path().join("audit");
        std::fs::create_dir_all(&dir).unwrap();
        write_chain(&dir.join("audit-1.jsonl"), 1, 0, 3, ZERO_HASH);
        let cfg = daemon_config(t.path(), &source_toml(&dir), &sink.addr, &metrics);
        let d = Daemon::start(t.path(), &cfg);
        if daemons.is_empty() {
            wait_until(Duration::from_secs(30), "A listens", || {
                t.path().join("state/metrics.addr").exists()
            });
        } else {
            wait_until(Duration::from_secs(30), "B cannot listen", || {
                d.stderr().contains("cannot listen for metrics")
            });
        }
        daemons.push(d);
        cfgs.push(cfg);
    }
    sb.wait_for(3, Duration::from_secs(30));
    // A: its own daemon, by pid and state directory.
    let out = status(
        ta.path(),
        &["--json".as_ref(), "--config".as_ref(), cfgs[0].as_ref()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["pid"], daemons[0].child.id());
    assert_eq!(
        doc["state_dir"].as_str(),
        Some(ta.path().join("state").to_str().unwrap())
    );
    // B runs and ships, but has no listener: not running as far as status can tell,
    // and never A's health reported as B's.
    let out = status(tb.path(), &["--config".as_ref(), cfgs[1].as_ref()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("not running"), "{err}");
    assert!(
        err.contains(tb.path().join("state").to_str().unwrap()),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    // An address B did not write (say, left from before) that leads to A: refused.
    let addr = std::fs::read_to_string(ta.path().join("state/metrics.addr")).unwrap();
    std::fs::write(tb.path().join("state/metrics.addr"), &addr).unwrap();
    let out = status(tb.path(), &["--config".as_ref(), cfgs[1].as_ref()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("another state directory"), "{err}");
    // A dead address: not running.
    std::fs::write(
        tb.path().join("state/metrics.addr"),
        format!("127.0.0.1:{}", free_port()),
    )
    .unwrap();
    let out = status(tb.path(), &["--config".as_ref(), cfgs[1].as_ref()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("not running"));
    for d in daemons {
        let (code, log) = d.stop(Duration::from_secs(10));
        assert_eq!(code, Some(0), "{log}");
    }
}

/// A daemon with lifecycle records on, shipping one stream to `sink`.
fn lifecycle_config(t: &Path, sink: &TestSink, rescan: &str) -> String {
    let dir = t.join("audit");
    std::fs::create_dir_all(&dir).unwrap();
    format!(
        "[agent]\nstate_dir = \"{}\"\nhost = \"test-host\"\nrescan_interval = \"{rescan}\"\nheartbeat_interval = \"1h\"\n\n{}\n[[sink]]\nname = \"http\"\ntype = \"http\"\nendpoint = \"{}\"\nbatch = {{ max_wait = \"50ms\" }}\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
        t.join("state").display(),
        source_toml(&dir),
        sink.addr
    )
}

#[test]
fn a_refused_reload_shows_in_status_text_even_with_the_broken_file_on_disk() {
    let t = tempdir();
    let sink = TestSink::start();
    let good = lifecycle_config(t.path(), &sink, "200ms");
    let cfg = write_config(t.path(), &good);
    write_chain(&t.path().join("audit/audit-1.jsonl"), 1, 0, 3, ZERO_HASH);
    let d = Daemon::start(t.path(), &cfg);
    sink.wait_for(4, Duration::from_secs(30));
    let state = t.path().join("state");
    wait_until(Duration::from_secs(30), "listening", || {
        state.join("metrics.addr").exists()
    });

    std::fs::write(&cfg, format!("{good}\n[broken\n")).unwrap();
    d.signal(libc::SIGHUP);
    let ask = |args: &[&std::ffi::OsStr]| status(t.path(), args);
    wait_until(Duration::from_secs(30), "the refusal counted", || {
        let out = ask(&["--json".as_ref(), "--config".as_ref(), cfg.as_ref()]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .is_ok_and(|d| d["config_reload_failures"] == 1)
    });
    // The file on disk does not load; status still finds the daemon by the state
    // directory the file names, and says what the daemon refused.
    let out = ask(&["--config".as_ref(), cfg.as_ref()]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stderr.contains("does not load"), "{stderr}");
    assert!(stdout.contains("0 reloads applied, 1 refused"), "{stdout}");
    assert!(stdout.contains("last reload was REFUSED"), "{stdout}");
    let doc = serde_json::from_slice::<serde_json::Value>(
        &ask(&["--json".as_ref(), "--config".as_ref(), cfg.as_ref()]).stdout,
    )
    .unwrap();
    let reason = doc["config_reload_error"].as_str().unwrap();
    let first = reason.lines().next().unwrap();
    assert!(stdout.contains(first), "the reason {first:?} in:\n{stdout}");
    // Each sink's last success (and, were there one, last error) in text.
    assert!(stdout.contains("sink http (http): ok"), "{stdout}");
    assert!(stdout.contains("  last success: 20"), "{stdout}");
    // --state-dir alone is enough.
    let out = ask(&["--state-dir".as_ref(), state.as_ref()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("1 refused"));
    let (code, log) = d.stop(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{log}");
    // Stopped: not running, exit 2.
    let out = ask(&["--state-dir".as_ref(), state.as_ref()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("not running"));
}

#[test]
fn a_reload_ships_one_agent_reload_record_and_no_stop_or_start() {
    let t = tempdir();
    let sink = TestSink::start();
    let cfg = write_config(t.path(), &lifecycle_config(t.path(), &sink, "200ms"));
    let d = Daemon::start(t.path(), &cfg);
    let events = |what: &str| -> Vec<serde_json::Value> {
        sink.records()
            .into_iter()
            .filter(|r| r["action"] == "agent_event" && r["metadata"]["source_event"] == what)
            .collect()
    };
    wait_until(Duration::from_secs(30), "agent_start", || {
        !events("agent_start").is_empty()
    });
    std::fs::write(&cfg, lifecycle_config(t.path(), &sink, "300ms")).unwrap();
    d.signal(libc::SIGHUP);
    wait_until(Duration::from_secs(30), "agent_reload", || {
        !events("agent_reload").is_empty()
    });
    // The pipeline runs on the new configuration.
    write_chain(&t.path().join("audit/audit-1.jsonl"), 1, 0, 3, ZERO_HASH);
    wait_until(Duration::from_secs(30), "shipping after the reload", || {
        sink.records().iter().filter(|r| r["seq"].is_u64()).count() == 3
    });
    let (code, log) = d.stop(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{log}");
    let (start, reload, stop) = (
        events("agent_start"),
        events("agent_reload"),
        events("agent_stop"),
    );
    assert_eq!(
        (start.len(), reload.len(), stop.len()),
        (1, 1, 1),
        "one start, one reload, one stop"
    );
    let (start, reload, stop) = (&start[0], &reload[0], &stop[0]);
    let old = start["metadata"]["config_hash"].as_str().unwrap();
    let new = stop["metadata"]["config_hash"].as_str().unwrap();
    assert_ne!(old, new, "the reload changed the configuration");
    assert_eq!(reload["metadata"]["previous_config_hash"], old);
    assert_eq!(reload["metadata"]["config_hash"], new);
    assert_eq!(reload["outcome"], "success");
    assert_eq!(reload["_auditship"]["integrity"]["ok"], true, "{reload}");
    assert_eq!(reload["session_id"], start["session_id"], "one process");
    assert_eq!(stop["session_id"], start["session_id"], "one process");
}

#[test]
fn a_reload_that_cannot_start_goes_back_to_the_running_configuration() {
    let t = tempdir();
    let sink = TestSink::start();
    let good = lifecycle_config(t.path(), &sink, "200ms");
    let cfg = write_config(t.path(), &good);
    let d = Daemon::start(t.path(), &cfg);
    let events = |what: &str| {
        sink.records()
            .into_iter()
            .filter(|r| r["action"] == "agent_event" && r["metadata"]["source_event"] == what)
            .count()
    };
    wait_until(Duration::from_secs(30), "agent_start", || {
        events("agent_start") == 1
    });
    // Valid as a file, but its state directory cannot be made: under a regular file.
    let blocker = t.path().join("not-a-dir");
    std::fs::write(&blocker, "x").unwrap();
    let state = t.path().join("state").display().to_string();
    let bad = good.replace(&state, &blocker.join("state").display().to_string());
    assert_ne!(bad, good);
    std::fs::write(&cfg, &bad).unwrap();
    d.signal(libc::SIGHUP);
    wait_until(
        Duration::from_secs(30),
        "the fallback's agent_reload",
        || events("agent_reload") == 1,
    );
    // Still running on the previous settings: it ships, and status says why the
    // reload did not take.
    write_chain(&t.path().join("audit/audit-1.jsonl"), 1, 0, 3, ZERO_HASH);
    wait_until(
        Duration::from_secs(30),
        "shipping after the failed reload",
        || sink.records().iter().filter(|r| r["seq"].is_u64()).count() == 3,
    );
    let out = status(t.path(), &["--state-dir".as_ref(), state.as_ref()]);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("last reload was REFUSED"), "{stdout}");
    assert!(stdout.contains("cannot start"), "{stdout}");
    let (code, log) = d.stop(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("going back to the previous one"), "{log}");
    assert_eq!((events("agent_start"), events("agent_stop")), (1, 1));
}

fn record_config(t: &Path, on_error: &str, dir: &Path) -> PathBuf {
    write_config(
        t,
        &format!(
            "[record]\ndir = \"{}\"\non_error = \"{on_error}\"\n",
            dir.display()
        ),
    )
}

#[test]
fn a_decision_with_bad_input_exits_non_zero_with_the_reason_whatever_on_error_says() {
    for on_error in ["allow", "block"] {
        let t = tempdir();
        let dir = t.path().join("audit");
        let cfg = record_config(t.path(), on_error, &dir);
        let decide = |args: &[&str]| {
            cmd(t.path())
                .args(["record", "--config"])
                .arg(&cfg)
                .args(args)
                .output()
                .unwrap()
        };
        for (args, why) in [
            (&["--decision", ""][..], "empty"),
            (&["--decision", "   "], "empty"),
            (
                &["--decision", "x", "--confidence", "1.5"],
                "between 0 and 1",
            ),
            (
                &["--decision", "x", "--confidence", "-0.1"],
                "between 0 and 1",
            ),
            (
                &["--decision", "x", "--confidence", "NaN"],
                "between 0 and 1",
            ),
            (
                &["--decision", "x", "--confidence", "high"],
                "invalid value",
            ),
            (
                &["--decision", "x", "--outcome", "maybe"],
                "unknown outcome",
            ),
        ] {
            let out = decide(args);
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{on_error} {args:?}: {err}");
            assert!(err.contains(why), "{on_error} {args:?}: {err}");
        }
        assert!(!dir.exists(), "{on_error}: nothing recorded");
        let out = decide(&["--decision", "use PostgreSQL", "--confidence", "0.8"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(read_stream(&dir).len(), 1);
    }
    // A valid decision that cannot be written: exit 1, even with on_error = "allow".
    let t = tempdir();
    let blocked = t.path().join("not-a-dir");
    std::fs::write(&blocked, b"").unwrap();
    let cfg = record_config(t.path(), "allow", &blocked.join("audit"));
    let out = cmd(t.path())
        .args(["record", "--config"])
        .arg(&cfg)
        .args(["--decision", "use PostgreSQL"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(!out.stderr.is_empty());
}

#[test]
fn numbers_no_integer_or_double_holds_are_kept_as_written_and_verify_clean() {
    let t = tempdir();
    let dir = t.path().join("audit");
    let cfg = record_config(t.path(), "allow", &dir);
    let seventy = "1234567890".repeat(7);
    let payload = format!(
        r#"{{"hook_event_name":"Notification","session_id":"s1","cwd":"/tmp","message":"m","big":{seventy},"neg":-{seventy},"huge":1e400,"tiny_neg":-2.5E+999,"u64":18446744073709551615,"list":[{seventy},1e400,1.5]}}"#
    );
    let mut c = cmd(t.path());
    c.args(["record", "--config"]).arg(&cfg);
    let out = run_with_stdin(c, payload.as_bytes());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let events = read_stream(&dir);
    assert_eq!(events.len(), 1);
    let extra = &events[0]["metadata"]["extra"];
    assert_eq!(extra["big"], seventy.as_str(), "{extra}");
    assert_eq!(extra["neg"], format!("-{seventy}").as_str());
    assert_eq!(extra["huge"], "1e400");
    assert_eq!(extra["tiny_neg"], "-2.5E+999");
    assert_eq!(extra["u64"], "18446744073709551615");
    assert_eq!(
        extra["list"],
        serde_json::json!([seventy.as_str(), "1e400", 1.5])
    );
    assert!(
        events[0]["metadata"]
            .get("replaced_invalid_unicode")
            .is_none()
    );
    let out = std::process::Command::new(bin())
        .arg("verify")
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}
