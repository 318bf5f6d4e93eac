//! Integrity at the edges, end to end with the real binary: records the sinks cannot
//! read with a typed parse are not labelled intact (OTLP, syslog); a replayed line
//! ships under an id of its own, the same on every resend and re-read; a line over
//! `max_line_bytes` ships cut without breaking the chain, as `auditship verify` agrees.

use crate::pki::Pki;
use crate::siem::*;
use crate::siem_sinks::{batch, setup, siem_config, sink_table, sources, stop_ok, wait_for};
use crate::sink::{Reply, TestSink};
use crate::util::*;
use auditship::audit::{self, ZERO_HASH};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn append(file: &Path, line: &[u8]) {
    let mut f = std::fs::OpenOptions::new().append(true).open(file).unwrap();
    f.write_all(line).unwrap();
}

/// A sealed event of the stream `util::write_chain` writes, with `resource`, as a
/// line with its `\n`.
fn sealed(seq: u64, prev: &str, resource: &str) -> audit::Sealed {
    let e = format!(
        r#"{{"v":1,"id":"big-{seq}","seq":{seq},"timestamp":"2026-11-26T07:06:42.000Z","user_id":"dev1@example.com","session_id":"s-1","host":"devbox","action":"tool_execution","resource":"{resource}","outcome":"success","metadata":{{"tool_name":"Bash"}},"prev_hash":"{prev}"}}"#
    );
    audit::seal(&e, None).unwrap()
}

/// The `line` of every record's `_auditship`, with the record.
fn by_line(records: impl IntoIterator<Item = Value>) -> BTreeMap<u64, Value> {
    records
        .into_iter()
        .map(|r| (r["_auditship"]["line"].as_u64().unwrap(), r))
        .collect()
}

fn codes(record: &Value) -> Vec<String> {
    record["_auditship"]["integrity"]["problems"]
        .as_array()
        .unwrap_or_else(|| panic!("no problems list: {record}"))
        .iter()
        .map(|p| p["code"].as_str().unwrap().to_string())
        .collect()
}

// ---------------------------------------------------------------------------------
// A TLS syslog receiver (RFC 5425 octet counting) that keeps every message.

struct SyslogReceiver {
    endpoint: String,
    ca_file: std::path::PathBuf,
    messages: Arc<Mutex<Vec<String>>>,
}

impl SyslogReceiver {
    fn start(dir: &Path) -> SyslogReceiver {
        let pki = Pki::generate(dir);
        let config = Arc::new(pki.server_config(false));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("tls://{}", listener.local_addr().unwrap());
        let messages = Arc::new(Mutex::new(Vec::new()));
        let store = messages.clone();
        std::thread::spawn(move || {
            for sock in listener.incoming() {
                let Ok(sock) = sock else { continue };
                let (config, store) = (config.clone(), store.clone());
                std::thread::spawn(move || {
                    let conn = rustls::ServerConnection::new(config).unwrap();
                    let mut tls = rustls::StreamOwned::new(conn, sock);
                    let mut buf = Vec::new();
                    let mut chunk = vec![0u8; 64 << 10];
                    loop {
                        let n = match tls.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        buf.extend_from_slice(&chunk[..n]);
                        let mut at = 0;
                        while let Some(sp) = buf[at..].iter().position(|&b| b == b' ') {
                            let len: usize = std::str::from_utf8(&buf[at..at + sp])
                                .unwrap()
                                .parse()
                                .expect("an octet count");
                            let start = at + sp + 1;
                            if buf.len() < start + len {
                                break;
                            }
                            let msg = String::from_utf8(buf[start..start + len].to_vec())
                                .expect("a UTF-8 message");
                            store.lock().unwrap().push(msg);
                            at = start + len;
                        }
                        buf.drain(..at);
                    }
                });
            }
        });
        SyslogReceiver {
            endpoint,
            ca_file: pki.ca_file,
            messages,
        }
    }

    /// `(PRI, structured data, shipped record)` of every message.
    fn received(&self) -> Vec<(u32, String, Value)> {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .map(|m| {
                let pri = m[1..m.find('>').unwrap()].parse().unwrap();
                let sd_start = m.find("[auditship@32473").expect("structured data");
                let sd_end = m.find("] {").expect("end of structured data");
                let record = serde_json::from_str(&m[sd_end + 2..]).expect("MSG is JSON");
                (pri, m[sd_start..=sd_end].to_string(), record)
            })
            .collect()
    }
}

#[test]
fn records_a_typed_parse_cannot_read_are_not_labelled_intact_by_otlp_or_syslog() {
    let (t, file) = setup();
    let prev = write_chain(&file, 1, 0, 3, ZERO_HASH);
    // Line 4: `seq` is a string. Line 5: a member twice. Neither joins the chain.
    let next = String::from_utf8(sealed(3, &prev, "/x").line).unwrap();
    let seq_string = next.replacen("\"seq\":3", "\"seq\":\"3\"", 1);
    let duplicate = next.replacen(
        "\"outcome\":\"success\"",
        "\"outcome\":\"success\",\"outcome\":\"success\"",
        1,
    );
    assert!(seq_string != next && duplicate != next);
    append(&file, seq_string.as_bytes());
    append(&file, duplicate.as_bytes());
    write_chain(&file, 1, 3, 2, &prev);

    let otlp = OtlpServer::start();
    let syslog = SyslogReceiver::start(t.path());
    let sinks = format!(
        "{}{}",
        sink_table("otlp", "otlp", &otlp.url, &batch(100)),
        sink_table(
            "syslog",
            "syslog",
            &syslog.endpoint,
            &format!(
                "{}\ntls = {{ ca_file = \"{}\" }}",
                batch(100),
                syslog.ca_file.display()
            ),
        )
    );
    let cfg = siem_config(t.path(), &sources(&t), &sinks);
    let mut d = Daemon::start(t.path(), &cfg);
    wait_for(&mut d, WAIT, "7 records at each sink", || {
        otlp.accepted().len() >= 7 && syslog.received().len() >= 7
    });
    stop_ok(d);

    let bad = [4u64, 5];
    let want_codes = |line: u64| match line {
        4 => vec!["schema".to_string()],
        5 => vec!["not_canonicalizable".to_string()],
        _ => vec![],
    };
    let logs = otlp.accepted();
    assert_eq!(logs.len(), 7);
    for log in &logs {
        let body: Value =
            serde_json::from_str(log.record["body"]["stringValue"].as_str().unwrap()).unwrap();
        let line = body["_auditship"]["line"].as_u64().unwrap();
        assert_eq!(codes(&body), want_codes(line), "line {line}");
        let intact = !bad.contains(&line);
        assert_eq!(body["_auditship"]["integrity"]["ok"], intact, "line {line}");
        assert_eq!(
            log.attribute("auditship.integrity_ok"),
            Some(&serde_json::json!({"boolValue": intact})),
            "OTLP line {line}"
        );
        let (num, text) = if intact { (9, "INFO") } else { (17, "ERROR") };
        assert_eq!(log.record["severityNumber"], num, "OTLP line {line}");
        assert_eq!(log.record["severityText"], text, "OTLP line {line}");
    }

    let messages = syslog.received();
    assert_eq!(messages.len(), 7);
    for (pri, sd, record) in &messages {
        let line = record["_auditship"]["line"].as_u64().unwrap();
        assert_eq!(codes(record), want_codes(line), "line {line}");
        let intact = !bad.contains(&line);
        assert_eq!(pri / 8, 13, "facility: log audit");
        assert_eq!(
            pri % 8,
            if intact { 6 } else { 3 },
            "syslog severity, line {line}"
        );
        let label = if intact {
            "integrity=\"ok\""
        } else {
            "integrity=\"problem\""
        };
        assert!(sd.contains(label), "line {line}: {sd}");
    }
}

// ---------------------------------------------------------------------------------

/// `_auditship.id` by line, of the records `sink` accepted.
fn ids_by_line(records: Vec<Value>) -> BTreeMap<u64, String> {
    by_line(records)
        .into_iter()
        .map(|(n, r)| (n, r["_auditship"]["id"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn a_replayed_line_ships_under_an_id_of_its_own_the_same_after_a_kill_and_a_reread() {
    let (t, file) = setup();
    let dir = t.path().join("audit");
    write_chain(&file, 1, 0, 5, ZERO_HASH);
    // Line 6: a copy of line 2, replayed at the end.
    let text = std::fs::read_to_string(&file).unwrap();
    let original = text.lines().nth(1).unwrap().to_string();
    append(&file, format!("{original}\n").as_bytes());
    let hashes = sealed_ids(&file);
    let config = |endpoint: &str| daemon_config(t.path(), &source_toml(&dir), endpoint, "");

    // First run: the sink sees every record but refuses them; then kill -9.
    let refused = Arc::new(Mutex::new(Vec::<Value>::new()));
    let seen = refused.clone();
    let failing = TestSink::with(move |_, records| {
        seen.lock().unwrap().extend_from_slice(records);
        Reply::Status(500, None)
    });
    let mut d = Daemon::start(t.path(), &config(&failing.addr));
    wait_for(&mut d, WAIT, "the refusing sink saw all 6 records", || {
        refused.lock().unwrap().len() >= 6
    });
    d.kill();
    let first = ids_by_line(refused.lock().unwrap().clone());

    // Second run, after the crash: the records are sent again and accepted.
    let sink = TestSink::start();
    let mut d = Daemon::start(t.path(), &config(&sink.addr));
    wait_for(&mut d, WAIT, "6 records accepted", || sink.accepted() >= 6);
    stop_ok(d);
    let records = by_line(sink.records());
    let second = ids_by_line(sink.records());

    // Third run from nothing: every line read again from the file.
    std::fs::remove_dir_all(t.path().join("state")).unwrap();
    let reread = TestSink::start();
    let mut d = Daemon::start(t.path(), &config(&reread.addr));
    wait_for(&mut d, WAIT, "6 records re-read", || reread.accepted() >= 6);
    stop_ok(d);
    let third = ids_by_line(reread.records());

    assert_eq!(records.len(), 6);
    for line in 1..=5u64 {
        assert!(codes(&records[&line]).is_empty(), "line {line}");
        assert_eq!(
            second[&line],
            hashes[line as usize - 1],
            "a clean line's id is its hash"
        );
    }
    assert_eq!(codes(&records[&6]), ["chain_break", "seq_gap"]);
    assert_eq!(records[&6]["hash"], records[&2]["hash"], "the same event");
    assert_ne!(
        second[&6], second[&2],
        "the replayed copy has an id of its own"
    );
    assert_eq!(first, second, "the same ids after kill -9");
    assert_eq!(second, third, "the same ids when read again from the file");
    let distinct: std::collections::HashSet<_> = second.values().collect();
    assert_eq!(distinct.len(), 6);
}

#[test]
fn elasticsearch_stores_a_replayed_line_beside_its_original() {
    let (t, file) = setup();
    write_chain(&file, 1, 0, 3, ZERO_HASH);
    let written = std::fs::read_to_string(&file).unwrap();
    append(
        &file,
        format!("{}\n", written.lines().nth(1).unwrap()).as_bytes(),
    );
    let es = EsServer::start();
    let sink = sink_table("es", "elasticsearch", &es.url, &batch(100));
    let cfg = siem_config(t.path(), &sources(&t), &sink);
    let mut d = Daemon::start(t.path(), &cfg);
    wait_for(&mut d, WAIT, "4 documents stored", || es.doc_count() >= 4);
    stop_ok(d);
    assert_eq!(
        es.item_statuses().get(&409),
        None,
        "nothing taken for a duplicate"
    );
    let docs: Vec<Value> = es.docs().into_values().map(|s| s.doc).collect();
    assert_eq!(docs.len(), 4);
    let replay = docs
        .iter()
        .find(|d| d["_auditship"]["line"] == 4)
        .expect("the replayed line is stored");
    assert_eq!(codes(replay), ["chain_break", "seq_gap"]);
}

// ---------------------------------------------------------------------------------

#[test]
fn a_line_over_max_line_bytes_ships_cut_and_the_chain_goes_on() {
    let (t, file) = setup();
    let dir = t.path().join("audit");
    // Three long events, each followed by a normal one: one that fits the read
    // buffer, one longer than it (scanned while it streams), and one longer than it
    // with an escape JCS does not write (not canonical: read again whole).
    let mut prev = write_chain(&file, 1, 0, 1, ZERO_HASH);
    let mut long = Vec::new();
    for (i, size) in [3_000usize, 600 << 10, 600 << 10].into_iter().enumerate() {
        let seq = 1 + 2 * i as u64;
        let s = sealed(seq, &prev, &"r".repeat(size));
        let mut line = s.line.clone();
        if i == 2 {
            line = String::from_utf8(line)
                .unwrap()
                .replacen("\"resource\":\"r", "\"resource\":\"\\u0072", 1)
                .into_bytes();
        }
        append(&file, &line);
        long.push((line, seq));
        prev = write_chain(&file, 1, seq + 1, 1, &s.hash);
    }
    write_chain(&file, 1, 7, 2, &prev);
    let lines = std::fs::read(&file).unwrap().split(|&b| b == b'\n').count() - 1;
    assert_eq!(lines, 9);

    let sink = TestSink::start();
    let cfg = daemon_config(
        t.path(),
        &format!("{}max_line_bytes = 1024\n", source_toml(&dir)),
        &sink.addr,
        "",
    );
    let mut d = Daemon::start(t.path(), &cfg);
    wait_for(&mut d, WAIT, "9 records", || sink.accepted() >= 9);
    stop_ok(d);
    let records = by_line(sink.records());
    assert_eq!(records.len(), 9);
    let long_lines = [2u64, 4, 6];
    for (n, r) in &records {
        let m = &r["_auditship"];
        if let Some(i) = long_lines.iter().position(|l| l == n) {
            let (full, _) = &long[i];
            let full = &full[..full.len() - 1];
            assert_eq!(codes(r), ["line_too_long"], "line {n}: only cut");
            assert_eq!(m["integrity"]["ok"], false);
            assert_eq!(m["size"], full.len(), "line {n}: full length");
            assert_eq!(
                m["sha256"],
                audit::sha256_hex(full),
                "line {n}: full digest"
            );
            assert_eq!(
                m["raw"].as_str().unwrap().as_bytes(),
                &full[..1024],
                "line {n}"
            );
        } else {
            assert!(codes(r).is_empty(), "line {n}: {}", m["integrity"]);
            assert_eq!(m["integrity"]["ok"], true, "line {n}");
        }
    }

    // `auditship verify` reads the same file the same way: intact.
    let (code, doc) = verify_json(&[dir.as_os_str()]);
    assert_eq!(
        (code, &doc["problems"]),
        (0, &serde_json::json!([])),
        "{doc}"
    );
    assert_eq!(doc["events"], 9);

    // Long lines that were tampered with say so, besides being cut (one held whole,
    // one scanned); the chain still goes on after them.
    let text = std::fs::read_to_string(&file).unwrap();
    let tampered_dir = t.path().join("tampered");
    std::fs::create_dir_all(&tampered_dir).unwrap();
    let edited: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| match i + 1 {
            2 | 4 => l.replacen("rrrr", "rsrr", 1),
            _ => l.to_string(),
        })
        .collect();
    std::fs::write(tampered_dir.join("audit-1.jsonl"), edited.join("\n") + "\n").unwrap();
    let sink = TestSink::start();
    let cfg = daemon_config(
        t.path(),
        &format!("{}max_line_bytes = 1024\n", source_toml(&tampered_dir)),
        &sink.addr,
        "",
    );
    std::fs::remove_dir_all(t.path().join("state")).unwrap();
    let mut d = Daemon::start(t.path(), &cfg);
    wait_for(&mut d, WAIT, "9 records", || sink.accepted() >= 9);
    stop_ok(d);
    let got: HashMap<u64, Vec<String>> = by_line(sink.records())
        .iter()
        .map(|(n, r)| (*n, codes(r)))
        .collect();
    let (code, doc) = verify_json(&[tampered_dir.as_os_str()]);
    assert_eq!(code, 1);
    let found: Vec<(u64, String)> = triples(&doc).into_iter().map(|(_, n, c)| (n, c)).collect();
    assert_eq!(
        found,
        [
            (2, "hash_mismatch".to_string()),
            (4, "hash_mismatch".to_string())
        ]
    );
    for n in 1..=9u64 {
        let want: &[&str] = match n {
            2 | 4 => &["hash_mismatch", "line_too_long"],
            6 => &["line_too_long"],
            _ => &[],
        };
        assert_eq!(got[&n], want, "line {n}");
    }
}

#[test]
fn verify_and_the_daemon_agree_on_lines_over_64_mib() {
    let (t, file) = setup();
    let dir = t.path().join("audit");
    let huge = "r".repeat((64 << 20) + 1000);
    // Line 2: canonical, checked while it streams. Line 4: not canonical (an escape),
    // too long to hold whole: not checked by either, so line 5 cannot link to it.
    let prev = write_chain(&file, 1, 0, 1, ZERO_HASH);
    let s1 = sealed(1, &prev, &huge);
    append(&file, &s1.line);
    let prev = write_chain(&file, 1, 2, 1, &s1.hash);
    let s3 = sealed(3, &prev, &huge);
    let escaped = String::from_utf8(s3.line).unwrap().replacen(
        "\"resource\":\"r",
        "\"resource\":\"\\u0072",
        1,
    );
    append(&file, escaped.as_bytes());
    drop(escaped);
    write_chain(&file, 1, 4, 1, &s3.hash);

    let (code, doc) = verify_json(&[dir.as_os_str()]);
    let found: Vec<(u64, String)> = triples(&doc).into_iter().map(|(_, n, c)| (n, c)).collect();
    let want = [
        (4, "invalid_json".to_string()),
        (5, "chain_break".to_string()),
        (5, "seq_gap".to_string()),
    ];
    assert_eq!((code, found.as_slice()), (1, &want[..]), "{doc}");

    let sink = TestSink::start();
    let cfg = daemon_config(t.path(), &source_toml(&dir), &sink.addr, "");
    let mut d = Daemon::start(t.path(), &cfg);
    wait_for(&mut d, Duration::from_secs(60), "5 records", || {
        sink.accepted() >= 5
    });
    stop_ok(d);
    let got: BTreeMap<u64, Vec<String>> = by_line(sink.records())
        .iter()
        .map(|(n, r)| (*n, codes(r)))
        .collect();
    let want: BTreeMap<u64, Vec<String>> = [
        (1, vec![]),
        (2, vec!["line_too_long"]),
        (3, vec![]),
        (4, vec!["invalid_json", "line_too_long"]),
        (5, vec!["chain_break", "seq_gap"]),
    ]
    .into_iter()
    .map(|(n, c)| (n, c.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(
        got, want,
        "the daemon finds what verify finds, and the cuts"
    );
}
