//! logrotate `copytruncate` within a stream's glob, against the real binary: the copy
//! continues after what was read of the original (nothing read twice, no
//! `chain_restart`), the truncated original is read from its start, rotations by
//! rename go on around it, a kill -9 between copy and truncate or right after loses
//! nothing; a copy seen before the truncation, or while it is being written, is
//! held and then read once; and a file that only starts like another is read in
//! full.

use crate::sink::{Reply, TestSink};
use crate::util::*;
use auditship::audit::ZERO_HASH;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Most events a kill -9 may make the daemon send again (batches of at most 500
/// events, 8 requests in flight and one acknowledgement being stored, twice).
const RESENT_PER_KILL: u32 = 2 * 8 * 500;

/// Records received, in arrival order.
#[derive(Default, Clone)]
struct Received(Arc<Mutex<Vec<Value>>>);

impl Received {
    fn sink(&self) -> TestSink {
        let me = self.clone();
        TestSink::with(move |_, records| {
            me.0.lock().unwrap().extend_from_slice(records);
            Reply::Ok
        })
    }

    fn ids(&self) -> HashMap<String, u32> {
        let mut out = HashMap::new();
        for r in self.0.lock().unwrap().iter() {
            let id = r["_auditship"]["id"].as_str().unwrap_or("").to_string();
            *out.entry(id).or_insert(0) += 1;
        }
        out
    }

    /// Waits until every id of `ids` (events of the files of `dir`) arrived; if some
    /// never do, says which: their file and seq.
    fn wait_for(&self, ids: &[String], dir: &Path, limit: Duration) {
        let t0 = Instant::now();
        loop {
            let got = self.ids();
            let missing: Vec<&String> = ids.iter().filter(|i| !got.contains_key(*i)).collect();
            if missing.is_empty() {
                return;
            }
            if t0.elapsed() >= limit {
                let at = whereabouts(dir);
                let mut lost: Vec<_> = missing.iter().map(|i| at.get(*i)).collect();
                lost.sort();
                let flagged: Vec<String> = self
                    .tampered()
                    .iter()
                    .take(10)
                    .map(|r| {
                        let a = &r["_auditship"];
                        format!(
                            "{} line {} offset {} seq {}: {}",
                            a["file"], a["line"], a["offset"], r["seq"], a["integrity"]
                        )
                    })
                    .collect();
                panic!(
                    "{} of {} ids did not arrive within {limit:?}: (file, seq) {lost:?}; flagged: {flagged:#?}",
                    missing.len(),
                    ids.len()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Records with integrity problems other than `file_truncated`.
    fn tampered(&self) -> Vec<Value> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|r| {
                let i = &r["_auditship"]["integrity"];
                let codes: Vec<&str> = i["problems"]
                    .as_array()
                    .map(|p| p.iter().filter_map(|c| c["code"].as_str()).collect())
                    .unwrap_or_default();
                !codes.iter().all(|c| *c == "file_truncated")
                    || (codes.is_empty() && i["ok"] != true)
            })
            .cloned()
            .collect()
    }

    fn truncation_records(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r["_auditship"]["integrity"]["problems"][0]["code"] == "file_truncated")
            .map(|r| r["_auditship"]["id"].as_str().unwrap().to_string())
            .collect()
    }
}

/// A writer appending one chained event at a time to `file` until stopped; holding
/// its lock stops it between two events.
struct Writer {
    state: Arc<Mutex<(u64, String)>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(file: PathBuf) -> Writer {
        let state = Arc::new(Mutex::new((0u64, ZERO_HASH.to_string())));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (state, stop) = (state.clone(), stop.clone());
            move || {
                while !stop.load(Ordering::SeqCst) {
                    {
                        let mut s = state.lock().unwrap();
                        let (seq, prev) = (s.0, s.1.clone());
                        s.1 = write_chain(&file, 1, seq, 5, &prev);
                        s.0 += 5;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        });
        Writer {
            state,
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
    }
}

/// logrotate's `copytruncate` with `rotate 9`: `audit.jsonl.k` → `.k+1`, a copy of
/// the live file as `.1`, then the live file truncated. `between` runs after the copy
/// and before the truncation, with the writer held.
///
/// The writer is held from the copy to the truncation because a line written in
/// between is in neither file: that loss is copytruncate's own (logrotate says
/// so), not the daemon's.
fn copytruncate(dir: &Path, w: &Writer, between: impl FnOnce()) {
    copytruncate_by(
        dir,
        w,
        |from, to| {
            std::fs::copy(from, to).unwrap();
        },
        between,
    );
}

/// As [`copytruncate`], with the copy made by `copy(live, copy)`.
fn copytruncate_by(
    dir: &Path,
    w: &Writer,
    copy: impl FnOnce(&Path, &Path),
    between: impl FnOnce(),
) {
    let _held = w.state.lock().unwrap();
    for k in (1..9).rev() {
        let from = dir.join(format!("audit.jsonl.{k}"));
        if from.exists() {
            std::fs::rename(&from, dir.join(format!("audit.jsonl.{}", k + 1))).unwrap();
        }
    }
    let cur = dir.join("audit.jsonl");
    copy(&cur, &dir.join("audit.jsonl.1"));
    between();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&cur)
        .unwrap()
        .set_len(0)
        .unwrap();
}

/// Where each event of the stream's files is: its file and seq, by id.
fn whereabouts(dir: &Path) -> HashMap<String, (String, u64)> {
    let mut out = HashMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        for r in written_records(&p) {
            let id = r["hash"].as_str().expect("a sealed event").to_string();
            out.insert(id, (name.clone(), r["seq"].as_u64().unwrap_or(u64::MAX)));
        }
    }
    out
}

/// Every event's id (its `hash`) in the stream's files (complete lines only: the
/// writer or a copy may be half-way through one).
fn written_ids(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        for r in written_records(&e.unwrap().path()) {
            out.push(r["hash"].as_str().expect("a sealed event").to_string());
        }
    }
    out
}

fn setup() -> (tempfile::TempDir, PathBuf, PathBuf, Received, TestSink) {
    let t = tempdir();
    let dir = t.path().join("audit");
    std::fs::create_dir_all(&dir).unwrap();
    let received = Received::default();
    let sink = received.sink();
    let cfg = daemon_config(
        t.path(),
        &format!(
            "[[source]]\nname = \"rot\"\npaths = [\"{}\"]\nfiles = \"audit.jsonl*\"\n",
            dir.display()
        ),
        &sink.addr,
        "",
    );
    (t, dir, cfg, received, sink)
}

#[test]
fn copytruncate_while_writing_reads_nothing_twice_and_loses_nothing() {
    let (t, dir, cfg, received, _sink) = setup();
    let d = Daemon::start(t.path(), &cfg);
    let w = Writer::start(dir.join("audit.jsonl"));
    for round in 0..6 {
        // Some rounds rotate while the daemon is behind (the copy holds lines not
        // read yet), others once it caught up.
        std::thread::sleep(Duration::from_millis(150 + 100 * (round % 3)));
        if round % 2 == 1 {
            received.wait_for(&written_ids(&dir), &dir, Duration::from_secs(20));
        }
        copytruncate(&dir, &w, || {});
    }
    std::thread::sleep(Duration::from_millis(200));
    w.finish();
    let all = written_ids(&dir);
    received.wait_for(&all, &dir, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(600)); // several rescans
    let (code, _) = d.stop(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    assert_each_once(&received, &all);
}

/// Every event of `all` arrived once, without a chain problem or `chain_restart`;
/// nothing else arrived but the truncations' `file_truncated` records.
fn assert_each_once(received: &Received, all: &[String]) {
    let tampered = received.tampered();
    assert!(
        tampered.is_empty(),
        "no chain_restart, no chain problem: {:#?}",
        &tampered[..tampered.len().min(3)]
    );
    let got = received.ids();
    let truncations = received.truncation_records();
    let twice: Vec<_> = got.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "read twice: {} ids", twice.len());
    let expected: std::collections::HashSet<&String> =
        all.iter().chain(truncations.iter()).collect();
    assert_eq!(
        all.len() as u64,
        w_count(all),
        "the writer's ids are distinct"
    );
    let unexpected: Vec<_> = got.keys().filter(|k| !expected.contains(k)).collect();
    assert!(unexpected.is_empty(), "unexpected ids: {unexpected:?}");
    assert_eq!(got.len(), expected.len(), "every line arrived");
}

#[test]
fn a_copy_seen_before_the_truncation_is_held_until_it_and_read_from_where_the_original_stopped() {
    let (t, dir, cfg, received, _sink) = setup();
    let d = Daemon::start(t.path(), &cfg);
    let w = Writer::start(dir.join("audit.jsonl"));
    for round in 0..4 {
        std::thread::sleep(Duration::from_millis(150 + 100 * (round % 2)));
        // The copy stays next to the untruncated original for several rescans:
        // both hold the same lines, which are read once. Some rounds the daemon
        // has caught up with the original first, others it is behind.
        if round % 2 == 1 {
            received.wait_for(&written_ids(&dir), &dir, Duration::from_secs(20));
        }
        copytruncate(&dir, &w, || std::thread::sleep(Duration::from_millis(700)));
    }
    std::thread::sleep(Duration::from_millis(200));
    w.finish();
    let all = written_ids(&dir);
    received.wait_for(&all, &dir, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(600));
    let (code, _) = d.stop(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    assert_each_once(&received, &all);
}

#[test]
fn a_copy_seen_empty_then_half_written_is_recognised_once_it_has_its_first_line() {
    let (t, dir, cfg, received, _sink) = setup();
    let d = Daemon::start(t.path(), &cfg);
    let w = Writer::start(dir.join("audit.jsonl"));
    // Written as a slow `cp` would: created empty, then a piece cut inside the
    // first line, then one cut inside a later line, then the rest, each seen by
    // rescans of its own.
    let staged = |from: &Path, to: &Path| {
        let bytes = std::fs::read(from).unwrap();
        let pause = || std::thread::sleep(Duration::from_millis(500));
        let mut f = std::fs::File::create(to).unwrap();
        pause();
        let cuts = [0, 40.min(bytes.len()), bytes.len() * 2 / 3, bytes.len()];
        for piece in cuts.windows(2) {
            use std::io::Write;
            f.write_all(&bytes[piece[0]..piece[1]]).unwrap();
            f.flush().unwrap();
            pause();
        }
    };
    for round in 0..3 {
        std::thread::sleep(Duration::from_millis(300));
        if round == 1 {
            received.wait_for(&written_ids(&dir), &dir, Duration::from_secs(20));
        }
        copytruncate_by(&dir, &w, staged, || {});
    }
    std::thread::sleep(Duration::from_millis(200));
    w.finish();
    let all = written_ids(&dir);
    received.wait_for(&all, &dir, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(600));
    let (code, _) = d.stop(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    assert_each_once(&received, &all);
}

fn w_count(all: &[String]) -> u64 {
    all.iter().collect::<std::collections::HashSet<_>>().len() as u64
}

#[test]
fn copytruncate_with_kill_9_between_copy_and_truncate_or_right_after_loses_nothing() {
    let (t, dir, cfg, received, _sink) = setup();
    let mut d = Some(Daemon::start(t.path(), &cfg));
    let w = Writer::start(dir.join("audit.jsonl"));
    let kills = 4u32;
    for round in 0..kills {
        std::thread::sleep(Duration::from_millis(300));
        let daemon = d.take().unwrap();
        if round % 2 == 0 {
            // Killed after the copy, before the truncation.
            copytruncate(&dir, &w, || daemon.kill());
        } else {
            copytruncate(&dir, &w, || {});
            daemon.kill();
        }
        d = Some(Daemon::start(t.path(), &cfg));
    }
    std::thread::sleep(Duration::from_millis(200));
    w.finish();
    assert!(w_count(&written_ids(&dir)) > 0);
    let all = written_ids(&dir);
    received.wait_for(&all, &dir, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(600));
    let (code, _) = d.take().unwrap().stop(Duration::from_secs(10));
    assert_eq!(code, Some(0));

    let tampered = received.tampered();
    assert!(
        tampered.is_empty(),
        "no chain_restart, no chain problem: {:#?}",
        &tampered[..tampered.len().min(3)]
    );
    let got = received.ids();
    let truncations = received.truncation_records();
    let expected: std::collections::HashSet<&String> =
        all.iter().chain(truncations.iter()).collect();
    let unexpected: Vec<_> = got.keys().filter(|k| !expected.contains(k)).collect();
    assert!(unexpected.is_empty(), "unexpected ids: {unexpected:?}");
    // A kill may make the daemon send again what was not yet acknowledged; a copy
    // read again would be far more (and flagged `chain_restart`).
    let resent: u32 = got.values().map(|n| n - 1).sum();
    assert!(resent <= kills * RESENT_PER_KILL, "{resent} sent twice");
}

#[test]
fn a_file_that_only_starts_like_another_is_read_in_full() {
    let (t, dir, cfg, received, _sink) = setup();
    let cur = dir.join("audit.jsonl");
    write_chain(&cur, 1, 0, 1, ZERO_HASH);
    let first = std::fs::read(&cur).unwrap();
    let prev = sealed_ids(&cur)[0].clone();
    write_chain(&cur, 1, 1, 99, &prev);
    let d = Daemon::start(t.path(), &cfg);
    received.wait_for(&sealed_ids(&cur), &dir, Duration::from_secs(20));
    // Same first line, then other events: not a copy.
    let other = dir.join("audit.jsonl.other");
    std::fs::write(&other, &first).unwrap();
    write_chain(&other, 2, 1, 150, &prev);
    let lines = 151;
    let t0 = Instant::now();
    let from_other = || {
        received
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r["_auditship"]["file"] == "audit.jsonl.other")
            .count()
    };
    while from_other() < lines {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{} of {lines} lines of the other file arrived",
            from_other()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    std::thread::sleep(Duration::from_millis(600));
    let (code, _) = d.stop(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    assert_eq!(from_other(), lines, "read once, in full");
}
