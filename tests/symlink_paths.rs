//! Symlinked homes under a directory glob (`<root>/home/*/.claude/audit`), the way the
//! system service watches every user: a `.claude` (or `.claude/audit`) that a dotfile
//! manager made a symlink to the user's own directory ships; one that leads to
//! another user's directory or a system one is not followed, is counted in
//! `/metrics` and is reported by exactly one `agent_event` record naming the path.
//!
//! The tests run as root and give the homes to other uids with `chown`, as on a real
//! machine. (The race where a file is swapped for a symlink between listing and open
//! cannot be staged from outside the process: `watch::dir` and `daemon::reader` unit
//! tests cover it with the directory-descriptor API.)

use crate::sink::TestSink;
use crate::util::*;
use auditship::audit::ZERO_HASH;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::os::unix::fs::{chown, lchown, symlink};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Creates `rel` below `base`, each missing directory owned by `uid`.
fn mkdirs_owned(base: &Path, rel: &str, uid: u32) -> PathBuf {
    let mut p = base.to_path_buf();
    for c in Path::new(rel).components() {
        p.push(c);
        if !p.exists() {
            std::fs::create_dir(&p).unwrap();
            chown(&p, Some(uid), Some(uid)).unwrap();
        }
    }
    p
}

/// A link at `link` to `target`, owned by `uid` (as if that user had made it).
fn link_owned(target: &Path, link: &Path, uid: u32) {
    symlink(target, link).unwrap();
    lchown(link, Some(uid), Some(uid)).unwrap();
}

/// `n` chained events of stream `stream` in a file owned by `uid`; their ids.
fn stream_file(dir: &Path, stream: u32, n: u64, uid: u32) -> Vec<String> {
    let f = dir.join("audit-2026-11-26.jsonl");
    write_chain(&f, stream, 0, n, ZERO_HASH);
    chown(&f, Some(uid), Some(uid)).unwrap();
    sealed_ids(&f)
}

fn homes_config(root: &Path, sink: &TestSink) -> PathBuf {
    let source = format!(
        "[[source]]\nname = \"homes\"\npaths = [\"{}/home/*/.claude/audit\"]\n",
        root.display()
    );
    daemon_config(root, &source, &sink.addr, "")
}

/// The samples of the daemon's `/metrics`, by series.
fn metrics(state: &Path) -> HashMap<String, f64> {
    let addr = std::fs::read_to_string(state.join("metrics.addr")).unwrap();
    let mut s = std::net::TcpStream::connect(addr.trim()).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (_, body) = text.split_once("\r\n\r\n").unwrap();
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
        .collect()
}

fn wait_for_metrics(state: &Path) {
    let t0 = std::time::Instant::now();
    while !state.join("metrics.addr").exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no metrics listener"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn refusal_records(records: &[Value]) -> Vec<&Value> {
    records
        .iter()
        .filter(|r| {
            r["action"] == "agent_event" && r["metadata"]["source_event"] == "symlink_refused"
        })
        .collect()
}

const REFUSED_DIRS: &str = "auditship_symlinks_refused_total{kind=\"directory\"}";

#[test]
fn a_claude_linked_to_the_users_own_directory_ships() {
    let t = tempdir();
    let root = t.path();
    mkdirs_owned(root, "home", 0);
    // alice's ~/.claude is her dotfile manager's link into her own dotfiles.
    let alice = mkdirs_owned(root, "home/alice", 1001);
    let real = mkdirs_owned(root, "srv/dotfiles/alice/claude/audit", 1001);
    let mut expected = stream_file(&real, 1, 30, 1001);
    link_owned(real.parent().unwrap(), &alice.join(".claude"), 1001);
    // bob's ~/.claude/audit is a link to a directory of his own next to it.
    let bob = mkdirs_owned(root, "home/bob/.claude", 1002);
    let bob_real = mkdirs_owned(root, "home/bob/audit-real", 1002);
    expected.extend(stream_file(&bob_real, 2, 20, 1002));
    link_owned(Path::new("../audit-real"), &bob.join("audit"), 1002);
    // carol: a plain directory.
    let carol = mkdirs_owned(root, "home/carol/.claude/audit", 1003);
    expected.extend(stream_file(&carol, 3, 10, 1003));

    let sink = TestSink::start();
    let cfg = homes_config(root, &sink);
    let d = Daemon::start(root, &cfg);
    sink.wait_for(60, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(800)); // several rescans
    let state = root.join("state");
    wait_for_metrics(&state);
    let m = metrics(&state);
    let (code, log) = d.stop(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{log}");

    let ids = sink.ids();
    let want: HashSet<String> = expected.into_iter().collect();
    assert_eq!(ids.keys().cloned().collect::<HashSet<_>>(), want, "{log}");
    assert!(ids.values().all(|&n| n == 1), "each event once");
    let records = sink.records();
    let streams: HashSet<&str> = records
        .iter()
        .map(|r| r["_auditship"]["stream"].as_str().unwrap())
        .collect();
    let named = |p: &Path| p.display().to_string();
    assert_eq!(
        streams,
        [
            named(&alice.join(".claude/audit")),
            named(&bob.join("audit")),
            named(&carol),
        ]
        .iter()
        .map(String::as_str)
        .collect(),
        "streams are named by the path the glob found, not where the link leads"
    );
    assert!(refusal_records(&records).is_empty());
    assert_eq!(m.get(REFUSED_DIRS), Some(&0.0), "{m:?}");
    assert!(
        records
            .iter()
            .all(|r| r["_auditship"]["integrity"]["ok"] == true)
    );
}

#[test]
fn links_to_other_users_or_system_directories_are_refused_counted_and_recorded_once() {
    let t = tempdir();
    let root = t.path();
    mkdirs_owned(root, "home", 0);
    // The victim's audit directory, and a root-only one.
    let victim = mkdirs_owned(root, "home/victim/.claude/audit", 1003);
    stream_file(&victim, 3, 10, 1003);
    chown(root.join("home/victim"), Some(1003), Some(1003)).unwrap();
    let root_only = mkdirs_owned(root, "var/root-only/claude/audit", 0);
    stream_file(&root_only, 4, 10, 0);
    // mallory points ~/.claude at the victim's.
    let mallory = mkdirs_owned(root, "home/mallory", 1002);
    link_owned(
        &root.join("home/victim/.claude"),
        &mallory.join(".claude"),
        1002,
    );
    // eve points ~/.claude at /etc.
    let eve = mkdirs_owned(root, "home/eve", 1004);
    link_owned(Path::new("/etc"), &eve.join(".claude"), 1004);
    // oscar's ~/.claude is his, its audit a link to the root-only directory.
    let oscar = mkdirs_owned(root, "home/oscar/.claude", 1005);
    link_owned(&root_only, &oscar.join("audit"), 1005);
    // A plain user keeps shipping.
    let bob = mkdirs_owned(root, "home/bob/.claude/audit", 1006);
    let bob_ids = stream_file(&bob, 2, 10, 1006);

    let sink = TestSink::start();
    let cfg = homes_config(root, &sink);
    let d = Daemon::start(root, &cfg);
    let state = root.join("state");
    // Bob's 10 events, the victim's own 10 and 3 refusals.
    sink.wait_for(23, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(1500)); // several rescans at 200 ms
    wait_for_metrics(&state);
    let m = metrics(&state);
    let (code, log) = d.stop(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{log}");

    let records = sink.records();
    let refusals = refusal_records(&records);
    let mut paths: Vec<&str> = refusals
        .iter()
        .map(|r| r["resource"].as_str().unwrap())
        .collect();
    paths.sort();
    let named = |p: PathBuf| p.display().to_string();
    let mut want = vec![
        named(eve.join(".claude")),
        named(mallory.join(".claude")),
        named(oscar.join("audit")),
    ];
    want.sort();
    assert_eq!(
        paths, want,
        "one record per refused path, not one per rescan"
    );
    for r in &refusals {
        assert_eq!(r["outcome"], "denied");
        assert_eq!(r["host"], "test-host");
        assert_eq!(r["metadata"]["path"], r["resource"]);
        assert_eq!(r["metadata"]["kind"], "directory");
        assert!(r["metadata"]["reason"].as_str().unwrap().contains("uid"));
    }
    let eve_rec = refusals
        .iter()
        .find(|r| r["resource"] == named(eve.join(".claude")))
        .unwrap();
    assert_eq!(eve_rec["metadata"]["target"], "/etc");
    assert_eq!(eve_rec["metadata"]["target_uid"], 0);
    assert_eq!(eve_rec["metadata"]["dir_uid"], 1004);
    assert_eq!(m.get(REFUSED_DIRS), Some(&3.0), "{m:?}");
    assert!(log.contains("symlink refused"), "{log}");

    // Nothing was read through a refused link: the victim's stream shipped once,
    // under the victim's own path; the root-only one never.
    let victim_named = named(victim.clone());
    for r in &records {
        assert_ne!(
            r["user_id"], "dev4@example.com",
            "root-only data shipped: {r}"
        );
        if r["user_id"] == "dev3@example.com" {
            assert_eq!(r["_auditship"]["stream"], victim_named.as_str(), "{r}");
        }
    }
    let ids = sink.ids();
    for id in &bob_ids {
        assert_eq!(ids.get(id), Some(&1), "bob's events ship once");
    }
    assert_eq!(
        records.len(),
        bob_ids.len() + 10 + 3,
        "bob's, the victim's own, and the three refusals: nothing else"
    );
}
