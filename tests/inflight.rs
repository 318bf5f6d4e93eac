//! Several requests in flight per sink, and batching only at the live edge: the real
//! daemon against test servers on 127.0.0.1 that hold answers back, answer out of
//! order, count the requests out at once and note when each arrived.
//!
//! Delivery is checked by identity (`_auditship.id`, the `hash` of each written
//! line); the cursor a killed daemon left is read from its queue.

use crate::siem::{HecReply, HecServer};
use crate::sink::{Reply, TestSink};
use crate::util::*;
use auditship::audit::ZERO_HASH;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

/// Requests out at once when a sink does not say (`max_in_flight`).
const DEFAULT_MAX_IN_FLIGHT: u64 = 8;
/// Records per request on the defaults (`batch.max_events`).
const DEFAULT_MAX_EVENTS: u64 = 1000;

/// The most records one interruption may send twice (docs/SINKS.md): the requests out
/// and those whose acknowledgement was being stored, 2 × `max_in_flight` requests.
fn resend_bound(max_in_flight: u64, max_events: u64) -> u64 {
    2 * max_in_flight * max_events
}

/// A daemon config watching `t/audit`, shipping to one `[[sink]]` of type `kind` at
/// `endpoint` with `extra` keys (nothing else set: the defaults apply).
fn config(t: &Path, kind: &str, endpoint: &str, extra: &str) -> PathBuf {
    write_config(
        t,
        &format!(
            "[agent]\nstate_dir = \"{state}\"\nhost = \"test-host\"\nshutdown_timeout = \"5s\"\nheartbeat_interval = \"0s\"\n\n{source}\n[[sink]]\nname = \"s\"\ntype = \"{kind}\"\nendpoint = \"{endpoint}\"\n{extra}\n{metrics}",
            state = t.join("state").display(),
            source = source_toml(&t.join("audit")),
            metrics = metrics_table(extra),
        ),
    )
}

/// A temp home with an `audit` directory and the stream file in it.
fn setup() -> (tempfile::TempDir, PathBuf) {
    let t = tempdir();
    std::fs::create_dir_all(t.path().join("audit")).unwrap();
    let file = t.path().join("audit/audit-2026-11-26.jsonl");
    (t, file)
}

/// What a test server saw: requests out at once, when each arrived, records by id.
#[derive(Default)]
struct Watch {
    out: AtomicU64,
    max_out: AtomicU64,
    arrivals: Mutex<Vec<Instant>>,
    ids: Mutex<HashMap<String, u32>>,
}

impl Watch {
    /// Call at a request's arrival; the guard counts it out until dropped.
    fn arrive(self: &Arc<Self>) -> Out {
        self.arrivals.lock().unwrap().push(Instant::now());
        let now = self.out.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_out.fetch_max(now, Ordering::SeqCst);
        Out(self.clone())
    }

    fn accept(&self, records: &[Value]) {
        let mut ids = self.ids.lock().unwrap();
        for r in records {
            let id = r["_auditship"]["id"].as_str().unwrap().to_string();
            *ids.entry(id).or_insert(0) += 1;
        }
    }

    fn distinct(&self) -> usize {
        self.ids.lock().unwrap().len()
    }

    fn wait_distinct(&self, n: usize) {
        let t0 = Instant::now();
        while self.distinct() < n {
            assert!(
                t0.elapsed() < WAIT,
                "{} of {n} records arrived within {WAIT:?}",
                self.distinct()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asserts every id of `expected` arrived and nothing else; returns duplicates.
    fn duplicates_of(&self, expected: &[String]) -> u64 {
        let ids = self.ids.lock().unwrap();
        let want: HashSet<&String> = expected.iter().collect();
        let missing = want.iter().filter(|id| !ids.contains_key(**id)).count();
        let unexpected = ids.keys().filter(|id| !want.contains(id)).count();
        assert_eq!((missing, unexpected), (0, 0), "missing, unexpected ids");
        ids.values().map(|&n| u64::from(n) - 1).sum()
    }
}

/// A request being answered, counted out until dropped.
struct Out(Arc<Watch>);

impl Drop for Out {
    fn drop(&mut self) {
        self.0.out.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A sink answering every request 200 after `delay`.
fn slow_sink(watch: &Arc<Watch>, delay: Duration) -> TestSink {
    let w = watch.clone();
    TestSink::with(move |_, records| {
        let _out = w.arrive();
        std::thread::sleep(delay);
        w.accept(records);
        Reply::Ok
    })
}

fn stop(d: Daemon) {
    let (code, log) = d.stop(Duration::from_secs(15));
    assert_eq!(code, Some(0), "daemon exit status; its log:\n{log}");
}

#[test]
fn a_slow_receiver_sees_several_requests_out_but_never_more_than_max_in_flight() {
    for (setting, limit) in [("max_in_flight = 1", 1), ("max_in_flight = 3", 3), ("", 8)] {
        let (t, file) = setup();
        write_chain(&file, 1, 0, 12_000, ZERO_HASH);
        let ids = sealed_ids(&file);
        let watch = Arc::new(Watch::default());
        let sink = slow_sink(&watch, Duration::from_millis(100));
        let cfg = config(t.path(), "http", &sink.addr, setting);
        let d = Daemon::start(t.path(), &cfg);
        watch.wait_distinct(ids.len());
        stop(d);
        let max = watch.max_out.load(Ordering::SeqCst);
        println!("{setting:?}: at most {max} requests out at once");
        assert!(max <= limit, "{max} requests out at once, {setting:?}");
        if limit == 1 {
            assert_eq!(max, 1);
        } else {
            assert!(
                max >= 2,
                "{setting:?}: one request at a time against a receiver answering after 100 ms"
            );
        }
        assert_eq!(
            watch.duplicates_of(&ids),
            0,
            "no duplicates without a crash"
        );
        if setting.is_empty() {
            assert_eq!(limit, DEFAULT_MAX_IN_FLIGHT);
        }
    }
}

/// A gate the test opens: requests held at it wait until then.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
}

impl Gate {
    fn wait(&self) {
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.cv.wait(open).unwrap();
        }
    }

    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }
}

#[test]
fn answers_out_of_order_move_the_cursor_only_over_the_answered_prefix() {
    let (t, file) = setup();
    write_chain(&file, 1, 0, 6_000, ZERO_HASH);
    let ids = sealed_ids(&file);
    let watch = Arc::new(Watch::default());
    let gate = Arc::new(Gate::default());
    let answered_later = Arc::new(AtomicU64::new(0));
    // The request holding the first event waits at the gate (then fails: the daemon
    // that sent it is gone); every other one is answered at once. It is known by its
    // records, not by the order of arrival: requests sent at once may arrive in any
    // order.
    let first_id = ids[0].clone();
    let held = Arc::new(AtomicBool::new(false));
    let sink = {
        let (w, gate, later) = (watch.clone(), gate.clone(), answered_later.clone());
        TestSink::with(move |_, records| {
            let _out = w.arrive();
            let oldest = records
                .iter()
                .any(|r| r["_auditship"]["id"].as_str() == Some(first_id.as_str()));
            if oldest && !held.swap(true, Ordering::SeqCst) {
                gate.wait();
                return Reply::Status(503, None);
            }
            w.accept(records);
            later.fetch_add(1, Ordering::SeqCst);
            Reply::Ok
        })
    };
    let cfg = config(t.path(), "http", &sink.addr, "max_in_flight = 4");
    let d = Daemon::start(t.path(), &cfg);
    // Requests 1 to 3 answered while the first is out: the window is full.
    let t0 = Instant::now();
    while answered_later.load(Ordering::SeqCst) < 3 {
        assert!(t0.elapsed() < WAIT, "the later requests were never sent");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        sink.requests(),
        4,
        "no fifth request while the first of four is unanswered"
    );
    d.kill();
    gate.open();
    {
        let q =
            auditship::queue::Queue::open(&t.path().join("state/queue"), 1 << 20, &["s".into()])
                .unwrap();
        assert_eq!(
            q.cursor("s").unwrap(),
            0,
            "the cursor passed the first request, which was never answered"
        );
    }
    let d = Daemon::start(t.path(), &cfg);
    watch.wait_distinct(ids.len());
    stop(d);
    let dups = watch.duplicates_of(&ids);
    println!("answers out of order, kill -9: {dups} duplicates");
    assert_eq!(
        dups,
        3 * DEFAULT_MAX_EVENTS,
        "the three requests answered behind the unanswered one are sent again"
    );
    assert!(dups <= resend_bound(4, DEFAULT_MAX_EVENTS));
}

#[test]
fn a_5xx_on_one_of_several_requests_out_retries_that_one_and_loses_nothing() {
    let (t, file) = setup();
    write_chain(&file, 1, 0, 6_000, ZERO_HASH);
    let ids = sealed_ids(&file);
    let watch = Arc::new(Watch::default());
    let refused: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = {
        let (w, refused) = (watch.clone(), refused.clone());
        TestSink::with(move |n, records| {
            let _out = w.arrive();
            std::thread::sleep(Duration::from_millis(80));
            if n == 1 {
                let mut r = refused.lock().unwrap();
                r.extend(records.iter().map(|r| r["_auditship"]["id"].to_string()));
                return Reply::Status(503, None);
            }
            w.accept(records);
            Reply::Ok
        })
    };
    let cfg = config(
        t.path(),
        "http",
        &sink.addr,
        "max_in_flight = 4\nretry = { initial = \"50ms\", max_delay = \"200ms\" }",
    );
    let d = Daemon::start(t.path(), &cfg);
    watch.wait_distinct(ids.len());
    stop(d);
    assert_eq!(
        watch.duplicates_of(&ids),
        0,
        "only the refused request went again"
    );
    assert!(
        watch.max_out.load(Ordering::SeqCst) >= 2,
        "the 503 came while other requests were out"
    );
    assert!(!refused.lock().unwrap().is_empty());
    assert_eq!(
        sink.requests(),
        6 + 1,
        "six requests of a thousand records, one of them twice"
    );
}

/// Writes `n` chained events of about `size` bytes each (a `note` in `metadata` pads
/// them), so that batches close on bytes, just under a request's size.
fn write_big_chain(file: &Path, n: u64, size: usize) -> Vec<String> {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(std::fs::File::create(file).unwrap());
    let mut prev = ZERO_HASH.to_string();
    let mut ids = Vec::new();
    for seq in 0..n {
        let note = "lorem ipsum dolor sit amet ".repeat(size / 27);
        let e = format!(
            r#"{{"v":1,"id":"e-{seq}","seq":{seq},"timestamp":"2026-11-26T07:06:42.000Z","user_id":"dev@example.com","session_id":"s-1","host":"devbox","action":"tool_execution","resource":"/home/dev/src/file_{seq}.rs","outcome":"success","metadata":{{"tool_name":"Bash","note":"{note}"}},"prev_hash":"{prev}"}}"#
        );
        let sealed = auditship::audit::seal(&e, None).unwrap();
        w.write_all(&sealed.line).unwrap();
        ids.push(sealed.hash.clone());
        prev = sealed.hash;
    }
    w.flush().unwrap();
    ids
}

#[test]
fn a_backlog_ships_on_the_defaults_without_waiting_for_fuller_requests() {
    let (t, file) = setup();
    // 30,000 events of ~1.5 KiB: 45 MB, nearly three times the queue's 16 MiB, so the
    // reader pauses behind a full queue again and again, and every batch closes on
    // bytes, a little under the request's 1 MiB.
    let ids = write_big_chain(&file, 30_000, 1500);
    let watch = Arc::new(Watch::default());
    let sink = slow_sink(&watch, Duration::ZERO);
    let cfg = config(t.path(), "http", &sink.addr, "");
    let d = Daemon::start(t.path(), &cfg);
    watch.wait_distinct(ids.len());
    stop(d);
    assert_eq!(watch.duplicates_of(&ids), 0);
    let arrivals = watch.arrivals.lock().unwrap().clone();
    let gaps: Vec<Duration> = arrivals.windows(2).map(|w| w[1] - w[0]).collect();
    let longest = gaps.iter().max().copied().unwrap_or_default();
    let slow = gaps
        .iter()
        .filter(|g| **g >= Duration::from_millis(500))
        .count();
    println!(
        "backlog on the defaults: {} requests for {} events, longest gap {longest:?}",
        arrivals.len(),
        ids.len()
    );
    assert_eq!(
        slow, 0,
        "{slow} pauses of 500 ms or more between requests while the backlog lasted (longest {longest:?})"
    );
    // About 440 records fit a request: requests go out full or nearly, not one
    // per commit of a paused reader.
    assert!(
        arrivals.len() <= ids.len() / 200,
        "{} requests for {} events",
        arrivals.len(),
        ids.len()
    );
}

#[test]
fn a_trickle_is_still_batched_on_the_defaults() {
    let (t, file) = setup();
    let watch = Arc::new(Watch::default());
    let sink = slow_sink(&watch, Duration::ZERO);
    let cfg = config(t.path(), "http", &sink.addr, "");
    let d = Daemon::start(t.path(), &cfg);
    // One event every 100 ms for 3 s.
    const EVENTS: u64 = 30;
    let mut prev = ZERO_HASH.to_string();
    for seq in 0..EVENTS {
        prev = write_chain(&file, 1, seq, 1, &prev);
        std::thread::sleep(Duration::from_millis(100));
    }
    let ids = sealed_ids(&file);
    watch.wait_distinct(ids.len());
    stop(d);
    assert_eq!(watch.duplicates_of(&ids), 0);
    let requests = watch.arrivals.lock().unwrap().len() as u64;
    println!("a trickle of {EVENTS} events in 3 s: {requests} requests");
    assert!(
        requests * 3 <= EVENTS,
        "{requests} requests for {EVENTS} events written 100 ms apart: not batched"
    );
}

#[test]
fn hec_acks_of_several_requests_are_awaited_at_once_and_may_come_out_of_order() {
    const TOKEN: &str = "5f1e0d2c-3b4a-4958-8776-a5b4c3d2e1f0";
    let (t, file) = setup();
    write_chain(&file, 1, 0, 5_000, ZERO_HASH);
    let ids = sealed_ids(&file);
    // The first request's ackId is confirmed only at its sixth poll; the others' at
    // their second: the acks of later requests come first.
    let first_ids: Arc<Mutex<HashMap<u64, String>>> = Arc::default();
    let hec = {
        let first = first_ids.clone();
        HecServer::builder(TOKEN)
            .indexer_ack(true)
            .script(move |n, events| {
                if let Some(e) = events.first() {
                    let id = e["event"]["_auditship"]["id"].as_str().unwrap().to_string();
                    first.lock().unwrap().insert(n, id);
                }
                if n == 0 {
                    HecReply::AckAfterPolls(5)
                } else {
                    HecReply::AckAfterPolls(1)
                }
            })
            .start()
    };
    std::fs::write(t.path().join("hec.token"), TOKEN).unwrap();
    let extra = format!(
        "token_file = \"{}\"\nindexer_ack = true\nmax_in_flight = 4",
        t.path().join("hec.token").display()
    );
    let cfg = config(t.path(), "splunk_hec", &hec.url, &extra);
    let d = Daemon::start(t.path(), &cfg);
    let t0 = Instant::now();
    while hec.confirmed_ids().len() < ids.len() {
        assert!(
            t0.elapsed() < WAIT,
            "{} of {} records confirmed",
            hec.confirmed_ids().len(),
            ids.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    stop(d);
    let confirmed = hec.confirmed_ids();
    let want: HashSet<&String> = ids.iter().collect();
    assert_eq!(
        confirmed.keys().collect::<HashSet<_>>(),
        want,
        "nothing lost"
    );
    assert!(confirmed.values().all(|&n| n == 1), "nothing sent twice");
    let max = hec.max_pending_acks();
    println!("splunk_hec: at most {max} acks awaited at once");
    assert!(
        (2..=4).contains(&max),
        "{max} requests awaited their indexer acknowledgement at once"
    );
    // The order Splunk confirmed them in: request 1's before request 0's.
    let order: Vec<String> = hec
        .confirmed()
        .iter()
        .map(|e| e["event"]["_auditship"]["id"].as_str().unwrap().to_string())
        .collect();
    let first = first_ids.lock().unwrap();
    let at = |n: u64| order.iter().position(|id| *id == first[&n]).unwrap();
    assert!(at(1) < at(0), "the acks were not answered out of order");
}
