//! `auditship run` against the SIEM test servers of `siem`: the `splunk_hec`,
//! `elasticsearch` and `otlp` sinks end to end, with the real binary and real files.
//!
//! Records come from chained files in a watched directory; delivery is checked by
//! identity (`_auditship.id`, the `hash` of each written line). Failures are scripted
//! on the servers, so every test is deterministic; waits are bounded loops, never
//! sleeps standing in for assertions.

use crate::siem::*;
use crate::util::*;
use auditship::audit::ZERO_HASH;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const TOKEN: &str = "5f1e0d2c-3b4a-4958-8776-a5b4c3d2e1f0";
const WAIT: Duration = Duration::from_secs(30);
/// The batching and retry settings of every sink here, as `util::daemon_config` uses.
const RETRY: &str = "retry = { initial = \"50ms\", max_delay = \"500ms\" }";

pub fn batch(max_events: u32) -> String {
    format!("batch = {{ max_events = {max_events}, max_wait = \"50ms\" }}")
}

/// A daemon config as `util::daemon_config` writes it, with `sink` (TOML for one
/// `[[sink]]` table) instead of the HTTP test sink.
pub fn siem_config(dir: &Path, sources: &str, sink: &str) -> PathBuf {
    write_config(
        dir,
        &format!(
            "[agent]\nstate_dir = \"{state}\"\nhost = \"test-host\"\nrescan_interval = \"200ms\"\nshutdown_timeout = \"5s\"\nheartbeat_interval = \"0s\"\n\n{sources}\n\n{sink}\n{}",
            metrics_table(sink),
            state = dir.join("state").display()
        ),
    )
}

/// A `[[sink]]` table: `extra` holds the type-specific keys, one per line.
pub fn sink_table(name: &str, kind: &str, endpoint: &str, extra: &str) -> String {
    format!(
        "[[sink]]\nname = \"{name}\"\ntype = \"{kind}\"\nendpoint = \"{endpoint}\"\n{RETRY}\n{extra}\n"
    )
}

/// Writes a secret file (with a trailing newline, as editors leave it), mode 0600.
fn secret(dir: &Path, name: &str, value: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, format!("{value}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// A temp home with an `audit` directory; returns it and the stream file to write.
pub fn setup() -> (tempfile::TempDir, PathBuf) {
    let t = tempdir();
    let dir = t.path().join("audit");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("audit-1.jsonl");
    (t, file)
}

pub fn sources(t: &tempfile::TempDir) -> String {
    source_toml(&t.path().join("audit"))
}

/// Event `seq`'s time: distinct milliseconds, increasing, on 2026-11-26.
fn stamp(seq: u64) -> String {
    format!(
        "2026-11-26T07:{:02}:{:02}.{:03}Z",
        6 + seq / 60,
        seq % 60,
        (seq * 37 + 1) % 1000
    )
}

/// Nanoseconds since the epoch of a `YYYY-MM-DDTHH:MM:SS[.fraction]Z` time.
fn epoch_nanos(ts: &str) -> i128 {
    assert!(
        ts.ends_with('Z') && ts.len() >= 20,
        "not a UTC timestamp: {ts}"
    );
    let n = |r: std::ops::Range<usize>| ts[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Days from the civil date (H. Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let secs = ((days * 24 + n(11..13)) * 60 + n(14..16)) * 60 + n(17..19);
    let frac = &ts[19..ts.len() - 1];
    let nanos = match frac.strip_prefix('.') {
        None if frac.is_empty() => 0,
        Some(f) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{f:0<9}").parse::<i128>().unwrap()
        }
        _ => panic!("bad fraction in {ts}"),
    };
    i128::from(secs) * 1_000_000_000 + nanos
}

/// Waits until `cond` holds, polling every 20 ms. Fails at once, with the daemon's
/// log, if the daemon exits first (a config it refuses, a crash); after `limit`, fails
/// with the log too.
pub fn wait_for(d: &mut Daemon, limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        if let Ok(Some(status)) = d.child.try_wait() {
            std::thread::sleep(Duration::from_millis(50));
            panic!(
                "the daemon exited ({status}) before: {what}; its log:\n{}",
                d.stderr()
            );
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?}: {what}; the daemon's log:\n{}",
            d.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM; the daemon must exit 0 within 10 s.
pub fn stop_ok(d: Daemon) {
    let (code, stderr) = d.stop(Duration::from_secs(10));
    assert_eq!(code, Some(0), "daemon exit status; its log:\n{stderr}");
}

/// `auditship dead-letter list --json`, one object per dead letter.
pub fn dead_letters(home: &Path, cfg: &Path) -> Vec<Value> {
    let out = cmd(home)
        .args(["dead-letter", "list", "--json", "--config"])
        .arg(cfg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The `seq` of every dead-lettered record (`dead-letter list --records`).
fn dead_letter_seqs(home: &Path, cfg: &Path) -> Vec<u64> {
    let out = cmd(home)
        .args(["dead-letter", "list", "--records", "--config"])
        .arg(cfg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

/// How many of `seen` carried `id` in their body.
fn carrying(seen: &[Seen], id: &str) -> usize {
    // As a record's `_auditship.id` (raw JSON) or an OTLP `auditship.id` attribute;
    // not as the next event's `prev_hash`, which carries the same hex.
    let as_member = format!("\"id\":\"{id}\"");
    let as_attribute = format!("\"stringValue\":\"{id}\"");
    seen.iter()
        .filter(|s| {
            let body = String::from_utf8_lossy(&s.body);
            body.contains(&as_member) || body.contains(&as_attribute)
        })
        .count()
}

/// Asserts `got` has every id of `want` exactly once and nothing else.
fn assert_once(got: &HashMap<String, u32>, want: &[String]) {
    let want: HashSet<&String> = want.iter().collect();
    let keys: HashSet<&String> = got.keys().collect();
    assert_eq!(keys, want, "ids delivered vs written");
    let dup: Vec<_> = got.iter().filter(|(_, n)| **n != 1).collect();
    assert!(dup.is_empty(), "delivered more than once: {dup:?}");
}

/// Event `seq` -> its line as written.
fn written(file: &Path) -> HashMap<String, Value> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["hash"].as_str().unwrap().to_string(), v)
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// Splunk HEC
// ---------------------------------------------------------------------------------

#[test]
fn hec_ships_every_record_in_the_event_envelope_with_gzip_and_the_token() {
    let (t, file) = setup();
    write_chain_at(&file, 1, 0, 40, ZERO_HASH, &stamp);
    let ids = sealed_ids(&file);
    let lines = written(&file);
    let hec = HecServer::builder(TOKEN).indexes(&["audit"]).start();
    let token = secret(t.path(), "hec.token", TOKEN);
    let sink = sink_table(
        "hec",
        "splunk_hec",
        &hec.url,
        &format!(
            "token_file = \"{}\"\nindex = \"audit\"\ncompression = \"gzip\"\n{}",
            token.display(),
            batch(500)
        ),
    );
    let cfg = siem_config(t.path(), &sources(&t), &sink);
    let mut d = Daemon::start(t.path(), &cfg);
    wait_for(&mut d, WAIT, "HEC indexed all 40 events", || {
        hec.ids().len() >= 40
    });
    stop_ok(d);

    assert_once(&hec.ids(), &ids);
    for s in hec.event_requests() {
        assert_eq!(s.method, "POST");
        assert_eq!(s.path, "/services/collector/event");
        assert_eq!(
            s.header("authorization"),
            Some(format!("Splunk {TOKEN}").as_str())
        );
        assert!(s.gzip, "compression = gzip: Content-Encoding: gzip");
        assert_eq!(
            s.status,
            Some(200),
            "{}",
            String::from_utf8_lossy(&s.answer)
        );
    }
    for env in hec.indexed() {
        let event = &env["event"];
        let id = event["_auditship"]["id"].as_str().unwrap();
        let line = &lines[id];
        assert_eq!(
            event["hash"], line["hash"],
            "the event is the shipped record"
        );
        assert_eq!(event["seq"], line["seq"]);
        let time = env["time"]
            .as_f64()
            .unwrap_or_else(|| panic!("time is epoch seconds as a number: {env}"));
        let want = epoch_nanos(line["timestamp"].as_str().unwrap()) as f64 / 1e9;
        assert!(
            (time - want).abs() < 5e-4,
            "time {time} is the record's timestamp {want} with its milliseconds"
        );
        assert_eq!(env["host"], line["host"], "host is the record's host");
        assert_eq!(env["source"], "auditship");
        assert_eq!(env["sourcetype"], "_json");
        assert_eq!(env["index"], "audit");
    }
}

#[test]
fn hec_busy_answers_and_reset_connections_are_retried_and_lose_nothing() {
    let (t, file) = setup();
    write_chain(&file, 1, 0, 200, ZERO_HASH);
    let ids = sealed_ids(&file);
    let hec = HecServer::builder(TOKEN)
        .script(|n, _| match n {
            0 | 3 | 6 => HecReply::Busy,
            1 | 4 => HecReply::Reset,
            5 => HecReply::Internal,
            _ => HecReply::Normal,
        })
        .start();
    let token = secret(t.path(), "hec.token", TOKEN);
    let sink = sink_table(
        "hec",
        "splunk_hec",
        &hec.url,
        &format!("token_file = \"{}\"\n{}", token.display(), batch(50)),
    );
    let cfg = siem_config(t.path(), &sources(&t), &sink);
    let mut d = Daemon::start(t.path(), &cfg);
    wait_for(&mut d, WAIT, "HEC indexed all 200 events", || {
        hec.ids().len() >= 200
    });
    stop_ok(d);

    assert_once(&hec.ids(), &ids);
    let seen = hec.event_requests();
    let busy = seen.iter().filter(|s| s.status == Some(503)).count();
    let resets = seen.iter().filter(|s| s.status.is_none()).count();
    assert_eq!((busy, resets), (3, 2), "every scripted failure was met");
    for s in seen.iter().filter(|s| s.status == Some(503)) {
        assert_eq!(
            s.answer_json(),
            serde_json::json!({"text":"Server is busy","code":9})
        );
    }
    for env in hec.indexed() {
        assert!(
            env.get("index").is_none(),
            "no index configured, none sent: {env}"
        );
    }
    assert!(
        dead_letters(t.path(), &cfg).is_empty(),
        "nothing dead-lettered"
    );
}

#[test]
fn hec_invalid_data_format_dead_letters_the_batch_and_later_batches_ship() {
    let (t, file) = setup();
    let prev = write_chain(&file, 1, 0, 10, ZERO_HASH);
    let first = sealed_ids(&file);
    let hec = HecServer::builder(TOKEN)
        .script(|n, _| {
            if n == 0 {
                HecReply::InvalidFormat
            } else {
                HecReply::Normal
            }
        })
        .start();
    let token = secret(t.path(), "hec.token", TOKEN);
    let sink = sink_table(
        "hec",
        "splunk_hec",
        &hec.url,
        &format!("token_file = \"{}\"\n{}", token.display(), batch(500)),
    );
    let cfg = siem_config(t.path(), &sources(&t), &sink);
    let mut d = Daemon::start(t.path(), &cfg);
    wait_for(&mut d, WAIT, "the first batch reached HEC", || {
        hec.requests() >= 1
    });
    write_chain(&file, 1, 10, 5, &prev);
    wait_for(&mut d, WAIT, "the later batch was indexed", || {
        hec.ids().len() >= 5
    });
    stop_ok(d);

    let seqs: Vec<u64> = hec
        .records()
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [10, 11, 12, 13, 14], "later batches ship");
    let seen = hec.event_requests();
    for id in &first {
        assert_eq!(carrying(&seen, id), 1, "a rejected batch is not sent again");
    }
    let letters = dead_letters(t.path(), &cfg);
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["sink"], "hec");
    assert_eq!(letters[0]["events"], 10);
    let reason = letters[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("Invalid data format"),
        "HEC's text in the reason: {reason}"
    );
    assert_eq!(
        dead_letter_seqs(t.path(), &cfg),
        (0..10).collect::<Vec<u64>>()
    );
}

#[test]
fn hec_forbidden_is_retried_until_the_collector_accepts_the_token() {
    let (t, file) = setup();
    write_chain(&file, 1, 0, 10, ZERO_HASH);
    let ids = sealed_ids(&file);
    let hec = HecServer::start("a-token-the-daemon-does-not-have");
    let token = secret(t.path(), "hec.token", TOKEN);
    let sink = sink_table(
        "hec",
        "splunk_hec",
        &hec.url,
        &format!("token_file = \"{}\"\n{}", token.display(), batch(500)),
    );
    let cfg = siem_config(t.path(), &sources(&t), &sink);
    let mut d = Daemon::start(t.path(), &cfg);
    wait_for(&mut d, WAIT, "HEC answered 403", || {
        hec.event_requests().iter().any(|s| s.status == Some(403))
    });
    // The operator enables the daemon's token on the collector.
    hec.set_token(TOKEN);
    // Credential failures may back off longer than other retries (the http sink waits
    // 30 s unless told otherwise): allow for it.
    wait_for(
        &mut d,
        Duration::from_secs(90),
        "HEC indexed all 10 events",
        || hec.ids().len() >= 10,
    );
    stop_ok(d);

    assert_once(&hec.ids(), &ids);
    for s in hec
        .event_requests()
        .iter()
        .filter(|s| s.status == Some(403))
    {
        assert_eq!(
            s.answer_json(),
            serde_json::json!({"text":"Invalid token","code":4})
        );
    }
    assert!(
        dead_letters(t.path(), &cfg).is_empty(),
        "403 is fixed by configuration, never dead-lettered"
    );
}

/// The channel of an event or ack request: header, else query parameter.
fn channel_of(s: &Seen) -> Option<String> {
    s.header("x-splunk-request-channel")
        .map(str::to_string)
        .or_else(|| {
            let q = s.target.split_once('?')?.1;
            q.split('&')
                .find_map(|kv| kv.strip_prefix("channel=").map(str::to_string))
        })
}

#[test]
fn hec_indexer_ack_resends_a_batch_never_confirmed_after_ack_timeout() {
    let (t, file) = setup();
    write_chain_at(&file, 1, 0, 30, ZERO_HASH, &stamp);
    let ids = sealed_ids(&file);
    // The records of the request never confirmed (requests are answered in any
    // order: it is known by its records, not by its place in the log).
    let unconfirmed: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let hec = {
        let unconfirmed = unconfirmed.clone();
        HecServer::builder(TOKEN)
            .indexer_ack(true)
            .script(move |n, events| match n {
                0 => {
                    *unconfirmed.lock().unwrap() = events
                        .iter()
                        .map(|e| e["event"]["_auditship"]["id"].as_str().unwrap().to_string())
                        .collect();
                    HecReply::NeverAck
                }
                1 => HecReply::AckAfterPolls(1),
                _ => HecReply::Normal,
            })
            .start()
    };
    let token = secret(t.path(), "hec.token", TOKEN);
    let sink = sink_table(
        "hec",
        "splunk_hec",
        &hec.url,
        &format!(
            "token_file = \"{}\"\nindexer_ack = true\nack_timeout = \"2s\"\nsource = \"claude-code\"\nsourcetype = \"auditship:event\"\n{}",
            token.display(),
            batch(10)
        ),
    );
    let cfg = siem_config(t.path(), &sources(&t), &sink);
    let mut d = Daemon::start(t.path(), &cfg);
    wait_for(&mut d, WAIT, "every event confirmed by an ack", || {
        hec.confirmed_ids().len() >= 30
    });
    stop_ok(d);

    let confirmed = hec.confirmed_ids();
    let keys: HashSet<&String> = confirmed.keys().collect();
    assert_eq!(
        keys,
        ids.iter().collect::<HashSet<_>>(),
        "every record confirmed"
    );
    let seen = hec.seen();
    let events: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.path == "/services/collector/event")
        .collect();
    let mut channels = HashSet::new();
    for s in &events {
        let ch = channel_of(s).expect("event requests carry a channel");
        assert!(is_guid(&ch), "the channel is a GUID: {ch}");
        channels.insert(ch);
    }
    for s in seen.iter().filter(|s| s.path == "/services/collector/ack") {
        let ch = channel_of(s).expect("ack polls name their channel");
        assert!(
            channels.contains(&ch),
            "acks are polled on the channel that sent"
        );
    }
    for s in seen
        .iter()
        .filter(|s| s.path.starts_with("/services/collector"))
    {
        assert_eq!(
            s.status,
            Some(200),
            "{}",
            String::from_utf8_lossy(&s.answer)
        );
    }
    assert!(hec.ack_polls() > 0, "the daemon polled for its acks");
    // The first request's ackId was never confirmed: its events went again, and only
    // after ack_timeout.
    let first = unconfirmed.lock().unwrap().clone();
    assert!(!first.is_empty());
    for id in &first {
        let sends: Vec<&&Seen> = events
            .iter()
            .filter(|s| String::from_utf8_lossy(&s.body).contains(&format!("\"id\":\"{id}\"")))
            .collect();
        assert!(
            sends.len() >= 2,
            "{id} of the unconfirmed request was never resent"
        );
        let after = sends[1].at.duration_since(sends[0].at);
        assert!(
            after >= Duration::from_millis(1800),
            "resent {after:?} after the first send, before ack_timeout = 2s"
        );
    }
    for env in hec.confirmed() {
        assert_eq!(env["source"], "claude-code");
        assert_eq!(env["sourcetype"], "auditship:event");
    }
}

#[test]
fn hec_a_batch_accepted_but_not_confirmed_is_sent_again_after_a_crash() {
    let (t, file) = setup();
    write_chain(&file, 1, 0, 10, ZERO_HASH);
    let ids = sealed_ids(&file);
    let confirming = Arc::new(AtomicBool::new(false));
    let hec = {
        let confirming = confirming.clone();
        HecServer::builder(TOKEN)
            .indexer_ack(true)
            .script(move |_, _| {
                if confirming.load(Ordering::SeqCst) {
                    HecReply::Normal
                } else {
                    HecReply::NeverAck
                }
            })
            .start()
    };
    let token = secret(t.path(), "hec.token", TOKEN);
    let sink = sink_table(
        "hec",
        "splunk_hec",
        &hec.url,
        &format!(
            "token_file = \"{}\"\nindexer_ack = true\nack_timeout = \"60s\"\n{}",
            token.display(),
            batch(500)
        ),
    );
    let cfg = siem_config(t.path(), &sources(&t), &sink);
    let mut d = Daemon::start(t.path(), &cfg);
    wait_for(
        &mut d,
        WAIT,
        "the batch was accepted and its ack polled",
        || hec.ids().len() >= 10 && hec.ack_polls() >= 1,
    );
    // HEC said 200 with an ackId, but never confirmed it: the cursor must not have
    // moved, so a crash now means the batch goes again.
    d.kill();
    assert!(hec.confirmed_ids().is_empty());
    confirming.store(true, Ordering::SeqCst);
    let mut d = Daemon::start(t.path(), &cfg);
    wait_for(
        &mut d,
        WAIT,
        "every event confirmed after the restart",
        || hec.confirmed_ids().len() >= 10,
    );
    stop_ok(d);

    let indexed = hec.ids();
    for id in &ids {
        assert!(
            indexed.get(id).copied().unwrap_or(0) >= 2,
            "{id} was sent again after the restart"
        );
    }
    assert_once(&hec.confirmed_ids(), &ids);
}

// ---------------------------------------------------------------------------------
// Elasticsearch
// ---------------------------------------------------------------------------------

/// Event `seq` of 40: the first 20 on 2026-11-26 (UTC), the rest on 2026-11-27.
fn two_days(seq: u64) -> String {
    if seq < 20 {
        format!("2026-11-26T23:59:{:02}.{:03}Z", 30 + seq, seq * 11)
    } else {
        format!("2026-11-27T00:00:{:02}.{:03}Z", seq - 20, seq * 11)
    }
}

#[test]
fn es_stores_every_document_once_under_its_id_in_the_daily_index() {
    let (t, file) = setup();
    write_chain_at(&file, 1, 0, 40, ZERO_HASH, &two_days);
    let ids = sealed_ids(&file);
    let lines = written(&file);
    let es = EsServer::builder()
        .api_key("auditship-1", "ui2lp2axTNmsyakw9tvNnw")
        .start();
    let auth = EsAuth::ApiKey {
        id: "auditship-1".into(),
        key: "ui2lp2axTNmsyakw9tvNnw".into(),
    };
    let key = secret(t.path(), "es.key", &auth.encoded_api_key().unwrap());
    let sink = sink_table(
        "es",
        "elasticsearch",
        &es.url,
        &format!(
            "index = \"audit-%Y.%m.%d\"\napi_key_file = \"{}\"\ncompression = \"gzip\"\n{}",
            key.display(),
            batch(500)
        ),
    );
    let cfg = siem_config(t.path(), &sources(&t), &sink);
    let mut d = Daemon::start(t.path(), &cfg);
    wait_for(
        &mut d,
        WAIT,
        "Elasticsearch stored all 40 documents",
        || es.doc_count() >= 40,
    );
    stop_ok(d);

    let docs = es.docs();
    assert_eq!(docs.len(), 40);
    let mut got = HashMap::new();
    for ((index, id), stored) in &docs {
        assert_eq!(
            stored.doc["_auditship"]["id"],
            id.as_str(),
            "_id is _auditship.id"
        );
        let line = &lines[id];
        let day = if line["seq"].as_u64().unwrap() < 20 {
            "26"
        } else {
            "27"
        };
        assert_eq!(
            index,
            &format!("audit-2026.11.{day}"),
            "the index of the record's UTC date"
        );
        assert_eq!(stored.doc["hash"], line["hash"]);
        *got.entry(id.clone()).or_insert(0u32) += 1;
    }
    assert_once(&got, &ids);
    for s in es.seen() {
        assert_eq!((s.method.as_str(), s.path.as_str()), ("POST", "/_bulk"));
        let ct = s.header("content-type").unwrap_or("");
        assert!(
            ct.starts_with("application/x-ndjson"),
            "Content-Type {ct:?}"
        );
        assert_eq!(s.header("authorization"), auth.header().as_deref());
        assert!(s.gzip, "compression = gzip");
        assert_eq!(s.status, Some(200));
    }
    for b in es.bulks() {
        assert!(
            b.items.iter().all(|i| i.action == "create"),
            "create, never index"
        );
    }
    assert_eq!(
        es.item_statuses(),
        BTreeMap::from([(201, 40)]),
        "each document created once, nothing resent"
    );
}

#[test]
fn es_item_failures_retry_only_the_rejected_items_and_dead_letter_the_unparsable() {
    let (t, file) = setup();
    write_chain(&file, 1, 0, 10, ZERO_HASH);
    let ids = sealed_ids(&file);
    let es = EsServer::builder()
        .basic("auditship", "pa55-w0rd")
        .on_item(|it| match it.doc["seq"].as_u64() {
            Some(2 | 3) if it.attempt == 0 => Some(ItemFailure::Rejected),
            Some(4) => Some(ItemFailure::MapperParsing),
            _ => None,
        })
        .start();
    // Two of the ten are already stored (an earlier run shipped them): 409.
    for id in &ids[..2] {
        es.preload("audit-2026.11.26", id, serde_json::json!({"earlier": true}));
    }
    let password = secret(t.path(), "es.password", "pa55-w0rd");
    let sink = sink_table(
        "es",
        "elasticsearch",
        &es.url,
        &format!(
            "index = \"audit-%Y.%m.%d\"\nusername = \"auditship\"\npassword_file = \"{}\"\n{}",
            password.display(),
            batch(500)
        ),
    );
    let cfg = siem_config(t.path(), &sources(&t), &sink);
    let mut d = Daemon::start(t.path(), &cfg);
    wait_for(
        &mut d,
        WAIT,
        "all but the unparsable document stored",
        || es.doc_count() >= 9,
    );
    stop_ok(d);

    let bulks = es.bulks();
    assert_eq!(bulks.len(), 2, "the batch, then its rejected items alone");
    assert_eq!(bulks[0].items.len(), 10);
    let retried: HashSet<&str> = bulks[1].items.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(
        retried,
        HashSet::from([ids[2].as_str(), ids[3].as_str()]),
        "only the 429 items are sent again"
    );
    assert!(bulks[1].items.iter().all(|i| i.status == 201));
    assert_eq!(
        es.item_statuses(),
        BTreeMap::from([(201, 7), (400, 1), (409, 2), (429, 2)])
    );
    let basic = format!("Basic {}", base64(b"auditship:pa55-w0rd"));
    for s in es.seen() {
        assert_eq!(s.header("authorization"), Some(basic.as_str()));
    }
    let docs = es.docs();
    assert!(!docs.contains_key(&("audit-2026.11.26".to_string(), ids[4].clone())));
    let letters = dead_letters(t.path(), &cfg);
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["sink"], "es");
    assert_eq!(letters[0]["events"], 1);
    let reason = letters[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("mapper_parsing_exception")
            && reason.contains("failed to parse field [metadata]"),
        "the item's error type and reason: {reason}"
    );
    assert_eq!(dead_letter_seqs(t.path(), &cfg), [4]);
}

#[test]
fn es_a_lost_answer_and_429_503_are_resent_and_conflicts_count_as_delivered() {
    let (t, file) = setup();
    write_chain(&file, 1, 0, 20, ZERO_HASH);
    let ids = sealed_ids(&file);
    let es = EsServer::builder()
        .on_request(|n| match n {
            0 => EsReply::ProcessThenReset,
            1 => EsReply::TooManyRequests,
            2 => EsReply::Unavailable,
            _ => EsReply::Normal,
        })
        .start();
    let sink = sink_table(
        "es",
        "elasticsearch",
        &es.url,
        &format!("index = \"audit-%Y.%m.%d\"\n{}", batch(500)),
    );
    let cfg = siem_config(t.path(), &sources(&t), &sink);
    let mut d = Daemon::start(t.path(), &cfg);
    wait_for(
        &mut d,
        WAIT,
        "the batch was processed again after the failures",
        || es.bulks().len() >= 2,
    );
    stop_ok(d);

    let statuses: Vec<Option<u16>> = es.seen().iter().map(|s| s.status).collect();
    assert_eq!(statuses, [None, Some(429), Some(503), Some(200)]);
    let bulks = es.bulks();
    assert_eq!(bulks.len(), 2);
    assert!(
        bulks[1].items.iter().all(|i| i.status == 409),
        "already stored"
    );
    assert_eq!(es.item_statuses(), BTreeMap::from([(201, 20), (409, 20)]));
    let stored: HashMap<String, u32> = es.docs().keys().map(|(_, id)| (id.clone(), 1)).collect();
    assert_once(&stored, &ids);
    assert!(
        dead_letters(t.path(), &cfg).is_empty(),
        "409 is delivered, not rejected"
    );
}

#[test]
fn es_a_413_makes_the_daemon_split_the_batch() {
    const LIMIT: usize = 16 * 1024;
    let (t, file) = setup();
    write_chain(&file, 1, 0, 60, ZERO_HASH);
    let ids = sealed_ids(&file);
    let es = EsServer::builder().max_content_length(LIMIT).start();
    let sink = sink_table(
        "es",
        "elasticsearch",
        &es.url,
        &format!(
            "index = \"audit-%Y.%m.%d\"\ncompression = \"gzip\"\n{}",
            batch(500)
        ),
    );
    let cfg = siem_config(t.path(), &sources(&t), &sink);
    let mut d = Daemon::start(t.path(), &cfg);
    wait_for(&mut d, WAIT, "all 60 documents stored", || {
        es.doc_count() >= 60
    });
    stop_ok(d);

    let seen = es.seen();
    let too_large: Vec<&Seen> = seen.iter().filter(|s| s.status == Some(413)).collect();
    assert!(!too_large.is_empty(), "the whole batch was over the limit");
    assert!(
        too_large.iter().any(|s| s.wire_len < LIMIT),
        "the limit is on the decompressed body, though gzip made it small"
    );
    assert!(seen.iter().all(|s| matches!(s.status, Some(200 | 413))));
    assert_eq!(es.item_statuses(), BTreeMap::from([(201, 60)]), "each once");
    let stored: HashMap<String, u32> = es.docs().keys().map(|(_, id)| (id.clone(), 1)).collect();
    assert_once(&stored, &ids);
    assert!(
        dead_letters(t.path(), &cfg).is_empty(),
        "split, not rejected"
    );
}

#[test]
fn es_ecs_documents_carry_timestamp_and_event_action() {
    let (t, file) = setup();
    write_chain_at(&file, 1, 0, 10, ZERO_HASH, &stamp);
    let ids = sealed_ids(&file);
    let lines = written(&file);
    let es = EsServer::start();
    let sink = sink_table(
        "es",
        "elasticsearch",
        &es.url,
        &format!(
            "index = \"audit-%Y.%m.%d\"\nformat = \"ecs\"\n{}",
            batch(500)
        ),
    );
    let cfg = siem_config(t.path(), &sources(&t), &sink);
    let mut d = Daemon::start(t.path(), &cfg);
    wait_for(&mut d, WAIT, "all 10 ECS documents stored", || {
        es.doc_count() >= 10
    });
    stop_ok(d);

    let docs = es.docs();
    let stored: HashMap<String, u32> = docs.keys().map(|(_, id)| (id.clone(), 1)).collect();
    assert_once(&stored, &ids);
    for ((index, id), stored) in &docs {
        assert_eq!(index, "audit-2026.11.26");
        let line = &lines[id];
        let doc = &stored.doc;
        let ts = doc["@timestamp"]
            .as_str()
            .unwrap_or_else(|| panic!("ECS @timestamp: {doc}"));
        assert_eq!(
            epoch_nanos(ts) / 1_000_000,
            epoch_nanos(line["timestamp"].as_str().unwrap()) / 1_000_000,
            "@timestamp is the record's time"
        );
        let action = doc["event"]["action"]
            .as_str()
            .or_else(|| doc["event.action"].as_str());
        assert_eq!(action, line["action"].as_str(), "ECS event.action: {doc}");
    }
}

// ---------------------------------------------------------------------------------
// OTLP
// ---------------------------------------------------------------------------------

#[test]
fn otlp_ships_every_record_as_a_log_record() {
    let (t, file) = setup();
    write_chain_at(&file, 1, 0, 30, ZERO_HASH, &stamp);
    let ids = sealed_ids(&file);
    let lines = written(&file);
    let otlp = OtlpServer::builder().bearer(TOKEN).start();
    let token = secret(t.path(), "otlp.token", TOKEN);
    let sink = sink_table(
        "otlp",
        "otlp",
        &otlp.url,
        &format!(
            "token_file = \"{}\"\nheaders = {{ \"X-Scope-OrgID\" = \"acme\" }}\ncompression = \"gzip\"\n{}",
            token.display(),
            batch(500)
        ),
    );
    let cfg = siem_config(t.path(), &sources(&t), &sink);
    let mut d = Daemon::start(t.path(), &cfg);
    wait_for(&mut d, WAIT, "all 30 log records received", || {
        otlp.ids().len() >= 30
    });
    stop_ok(d);

    assert_once(&otlp.ids(), &ids);
    for s in otlp.seen() {
        assert_eq!((s.method.as_str(), s.path.as_str()), ("POST", "/v1/logs"));
        let ct = s.header("content-type").unwrap_or("");
        assert!(ct.starts_with("application/json"), "Content-Type {ct:?}");
        assert_eq!(
            s.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert_eq!(s.header("x-scope-orgid"), Some("acme"));
        assert!(s.gzip, "compression = gzip");
        assert_eq!(s.status, Some(200));
    }
    for e in otlp.exports() {
        assert_eq!(
            e.body["resourceLogs"].as_array().map(Vec::len),
            Some(1),
            "one resourceLogs per request"
        );
    }
    for log in otlp.accepted() {
        let resource = |k: &str| {
            log.resource_attribute(k)
                .and_then(|v| v["stringValue"].as_str())
                .map(str::to_string)
        };
        assert_eq!(resource("host.name").as_deref(), Some("test-host"));
        assert_eq!(resource("service.name").as_deref(), Some("auditship"));
        let id = log.attribute("auditship.id").unwrap()["stringValue"]
            .as_str()
            .unwrap();
        let line = &lines[id];
        let text = log.record["body"]["stringValue"]
            .as_str()
            .unwrap_or_else(|| panic!("body.stringValue: {}", log.record));
        let shipped: Value = serde_json::from_str(text).expect("the body is the record's JSON");
        assert_eq!(shipped["_auditship"]["id"], id);
        assert_eq!(shipped["hash"], line["hash"]);
        let nanos = epoch_nanos(line["timestamp"].as_str().unwrap()).to_string();
        assert_eq!(
            log.record["timeUnixNano"].as_str(),
            Some(nanos.as_str()),
            "timeUnixNano: the record's time as a decimal string"
        );
        let severity = log.record["severityNumber"].as_u64();
        assert!(
            severity.is_some_and(|n| (1..=24).contains(&n)),
            "severityNumber as an integer: {}",
            log.record
        );
    }
}

#[test]
fn otlp_throttling_and_unavailable_answers_are_retried_honouring_retry_after() {
    let (t, file) = setup();
    write_chain(&file, 1, 0, 20, ZERO_HASH);
    let ids = sealed_ids(&file);
    let otlp = OtlpServer::builder()
        .script(|n, _| match n {
            0 => OtlpReply::status(429, Some(1)),
            1 => OtlpReply::status(503, None),
            2 => OtlpReply::status(502, None),
            3 => OtlpReply::status(504, None),
            _ => OtlpReply::Ok,
        })
        .start();
    let sink = sink_table("otlp", "otlp", &otlp.url, &batch(500));
    let cfg = siem_config(t.path(), &sources(&t), &sink);
    let mut d = Daemon::start(t.path(), &cfg);
    wait_for(&mut d, WAIT, "all 20 log records received", || {
        otlp.ids().len() >= 20
    });
    stop_ok(d);

    assert_once(&otlp.ids(), &ids);
    let seen = otlp.seen();
    let statuses: Vec<Option<u16>> = seen.iter().map(|s| s.status).collect();
    assert_eq!(
        statuses,
        [Some(429), Some(503), Some(502), Some(504), Some(200)]
    );
    let waited = seen[1].at.duration_since(seen[0].at);
    assert!(
        waited >= Duration::from_millis(900),
        "Retry-After: 1 was honoured (waited {waited:?})"
    );
    assert!(dead_letters(t.path(), &cfg).is_empty());
}

#[test]
fn otlp_bad_request_is_dead_lettered_after_one_request() {
    let (t, file) = setup();
    let prev = write_chain(&file, 1, 0, 10, ZERO_HASH);
    let first = sealed_ids(&file);
    let otlp = OtlpServer::builder()
        .script(|n, _| {
            if n == 0 {
                OtlpReply::Status {
                    status: 400,
                    retry_after: None,
                    message: "log record 3: attribute value exceeds the limit".into(),
                }
            } else {
                OtlpReply::Ok
            }
        })
        .start();
    let sink = sink_table("otlp", "otlp", &otlp.url, &batch(500));
    let cfg = siem_config(t.path(), &sources(&t), &sink);
    let mut d = Daemon::start(t.path(), &cfg);
    wait_for(&mut d, WAIT, "the first batch reached the receiver", || {
        otlp.requests() >= 1
    });
    write_chain(&file, 1, 10, 5, &prev);
    wait_for(&mut d, WAIT, "the later batch was received", || {
        otlp.ids().len() >= 5
    });
    stop_ok(d);

    let seen = otlp.seen();
    for id in &first {
        assert_eq!(carrying(&seen, id), 1, "400 is not retried");
    }
    let mut seqs: Vec<u64> = otlp
        .accepted()
        .iter()
        .map(|l| {
            let r: Value =
                serde_json::from_str(l.record["body"]["stringValue"].as_str().unwrap()).unwrap();
            r["seq"].as_u64().unwrap()
        })
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, [10, 11, 12, 13, 14]);
    let letters = dead_letters(t.path(), &cfg);
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["sink"], "otlp");
    assert_eq!(letters[0]["events"], 10);
    assert!(
        letters[0]["reason"].as_str().unwrap().contains("400"),
        "{letters:?}"
    );
    assert_eq!(
        dead_letter_seqs(t.path(), &cfg),
        (0..10).collect::<Vec<u64>>()
    );
}

#[test]
fn otlp_partial_success_is_dead_lettered_with_the_server_message_and_not_resent() {
    const MESSAGE: &str = "3 log records were rejected: attribute value too long";
    let (t, file) = setup();
    let prev = write_chain(&file, 1, 0, 10, ZERO_HASH);
    let first = sealed_ids(&file);
    let otlp = OtlpServer::builder()
        .script(|n, _| {
            if n == 0 {
                OtlpReply::PartialSuccess {
                    rejected: 3,
                    message: MESSAGE.into(),
                }
            } else {
                OtlpReply::Ok
            }
        })
        .start();
    let sink = sink_table("otlp", "otlp", &otlp.url, &batch(500));
    let cfg = siem_config(t.path(), &sources(&t), &sink);
    let mut d = Daemon::start(t.path(), &cfg);
    wait_for(&mut d, WAIT, "the first batch reached the receiver", || {
        otlp.requests() >= 1
    });
    write_chain(&file, 1, 10, 5, &prev);
    wait_for(&mut d, WAIT, "the later batch was received", || {
        otlp.ids().len() >= 5
    });
    stop_ok(d);

    let seen = otlp.seen();
    for id in &first {
        assert_eq!(carrying(&seen, id), 1, "a partial success is not resent");
    }
    assert_eq!(otlp.exports()[0].rejected, Some(3));
    let letters = dead_letters(t.path(), &cfg);
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["sink"], "otlp");
    assert_eq!(letters[0]["events"], 10);
    let reason = letters[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains(MESSAGE),
        "the receiver's errorMessage: {reason}"
    );
}

#[test]
fn the_time_helpers_of_these_tests() {
    // `date -u -d 2026-11-26T07:06:42Z +%s` prints 1795676802.
    assert_eq!(
        epoch_nanos("2026-11-26T07:06:42Z"),
        1_795_676_802_000_000_000
    );
    assert_eq!(
        epoch_nanos("2026-11-26T07:06:42.25Z"),
        1_795_676_802_250_000_000
    );
    assert_eq!(
        epoch_nanos("2026-11-27T00:00:00.000000001Z") - epoch_nanos("2026-11-26T23:59:59.999Z"),
        1_000_001
    );
    let stamps: Vec<i128> = (0..60).map(|s| epoch_nanos(&stamp(s))).collect();
    assert!(stamps.windows(2).all(|w| w[0] < w[1]), "stamp() increases");
    let days: Vec<i128> = (0..40).map(|s| epoch_nanos(&two_days(s))).collect();
    assert!(days.windows(2).all(|w| w[0] < w[1]), "two_days() increases");
    assert!(two_days(19).starts_with("2026-11-26") && two_days(20).starts_with("2026-11-27"));
}
