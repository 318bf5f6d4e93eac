//! `auditship report` end to end, on a fixed dataset written here: four people on four
//! hosts over three days (a stream with a gzipped day beside its live files, a
//! stream whose host falls silent for a day, a stream tampered with, and a host known
//! only from a SIEM export that also holds its daemon's heartbeats and copies of
//! another stream's events). The JSON report must equal its golden copy, and its
//! totals must equal a count made here from the generated events alone; the HTML is
//! rendered by headless Chromium, which must paint a page that is not blank; the CSV
//! lists every event of the period.
//!
//! `AUDITSHIP_BLESS=1 cargo test --test integration report` rewrites the golden copy
//! (tests/golden/report.json); review its diff before committing it.

use crate::util::*;
use auditship::audit::{self, ZERO_HASH};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FROM: &str = "2026-11-02";
const TO: &str = "2026-11-05";
const DAY_MS: i64 = 86_400_000;
const MINUTE_MS: i64 = 60_000;
/// 2026-11-01T00:00:00Z.
const NOV_1: i64 = 1_793_491_200_000;

/// One hook call of the script every person repeats: (hook event, action, outcome,
/// tool, resource).
const SCRIPT: [(&str, &str, &str, &str, &str); 12] = [
    ("SessionStart", "session_start", "success", "", "/work/app"),
    (
        "UserPromptSubmit",
        "user_prompt",
        "success",
        "",
        "/work/app",
    ),
    (
        "PreToolUse",
        "file_read",
        "attempted",
        "Read",
        "/work/app/customers/export.csv",
    ),
    (
        "PostToolUse",
        "file_read",
        "success",
        "Read",
        "/work/app/customers/export.csv",
    ),
    (
        "PreToolUse",
        "tool_execution",
        "attempted",
        "Bash",
        "cargo test",
    ),
    (
        "PostToolUseFailure",
        "tool_execution",
        "failure",
        "Bash",
        "cargo test",
    ),
    (
        "PreToolUse",
        "file_write",
        "attempted",
        "Edit",
        "/work/app/src/lib.rs",
    ),
    (
        "PermissionDenied",
        "file_write",
        "denied",
        "Edit",
        "/work/app/src/lib.rs",
    ),
    (
        "PreToolUse",
        "api_call",
        "attempted",
        "WebFetch",
        "https://docs.example.com/x",
    ),
    (
        "PostToolUse",
        "api_call",
        "success",
        "WebFetch",
        "https://docs.example.com/x",
    ),
    ("ai_decision", "ai_decision", "success", "", "migration"),
    ("SessionEnd", "session_end", "success", "", "/work/app"),
];

fn rfc3339(ms: i64) -> String {
    auditship::report::period::format_ms(ms)
}

/// What the test knows of the events it wrote, counted without auditship.
#[derive(Default)]
struct Truth {
    /// Per user: outcome → events in the period.
    outcomes: BTreeMap<String, BTreeMap<String, u64>>,
    /// Per user: sessions with an event in the period.
    sessions: BTreeMap<String, BTreeSet<String>>,
    /// Events in the period (each once).
    events: u64,
    /// `hash` of every event counted.
    counted: HashSet<String>,
}

impl Truth {
    fn count(&mut self, event: &Value, hash: &str) {
        let ms =
            auditship::report::period::timestamp_ms(event["timestamp"].as_str().unwrap()).unwrap();
        let (from, to) = (NOV_1 + DAY_MS, NOV_1 + 4 * DAY_MS);
        if ms < from || ms >= to || !self.counted.insert(hash.to_string()) {
            return;
        }
        let user = event["user_id"].as_str().unwrap().to_string();
        *self
            .outcomes
            .entry(user.clone())
            .or_default()
            .entry(event["outcome"].as_str().unwrap().to_string())
            .or_default() += 1;
        self.sessions
            .entry(user)
            .or_default()
            .insert(event["session_id"].as_str().unwrap().to_string());
        self.events += 1;
    }
}

/// A person's stream: events sealed into a chain, one file per UTC day.
struct Person {
    user: &'static str,
    host: &'static str,
    seq: u64,
    prev: String,
    step: usize,
    cycle: u64,
}

impl Person {
    fn new(user: &'static str, host: &'static str) -> Person {
        Person {
            user,
            host,
            seq: 0,
            prev: ZERO_HASH.to_string(),
            step: 0,
            cycle: 0,
        }
    }

    /// Passes over the next step of the script: that hook call was never recorded.
    fn skip(&mut self) {
        self.step += 1;
    }

    /// The next event of the script at `ms`, sealed: (event, line, hash).
    fn next(&mut self, ms: i64) -> (Value, Vec<u8>, String) {
        let (hook, action, outcome, tool, resource) = SCRIPT[self.step];
        let name = self.user.split('@').next().unwrap();
        let mut metadata = json!({"source_event": hook});
        if !tool.is_empty() {
            metadata["tool_name"] = tool.into();
            // Pre and post of one call share their id.
            metadata["tool_use_id"] =
                format!("toolu_{name}_{}_{}", self.cycle, self.step / 2).into();
        }
        let mut tags = vec!["SOC2", "ISO27001"];
        if resource.contains("customers") {
            tags.push("GDPR");
        }
        let mut event = json!({
            "v": 1,
            "id": format!("{name}-{}", self.seq),
            "seq": self.seq,
            "timestamp": rfc3339(ms),
            "user_id": self.user,
            "session_id": format!("{name}-session-{}", self.cycle),
            "host": self.host,
            "action": action,
            "resource": resource,
            "outcome": outcome,
            "metadata": metadata,
            "compliance_tags": tags,
            "prev_hash": self.prev,
        });
        if action == "ai_decision" {
            event["decision"] = json!({
                "decision": "run the migration on staging first",
                "confidence": 0.8,
                "factors_considered": ["risk"],
                "alternative_options": ["production"],
            });
        }
        let sealed = audit::seal(&event.to_string(), None).unwrap();
        self.prev = sealed.hash.clone();
        self.seq += 1;
        self.step += 1;
        if self.step == SCRIPT.len() {
            self.step = 0;
            self.cycle += 1;
        }
        (event, sealed.line, sealed.hash)
    }
}

/// The dataset, written under `root`; returns what the test knows of it.
struct Dataset {
    truth: Truth,
    /// The tampered event: (stream dir, file, line).
    tampered: (String, String, u64),
}

/// Appends `line` to the day file of `ms` in `dir`.
fn append(dir: &Path, ms: i64, line: &[u8]) {
    let date = &rfc3339(ms)[..10];
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("audit-{date}.jsonl")))
        .unwrap();
    f.write_all(line).unwrap();
}

/// Replaces `path` by its gzip copy `path.gz` (stored blocks: the same bytes whatever
/// the compressor's version, so the golden digest holds).
fn gzip(path: &Path) {
    let data = std::fs::read(path).unwrap();
    let gz = std::fs::File::create(format!("{}.gz", path.display())).unwrap();
    let mut enc = flate2::write::GzEncoder::new(gz, flate2::Compression::none());
    enc.write_all(&data).unwrap();
    enc.finish().unwrap();
    std::fs::remove_file(path).unwrap();
}

/// A shipped record: the event's text with `_auditship` spliced in as its last member.
fn shipped(
    line: &[u8],
    id: &str,
    host: &str,
    source: &str,
    stream: &str,
    file: &str,
    n: u64,
) -> String {
    let text = std::str::from_utf8(line).unwrap().trim_end();
    let meta = json!({
        "v": 1, "id": id, "source": source, "stream": stream, "file": file, "line": n,
        "offset": n * 1000, "host": host, "agent_version": "0.1.0",
        "received_at": "2026-11-05T00:00:00.000Z",
        "integrity": {"ok": true, "problems": []},
    });
    format!("{},\"_auditship\":{meta}}}", &text[..text.len() - 1])
}

fn write_dataset(root: &Path) -> Dataset {
    let mut truth = Truth::default();
    let streams = root.join("streams");
    let mut export = Vec::new();

    // alice on h1: every 4 minutes from 2026-11-01T20:00 to 2026-11-05T01:00; her first
    // day gzipped beside the live files. Her 2026-11-02 events also reach the export.
    let dir = streams.join("h1-alice");
    std::fs::create_dir_all(&dir).unwrap();
    let mut alice = Person::new("alice@example.com", "h1");
    let mut ms = NOV_1 + 20 * 60 * MINUTE_MS;
    let mut n = 0;
    while ms <= NOV_1 + 4 * DAY_MS + 60 * MINUTE_MS {
        let (event, line, hash) = alice.next(ms);
        append(&dir, ms, &line);
        truth.count(&event, &hash);
        if rfc3339(ms).starts_with("2026-11-02") {
            export.push(shipped(
                &line,
                &hash,
                "h1",
                "homes",
                "/home/alice/.claude/audit",
                "/home/alice/.claude/audit/audit-2026-11-02.jsonl",
                n,
            ));
            n += 1;
        }
        ms += 4 * MINUTE_MS;
    }
    gzip(&dir.join("audit-2026-11-01.jsonl"));

    // bob on h2: 2026-11-02 and 2026-11-04 only; nothing at all on the 3rd.
    let dir = streams.join("h2-bob");
    std::fs::create_dir_all(&dir).unwrap();
    let mut bob = Person::new("bob@example.com", "h2");
    for day in [1, 3] {
        let mut ms = NOV_1 + day * DAY_MS + 2 * MINUTE_MS;
        while ms < NOV_1 + (day + 1) * DAY_MS {
            let (event, line, hash) = bob.next(ms);
            append(&dir, ms, &line);
            truth.count(&event, &hash);
            ms += 4 * MINUTE_MS;
        }
    }

    // carol on h3: the whole period; one call's closing record never written, and
    // one event's resource edited afterwards (its counts stay as written).
    let dir = streams.join("h3-carol");
    std::fs::create_dir_all(&dir).unwrap();
    let mut carol = Person::new("carol@example.com", "h3");
    let mut ms = NOV_1 + DAY_MS;
    while ms < NOV_1 + 4 * DAY_MS {
        if carol.cycle == 5 && carol.step == 9 {
            carol.skip();
        }
        let (event, line, hash) = carol.next(ms);
        append(&dir, ms, &line);
        truth.count(&event, &hash);
        ms += 4 * MINUTE_MS;
    }
    let file = dir.join("audit-2026-11-03.jsonl");
    let text = std::fs::read_to_string(&file).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let target = (10..lines.len())
        .find(|&i| lines[i].contains("\"resource\":\"/work/app/src/lib.rs\""))
        .unwrap();
    lines[target] = lines[target].replace("/work/app/src/lib.rs", "/work/app/src/main.rs");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();

    // dave on h4: known only from the SIEM, an event every 30 minutes; his daemon's
    // heartbeats every 5 minutes show the host up in between. One record sent twice.
    let mut dave = Person::new("dave@example.com", "h4");
    let mut ms = NOV_1 + DAY_MS + 10 * MINUTE_MS;
    let mut n = 0;
    while ms < NOV_1 + 4 * DAY_MS {
        let (event, line, hash) = dave.next(ms);
        truth.count(&event, &hash);
        let record = shipped(
            &line,
            &hash,
            "h4",
            "homes",
            "/home/dave/.claude/audit",
            "/home/dave/.claude/audit/audit.jsonl",
            n + 1,
        );
        if n == 7 {
            export.push(record.clone());
        }
        export.push(record);
        n += 1;
        ms += 30 * MINUTE_MS;
    }
    let mut ms = NOV_1 + DAY_MS;
    while ms < NOV_1 + 4 * DAY_MS {
        let beat = json!({
            "v": 1, "id": format!("beat-{ms}"), "timestamp": rfc3339(ms), "user_id": "auditship",
            "session_id": "run-1", "host": "h4", "action": "agent_event", "resource": "auditship",
            "outcome": "success", "metadata": {"source_event": "heartbeat", "version": "0.1.0"},
        });
        let text = beat.to_string();
        let id = audit::sha256_hex(text.as_bytes());
        export.push(shipped(
            text.as_bytes(),
            &id,
            "h4",
            "auditship",
            "agent",
            "",
            0,
        ));
        ms += 5 * MINUTE_MS;
    }
    // In the SIEM's own order, not the hosts'.
    export.reverse();
    let siem = root.join("siem");
    std::fs::create_dir_all(&siem).unwrap();
    std::fs::write(siem.join("export.jsonl"), export.join("\n") + "\n").unwrap();
    Dataset {
        truth,
        tampered: (
            "streams/h3-carol".into(),
            "audit-2026-11-03.jsonl".into(),
            target as u64 + 1,
        ),
    }
}

/// `auditship report ARGS` in `dir`: (exit code, stdout, stderr).
fn report_in(dir: &Path, args: &[&str]) -> (i32, Vec<u8>, String) {
    let out = Command::new(bin())
        .current_dir(dir)
        .arg("report")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_report(dir: &Path, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["--format", "json", "--from", FROM, "--to", TO];
    args.extend_from_slice(extra);
    args.extend(["streams", "siem/export.jsonl"]);
    let (code, stdout, stderr) = report_in(dir, &args);
    let doc = serde_json::from_slice(&stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    (code, doc)
}

fn golden_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/report.json")
}

#[test]
fn the_json_report_matches_its_golden_copy_and_an_independent_count() {
    let t = tempdir();
    let data = write_dataset(t.path());
    let (code, doc) = json_report(t.path(), &[]);
    assert_eq!(code, 1, "a tampered stream: written, exit 1\n{doc:#}");

    // The golden copy.
    let golden = golden_path();
    if std::env::var_os("AUDITSHIP_BLESS").is_some() {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(&golden, serde_json::to_string_pretty(&doc).unwrap() + "\n").unwrap();
    }
    let want: Value = serde_json::from_str(
        &std::fs::read_to_string(&golden)
            .unwrap_or_else(|e| panic!("{}: {e}; AUDITSHIP_BLESS=1 writes it", golden.display())),
    )
    .unwrap();
    if doc != want {
        let got = serde_json::to_string_pretty(&doc).unwrap();
        let want = serde_json::to_string_pretty(&want).unwrap();
        let first = got
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        panic!(
            "the report differs from {} from line {}:\n got: {}\nwant: {}",
            golden.display(),
            first + 1,
            got.lines().nth(first).unwrap_or(""),
            want.lines().nth(first).unwrap_or("")
        );
    }

    // The totals, against the count made from the generated events.
    let truth = &data.truth;
    assert_eq!(doc["events"], truth.events);
    let users = doc["users"].as_array().unwrap();
    let names: Vec<&str> = users
        .iter()
        .map(|u| u["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        truth
            .outcomes
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
    for u in users {
        let id = u["user_id"].as_str().unwrap();
        for outcome in ["success", "failure", "denied", "attempted"] {
            let want = truth.outcomes[id].get(outcome).copied().unwrap_or(0);
            assert_eq!(u["outcomes"][outcome], want, "{id} {outcome}");
        }
        let all: u64 = truth.outcomes[id].values().sum();
        assert_eq!(u["events"], all, "{id}");
        assert_eq!(u["sessions"], truth.sessions[id].len(), "{id}");
    }
    assert!(doc["duplicates_counted_once"].as_u64().unwrap() > 0);

    // The tampered stream, at its place; the others intact.
    let (stream, file, line) = &data.tampered;
    for s in doc["streams"].as_array().unwrap() {
        let tampered = s["path"] == stream.as_str();
        assert_eq!(s["ok"], !tampered, "{s:#}");
        if tampered {
            let p = &s["problems"][0];
            assert_eq!(
                (p["file"].as_str(), p["line"].as_u64(), p["code"].as_str()),
                (Some(file.as_str()), Some(*line), Some("hash_mismatch"))
            );
            assert_eq!(s["problems"].as_array().unwrap().len(), 1);
        }
    }
    // The gzipped day and the live files are one chain.
    let alice = doc["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["path"] == "streams/h1-alice")
        .unwrap();
    assert_eq!(alice["files"][0], "audit-2026-11-01.jsonl.gz");
    assert_eq!(alice["first_seq"], 0);

    // One silent period: h2 on the 3rd, from its last event of the 2nd to its first
    // of the 4th. h4 (events every 30 minutes) is kept up by its heartbeats.
    let silent = doc["silent_periods"].as_array().unwrap();
    assert_eq!(silent.len(), 1, "{silent:#?}");
    assert_eq!(silent[0]["host"], "h2");
    assert_eq!(silent[0]["from"], "2026-11-02T23:58:00.000Z");
    assert_eq!(silent[0]["to"], "2026-11-04T00:02:00.000Z");
    let h4 = doc["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == "h4")
        .unwrap();
    assert_eq!(h4["heartbeats"], 3 * 24 * 12);

    // The call whose closing record was never written.
    let unclosed = &doc["unclosed_attempts"];
    assert_eq!(unclosed["count"], 1, "{unclosed:#}");
    assert_eq!(unclosed["listed"][0]["user_id"], "carol@example.com");
    assert_eq!(unclosed["listed"][0]["tool_name"], "WebFetch");

    // One directory holding the export beside the stream directories: both are found.
    std::fs::rename(
        t.path().join("siem/export.jsonl"),
        t.path().join("streams/export.jsonl"),
    )
    .unwrap();
    let (code, stdout, stderr) = report_in(
        t.path(),
        &["--format", "json", "--from", FROM, "--to", TO, "streams"],
    );
    let whole: Value = serde_json::from_slice(&stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(code, 1);
    for member in ["events", "users", "hosts", "silent_periods", "outcomes"] {
        assert_eq!(whole[member], doc[member], "{member}");
    }
}

#[test]
fn the_silence_threshold_is_twice_the_heartbeat_interval_given() {
    let t = tempdir();
    write_dataset(t.path());
    // With a 150-second interval, events 4 minutes apart and heartbeats 5 minutes
    // apart are within twice it; with a 1-minute interval every host is silent
    // between events.
    let (_, doc) = json_report(t.path(), &["--heartbeat-interval", "150s"]);
    assert_eq!(doc["silence_threshold_seconds"], 300);
    assert_eq!(doc["silent_periods"].as_array().unwrap().len(), 1);
    let (_, doc) = json_report(t.path(), &["--heartbeat-interval", "1m"]);
    let hosts: BTreeSet<&str> = doc["silent_periods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["h1", "h2", "h3", "h4"].into_iter().collect());
}

#[test]
fn the_csv_lists_every_event_of_the_period_once() {
    let t = tempdir();
    let data = write_dataset(t.path());
    let out = t.path().join("events.csv");
    let (code, stdout, stderr) = report_in(
        t.path(),
        &[
            "--format",
            "csv",
            "--from",
            FROM,
            "--to",
            TO,
            "--out",
            "events.csv",
            "streams",
            "siem/export.jsonl",
        ],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.is_empty());
    let text = std::fs::read_to_string(&out).unwrap();
    let rows: Vec<&str> = text.split("\r\n").filter(|r| !r.is_empty()).collect();
    assert_eq!(rows[0], auditship::report::csv::HEADER.join(","));
    assert_eq!(rows.len() as u64 - 1, data.truth.events);
    let tampered: Vec<&&str> = rows
        .iter()
        .filter(|r| r.contains(",hash_mismatch,"))
        .collect();
    assert_eq!(tampered.len(), 1);
    let (_, file, line) = &data.tampered;
    assert!(
        tampered[0].contains("carol@example.com")
            && tampered[0].ends_with(&format!(",{file},{line}")),
        "{}",
        tampered[0]
    );
    let denied = rows.iter().filter(|r| r.contains(",denied,")).count() as u64;
    let want: u64 = data
        .truth
        .outcomes
        .values()
        .map(|o| o.get("denied").copied().unwrap_or(0))
        .sum();
    assert_eq!(denied, want);
    // No aside file left behind.
    let names: Vec<String> = std::fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
}

/// The PNG's pixels: (width, height, RGB triples), for 8-bit RGB or RGBA images.
fn png_pixels(png: &[u8]) -> (usize, usize, Vec<[u8; 3]>) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let (mut at, mut idat, mut header) = (8, Vec::new(), None);
    while at + 8 <= png.len() {
        let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
        let kind = &png[at + 4..at + 8];
        let data = &png[at + 8..at + 8 + len];
        match kind {
            b"IHDR" => header = Some(data.to_vec()),
            b"IDAT" => idat.extend_from_slice(data),
            _ => {}
        }
        at += 12 + len;
    }
    let h = header.expect("IHDR");
    let width = u32::from_be_bytes(h[0..4].try_into().unwrap()) as usize;
    let height = u32::from_be_bytes(h[4..8].try_into().unwrap()) as usize;
    let channels = match (h[8], h[9]) {
        (8, 2) => 3,
        (8, 6) => 4,
        other => panic!("unexpected PNG depth and colour type {other:?}"),
    };
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..])
        .read_to_end(&mut raw)
        .unwrap();
    let stride = width * channels;
    assert_eq!(raw.len(), height * (stride + 1), "scanlines");
    let mut prev = vec![0u8; stride];
    let mut pixels = Vec::with_capacity(width * height);
    for row in raw.chunks(stride + 1) {
        let (filter, data) = (row[0], &row[1..]);
        let mut cur = vec![0u8; stride];
        for i in 0..stride {
            let a = if i >= channels { cur[i - channels] } else { 0 };
            let b = prev[i];
            let c = if i >= channels { prev[i - channels] } else { 0 };
            let predictor = match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => ((u16::from(a) + u16::from(b)) / 2) as u8,
                4 => {
                    let p = i16::from(a) + i16::from(b) - i16::from(c);
                    let (pa, pb, pc) = (
                        (p - i16::from(a)).abs(),
                        (p - i16::from(b)).abs(),
                        (p - i16::from(c)).abs(),
                    );
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
                f => panic!("PNG filter {f}"),
            };
            cur[i] = data[i].wrapping_add(predictor);
        }
        pixels.extend(cur.chunks(channels).map(|p| [p[0], p[1], p[2]]));
        prev = cur;
    }
    (width, height, pixels)
}

/// Debian's chromium, or `$AUDITSHIP_TEST_CHROMIUM`; tests/run.sh installs it.
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("AUDITSHIP_TEST_CHROMIUM") {
        return PathBuf::from(p);
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let p = dir.join("chromium");
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "chromium is not installed: run the suite with `bash tests/run.sh`, which installs Debian's chromium, or set AUDITSHIP_TEST_CHROMIUM"
    );
}

/// Runs headless Chromium on `html` with `args`, within a minute.
fn run_chromium(html: &Path, profile: &Path, args: &[String]) {
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", html.display()))
        .env("HOME", profile)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            assert!(status.success(), "chromium {args:?}: {status}\n{err}");
            return;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("chromium {args:?} did not finish within two minutes");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_html_report_renders_in_chromium_with_its_sections_and_totals() {
    let t = tempdir();
    let data = write_dataset(t.path());
    let (code, _, stderr) = report_in(
        t.path(),
        &[
            "--from",
            FROM,
            "--to",
            TO,
            "--out",
            "report.html",
            "streams",
            "siem/export.jsonl",
        ],
    );
    assert_eq!(code, 1, "{stderr}");
    let html_path = t.path().join("report.html");
    let html = std::fs::read_to_string(&html_path).unwrap();

    // Self-contained: no script, nothing fetched.
    for banned in ["<script", "src=\"http", "href=\"http", "@import", "url("] {
        assert!(!html.contains(banned), "the page holds {banned}");
    }
    for id in [
        "summary",
        "integrity",
        "completeness",
        "activity",
        "reproduce",
        "silent-periods",
        "users",
        "denied-failed",
    ] {
        assert!(html.contains(&format!("id=\"{id}\"")), "no section {id}");
    }
    assert!(html.contains("Integrity: NOT INTACT"));
    assert!(html.contains(&format!(
        "<div class=\"n\" id=\"fig-events\">{}</div>",
        data.truth.events
    )));
    for (user, outcomes) in &data.truth.outcomes {
        let all: u64 = outcomes.values().sum();
        let mut row =
            format!("<tr data-user=\"{user}\"><td>{user}</td><td class=\"num\">{all}</td>");
        for o in ["success", "failure", "denied", "attempted"] {
            row.push_str(&format!(
                "<td class=\"num\">{}</td>",
                outcomes.get(o).copied().unwrap_or(0)
            ));
        }
        assert!(html.contains(&row), "no row {row}");
    }
    assert!(html.contains("hash_mismatch") && html.contains("audit-2026-11-03.jsonl"));
    assert!(html.contains("2026-11-02T23:58:00.000Z") && html.contains("2026-11-04T00:02:00.000Z"));

    // Chromium paints it: a screenshot that is not blank, many colours.
    let profile = t.path().join("chromium-profile");
    let png = t.path().join("report.png");
    run_chromium(
        &html_path,
        &profile,
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1280,6000".into(),
        ],
    );
    let (w, h, pixels) = png_pixels(&std::fs::read(&png).unwrap());
    assert_eq!((w, h), (1280, 6000));
    let colours: HashSet<[u8; 3]> = pixels.iter().copied().collect();
    let inked = pixels.iter().filter(|p| p.iter().any(|&c| c < 200)).count();
    assert!(colours.len() > 50, "{} colours", colours.len());
    assert!(
        inked * 100 > pixels.len(),
        "{inked} of {} pixels inked",
        pixels.len()
    );
    // The verdict's red and a success bar's green are on the page.
    assert!(pixels.contains(&[0xfb, 0xe4, 0xe1]), "no NOT INTACT box");
    assert!(pixels.contains(&[0x4e, 0x9a, 0x5b]), "no success bar");

    // And prints: a PDF of several pages (each section starts one).
    let pdf = t.path().join("report.pdf");
    run_chromium(
        &html_path,
        &profile,
        &[
            format!("--print-to-pdf={}", pdf.display()),
            "--no-pdf-header-footer".into(),
        ],
    );
    let bytes = std::fs::read(&pdf).unwrap();
    assert!(bytes.starts_with(b"%PDF-"));
    let pages = bytes.windows(10).filter(|w| w == b"/Type /Pag").count();
    assert!(pages >= 5, "{pages} pages");
}

#[test]
fn an_archive_directory_joins_its_live_stream_and_its_manifest_is_checked() {
    use auditship::archive::manifest::{Link, Manifest, Op};
    let t = tempdir();
    let live = t.path().join("home/erin/audit");
    std::fs::create_dir_all(&live).unwrap();
    let mut erin = Person::new("erin@example.com", "h5");
    let mut lines = Vec::new();
    for i in 0..40 {
        let ms = NOV_1 + i * 2 * MINUTE_MS;
        let (_, line, hash) = erin.next(ms);
        lines.push((line, hash));
    }
    // The first 25 archived: gzip under the archive directory at the original's path.
    let bytes: Vec<u8> = lines[..25].iter().flat_map(|(l, _)| l.clone()).collect();
    let archive_root = t.path().join("archive");
    let real_live = std::fs::canonicalize(&live).unwrap();
    let rel = format!(
        "{}/audit-2026-10-31.jsonl.gz",
        real_live.display().to_string().trim_start_matches('/')
    );
    let archived = archive_root.join(&rel);
    std::fs::create_dir_all(archived.parent().unwrap()).unwrap();
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&archived).unwrap(),
        flate2::Compression::default(),
    );
    enc.write_all(&bytes).unwrap();
    enc.finish().unwrap();
    let gz = std::fs::read(&archived).unwrap();
    let link = |(line, hash): &(Vec<u8>, String)| {
        let v: Value = serde_json::from_slice(line).unwrap();
        Some(Link {
            seq: v["seq"].as_u64(),
            hash: Some(hash.clone()),
        })
    };
    let mut m = Manifest::open(&archive_root.join("manifest.jsonl")).unwrap();
    m.append(Op::Archived {
        original: real_live
            .join("audit-2026-10-31.jsonl")
            .display()
            .to_string(),
        size: bytes.len() as u64,
        sha256: audit::sha256_hex(&bytes),
        mtime: 0,
        archive: rel.clone(),
        archive_size: gz.len() as u64,
        archive_sha256: audit::sha256_hex(&gz),
        events: 25,
        first: link(&lines[0]),
        last: link(&lines[24]),
    })
    .unwrap();
    let rest: Vec<u8> = lines[25..].iter().flat_map(|(l, _)| l.clone()).collect();
    std::fs::write(live.join("audit-2026-11-01.jsonl"), rest).unwrap();

    let (code, stdout, stderr) = report_in(
        t.path(),
        &["--format", "json", "archive", "home/erin/audit"],
    );
    let doc: Value = serde_json::from_slice(&stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(code, 0, "{doc:#}");
    let streams = doc["streams"].as_array().unwrap();
    let kinds: Vec<&str> = streams
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["directory", "manifest"], "{doc:#}");
    let joined = &streams[0];
    assert_eq!(
        (
            joined["first_seq"].as_u64(),
            joined["last_seq"].as_u64(),
            joined["events"].as_u64()
        ),
        (Some(0), Some(39), Some(40))
    );
    assert_eq!(joined["files"].as_array().unwrap().len(), 2);
    assert!(
        joined["command"]
            .as_str()
            .unwrap()
            .starts_with("auditship verify --stream "),
        "{joined:#}"
    );
    assert_eq!(streams[1]["archives_checked"], 1);
    assert_eq!(doc["users"][0]["events"], 40);

    // The joined chain is checked across the join: the live file without its archive
    // would start at seq 25, which alone is fine; an event dropped at the join is not.
    let cut: Vec<u8> = lines[26..].iter().flat_map(|(l, _)| l.clone()).collect();
    std::fs::write(live.join("audit-2026-11-01.jsonl"), cut).unwrap();
    let (code, stdout, _) = report_in(
        t.path(),
        &["--format", "json", "archive", "home/erin/audit"],
    );
    let doc: Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(code, 1);
    let codes: Vec<&str> = doc["streams"][0]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["chain_break", "seq_gap"]);
}

#[test]
fn usage_and_missing_paths_exit_2_and_write_nothing() {
    let t = tempdir();
    write_dataset(t.path());
    for args in [
        vec!["--out", "r.html", "nowhere"],
        vec!["--out", "r.html", "--from", "last week", "streams"],
        vec![
            "--out",
            "r.html",
            "--from",
            "2026-11-03",
            "--to",
            "2026-11-02",
            "streams",
        ],
        vec!["--out", "r.html", "--heartbeat-interval", "0s", "streams"],
        vec!["--out", "r.html", "--key", "k=/no/such/key", "streams"],
    ] {
        let (code, stdout, stderr) = report_in(t.path(), &args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stdout.is_empty() && !stderr.is_empty(), "{args:?}");
        assert!(!t.path().join("r.html").exists(), "{args:?}");
    }
    // Intact streams alone: exit 0.
    let (code, _, stderr) = report_in(
        t.path(),
        &["--out", "r.html", "streams/h1-alice", "streams/h2-bob"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        std::fs::read_to_string(t.path().join("r.html"))
            .unwrap()
            .contains("Integrity: INTACT")
    );
}

#[test]
fn the_daemons_own_records_in_a_real_export_keep_its_host_up_and_name_no_user() {
    let t = tempdir();
    let root = t.path();
    let dir = root.join("audit");
    std::fs::create_dir_all(&dir).unwrap();
    let now = auditship::clock::utc_now().0;
    write_chain_at(&dir.join("audit-1.jsonl"), 1, 0, 20, ZERO_HASH, &|_| {
        now.clone()
    });
    let shipped = root.join("out/shipped.jsonl");
    let cfg = write_config(
        root,
        &format!(
            "[agent]\nstate_dir = \"{state}\"\nhost = \"devbox\"\nrescan_interval = \"200ms\"\nshutdown_timeout = \"5s\"\nheartbeat_interval = \"1s\"\n\n\
             [[source]]\nname = \"a\"\npaths = [\"{dir}\"]\n\n\
             [[sink]]\nname = \"file\"\ntype = \"file\"\npath = \"{shipped}\"\nbatch = {{ max_events = 50, max_wait = \"50ms\" }}\n\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n",
            state = root.join("state").display(),
            dir = dir.display(),
            shipped = shipped.display(),
        ),
    );
    let d = Daemon::start(root, &cfg);
    let start = Instant::now();
    let count = |what: &str| {
        std::fs::read_to_string(&shipped)
            .map(|s| s.lines().filter(|l| l.contains(what)).count())
            .unwrap_or(0)
    };
    while count("\"source_event\":\"heartbeat\"") < 2 || count("\"seq\":") < 20 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "not shipped: {}",
            d.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, stderr) = d.stop(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{stderr}");

    // Heartbeats every second, judged against 5 s: the host is never silent.
    let (code, stdout, stderr) = report_in(
        root,
        &[
            "--format",
            "json",
            "--heartbeat-interval",
            "5s",
            "out/shipped.jsonl",
        ],
    );
    let doc: Value = serde_json::from_slice(&stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(code, 0, "{doc:#}");
    let users: Vec<&str> = doc["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["dev1@example.com"], "the daemon is not a user");
    assert_eq!(doc["users"][0]["events"], 20);
    let host = &doc["hosts"][0];
    assert_eq!(host["host"], "devbox");
    assert!(host["heartbeats"].as_u64().unwrap() >= 2, "{host}");
    // agent_start and agent_stop besides the heartbeats.
    assert!(
        host["daemon_records"].as_u64().unwrap() >= host["heartbeats"].as_u64().unwrap() + 2,
        "{host}"
    );
    assert_eq!(doc["silent_periods"], json!([]), "{doc:#}");
}

#[test]
fn signed_checkpoints_are_checked_with_the_public_key_and_are_nobody_s_activity() {
    use auditship::audit::checkpoint::SigningKey;
    let t = tempdir();
    let dir = t.path().join("sealed/alice");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("audit-2026-11-26.jsonl");
    let key = SigningKey::from_seed(&[7; 32]);
    let head = write_chain(&file, 1, 0, 10, ZERO_HASH);
    // The sealer's checkpoint at seq 10 over seq 9, then ten more events.
    let c = key.sign("alice", 9, &head);
    let event = json!({
        "v": 1, "id": "cp-10", "seq": 10, "prev_hash": head,
        "timestamp": "2026-11-26T07:06:42.000Z", "user_id": "alice", "session_id": "sealer",
        "host": "devbox", "action": "agent_event", "resource": "checkpoint", "outcome": "success",
        "metadata": {"source_event": "checkpoint", "checkpoint": c.to_json()},
    });
    let sealed = audit::seal(&event.to_string(), None).unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap()
        .write_all(&sealed.line)
        .unwrap();
    write_chain(&file, 1, 11, 10, &sealed.hash);
    let pem = |k: &SigningKey| auditship::keyfile::public_key_pem(k.public());
    std::fs::write(t.path().join("sealer.pub"), pem(&key)).unwrap();
    std::fs::write(
        t.path().join("other.pub"),
        pem(&SigningKey::from_seed(&[8; 32])),
    )
    .unwrap();

    let (code, stdout, stderr) = report_in(
        t.path(),
        &["--format", "json", "--pubkey", "sealer.pub", "sealed"],
    );
    let doc: Value = serde_json::from_slice(&stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(code, 0, "{doc:#}");
    let s = &doc["streams"][0];
    assert_eq!(
        (
            s["checkpoints"]["held"].as_u64(),
            s["checkpoints"]["covered_to_seq"].as_u64()
        ),
        (Some(1), Some(9))
    );
    assert_eq!(
        s["command"],
        "auditship verify --pubkey sealer.pub sealed/alice"
    );
    // 20 events of the person; the checkpoint is the host's, not hers.
    assert_eq!(doc["users"][0]["events"], 20);
    assert_eq!(doc["hosts"][0]["daemon_records"], 1);
    assert!(
        doc["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["path"] == "sealer.pub")
    );

    // Checked with another host's key, the checkpoint does not verify.
    let (code, stdout, _) = report_in(
        t.path(),
        &["--format", "json", "--pubkey", "other.pub", "sealed"],
    );
    let doc: Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(code, 1);
    assert_eq!(
        doc["streams"][0]["problems"][0]["code"],
        "checkpoint_bad_signature"
    );
    assert_eq!(doc["streams"][0]["problems"][0]["line"], 11);
}
